// One panelist's column (Watch): its concrete model and seat, its state, time and length
// as they arrive, its reasoning, its failure reason, and its answer as safe markdown.

import { renderMarkdown } from "./markdown.js";

export const STATES = {
  waiting: "waiting",
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
    this.node.append(head, this.meta, this.thinking, this.failure, this.body);
    this.paint = throttled(() => this.render());
    this.render();
  }

  set(state) {
    this.state = state;
    if (state === STATES.done || state === STATES.failed) this.ms = performance.now() - this.started;
    this.paint();
  }

  render() {
    this.node.dataset.state = this.state;
    this.badge.textContent = this.state;
    const ms = this.ms ?? (this.live ? performance.now() - this.started : null);
    this.meta.textContent = [seconds(ms), this.content ? words(this.content) : ""]
      .filter(Boolean)
      .join(" · ");
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

  get live() {
    return this.state !== STATES.stopped && this.ms == null;
  }

  record() {
    const { model, state, content, reasoning, error, statusCode, ms } = this;
    return { model, state, content, reasoning, error, statusCode, ms };
  }
}

