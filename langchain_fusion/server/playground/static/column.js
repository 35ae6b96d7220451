// One panelist's column (Watch): its concrete model and seat, its state, time, length,
// tokens and cost as they arrive, its research steps, its reasoning, its failure reason,
// and its answer as safe markdown.

import { renderMarkdown } from "./markdown.js";
import { money, tokens } from "./figures.js";

export const STATES = {
  waiting: "waiting",
  researching: "researching",
  reasoning: "reasoning",
  streaming: "streaming",
  done: "done",
  failed: "failed",
  stopped: "stopped",
};

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export const list = (value) => (Array.isArray(value) ? value : []);
export const str = (value) => (value == null ? "" : String(value));

export function seatOf(model) {
  const m = /^(.*)#(\d+)$/.exec(model);
  return m ? { name: m[1], seat: `#${m[2]}` } : { name: model, seat: "" };
}

function words(text) {
  const n = text.trim() ? text.trim().split(/\s+/).length : 0;
  return `${n} word${n === 1 ? "" : "s"}`;
}

function seconds(ms) {
  return ms == null ? "" : `${(ms / 1000).toFixed(1)} s`;
}


/** A figure as text, with its exact value in `data-value` (for scripts and tests). */
export function figure(kind, text, value) {
  const node = el("span", kind, text);
  if (value != null) node.dataset.value = String(value);
  return node;
}

function researchItems(step) {
  const calls = list(step?.tool_calls);
  return calls.map((call) => {
    const li = el("li", "research-step");
    li.append(el("span", "tool", str(call?.name) || "tool"));
    if (call?.query) li.append(" ", el("span", "query", str(call.query)));
    li.title = `Research step ${str(step?.step)} of at most ${str(step?.max_steps)}`;
    return li;
  });
}

/** A render throttled to one per frame: streaming text re-renders at most 60 times a second. */
export function throttled(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}

export class Column {
  constructor(model, index) {
    this.model = model;
    this.index = index;
    this.state = STATES.waiting;
    this.content = "";
    this.reasoning = "";
    this.error = "";
    this.statusCode = null;
    this.usage = null; // {input_tokens, output_tokens, total_tokens, cost?}: ours, at its end
    this.research = []; // its research steps: {step, max_steps, tool_calls: [{name, query}]}
    this.started = performance.now();
    this.ms = null;
    const { name, seat } = seatOf(model);
    this.node = el("article", "column");
    this.node.dataset.model = model;
    this.node.dataset.state = this.state;
    this.node.style.setProperty("--hue", String((index * 67 + 210) % 360));
    this.node.setAttribute("aria-label", `Panelist ${model}`);
    const head = el("header", "column-head");
    const title = el("h3", "column-model");
    const slash = name.lastIndexOf("/");
    if (slash > 0) title.append(el("span", "provider", name.slice(0, slash + 1)));
    title.append(el("span", "model-name", slash > 0 ? name.slice(slash + 1) : name));
    if (seat) title.append(el("span", "seat", seat));
    title.title = model;
    this.badge = el("span", "state");
    head.append(title, this.badge);
    this.meta = el("p", "column-meta");
    this.steps = el("ol", "research-steps");
    this.steps.setAttribute("aria-label", "Research steps");
    this.steps.hidden = true;
    this.thinking = el("details", "reasoning");
    this.thinking.append(el("summary", "", "Reasoning"));
    this.thinkingText = el("div", "reasoning-text");
    this.thinking.append(this.thinkingText);
    this.thinking.hidden = true;
    this.failure = el("p", "failure");
    this.failure.setAttribute("role", "alert");
    this.failure.hidden = true;
    this.body = el("div", "md column-body");
    this.body.setAttribute("aria-live", "polite");
    this.body.setAttribute("aria-busy", "true");
    this.node.append(head, this.meta, this.steps, this.thinking, this.failure, this.body);
    this.paint = throttled(() => this.render());
    this.render();
  }

  set(state) {
    this.state = state;
    this.node.dataset.state = state; // at once, not at the next frame: no state goes unseen
    this.badge.textContent = state;
    if (state === STATES.done || state === STATES.failed) this.ms = performance.now() - this.started;
    this.paint();
  }

  render() {
    this.node.dataset.state = this.state;
    this.badge.textContent = this.state;
    const ms = this.ms ?? (this.live ? performance.now() - this.started : null);
    this.renderMeta(ms);
    if (this.research.length) {
      this.steps.hidden = false;
      this.steps.replaceChildren(...this.research.flatMap((step) => researchItems(step)));
    }
    if (this.reasoning) {
      this.thinking.hidden = false;
      this.thinkingText.textContent = this.reasoning;
    }
    if (this.error) {
      this.failure.hidden = false;
      this.failure.textContent = this.statusCode ? `${this.statusCode}: ${this.error}` : this.error;
    }
    this.body.replaceChildren(renderMarkdown(this.content));
    const settled = [STATES.done, STATES.failed, STATES.stopped].includes(this.state);
    this.body.setAttribute("aria-busy", String(!settled));
  }

  /** Time, tokens and cost (once its usage is in), and length, as figures of their own. */
  renderMeta(ms) {
    const parts = [["time", seconds(ms), ms]];
    const u = this.usage;
    if (u) {
      parts.push(["tokens", tokens(u.total_tokens), u.total_tokens]);
      if (typeof u.cost === "number") parts.push(["cost", money(u.cost), u.cost]);
    }
    if (this.content) parts.push(["words", words(this.content)]);
    const nodes = parts.filter(([, text]) => text).map(([kind, text, value]) => figure(kind, text, value));
    this.meta.replaceChildren(...nodes.flatMap((node, i) => (i ? [" · ", node] : [node])));
    this.meta.title = u ? `${u.input_tokens ?? "?"} in · ${u.output_tokens ?? "?"} out` : "";
  }

  get live() {
    return this.state !== STATES.stopped && this.ms == null;
  }

  record() {
    const { model, state, content, reasoning, error, statusCode, ms, usage, research } = this;
    return { model, state, content, reasoning, error, statusCode, ms, usage, research };
  }
}

