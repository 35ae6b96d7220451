// One run on the page: the panel's columns (Watch), the analysis and the answer
// (Understand), built from the Responses events as they arrive, or from a saved record.

import { Column, STATES, el, list, str, throttled } from "./column.js";
import { link, renderMarkdown, safeUrl } from "./markdown.js";
import { renderUsage } from "./usage.js";

const F = "response.fusion_call.";
const SECTIONS = [
  ["consensus", "Consensus", "Where the panel agrees"],
  ["contradictions", "Contradictions", "Where answers conflict"],
  ["partial_coverage", "Partial coverage", "Points only some models made"],
  ["unique_insights", "Unique insights", "Points one model alone made"],
  ["blind_spots", "Blind spots", "What every answer missed"],
];

export class RunView {
  constructor(root) {
    this.root = root;
    this.columns = new Map();
    this.analysis = null;
    this.analyst = "";
    this.answer = "";
    this.usage = null;
    this.analysisUsage = null;
    this.item = null;
    this.error = "";
    this.model = "";
    this.columnsEl = root.querySelector("#columns");
    this.columnsEl.replaceChildren();
    this.analysisEl = root.querySelector("#analysis");
    this.answerEl = root.querySelector("#answer");
    this.answerEl.setAttribute("aria-busy", "true");
    this.analysisEl.replaceChildren(el("p", "pending", "The analysis follows the panel's answers."));
    this.answerEl.replaceChildren(el("p", "pending", "The answer follows the analysis."));
    root.querySelector("#usage").replaceChildren();
    root.querySelector("#sources").replaceChildren();
    this.paintAnswer = throttled(() => {
      if (this.answer) this.answerEl.replaceChildren(renderMarkdown(this.answer));
      else if (this.settled) this.answerEl.replaceChildren(el("p", "pending", "No final answer."));
    });
    this.timer = setInterval(() => this.tick(), 200);
    this.started = performance.now();
    this.status("Waiting for the server…");
  }

  status(text, state = "running") {
    const line = this.root.querySelector("#run-status");
    line.textContent = text;
    line.dataset.state = state;
  }

  tick() {
    for (const column of this.columns.values()) if (column.live) column.paint();
  }

  column(model) {
    const key = str(model) || "panelist";
    let column = this.columns.get(key);
    if (!column) {
      column = new Column(key, this.columns.size);
      this.columns.set(key, column);
      this.columnsEl.append(column.node);
      this.columnsEl.style.setProperty("--count", String(this.columns.size));
    }
    return column;
  }

  /** One Responses event. */
  handle(event) {
    const type = str(event.type);
    if (type === `${F}in_progress`) this.status("The panel is answering…");
    else if (type === `${F}panel.added`) this.column(event.model);
    else if (type === `${F}panel.reasoning.delta` && event.research && typeof event.research === "object") {
      const column = this.column(event.model); // ours: a research step, its delta empty
      column.research.push(event.research);
      if (column.live) column.set(STATES.researching);
    } else if (type === `${F}panel.reasoning.delta`) {
      const column = this.column(event.model);
      column.reasoning += str(event.delta);
      if ([STATES.waiting, STATES.researching].includes(column.state)) column.set(STATES.reasoning);
      column.paint();
    } else if (type === `${F}panel.delta`) {
      const column = this.column(event.model);
      column.content += str(event.delta);
      if (column.state !== STATES.streaming) column.set(STATES.streaming);
      column.paint();
    } else if (type === `${F}panel.completed`) {
      const column = this.column(event.model);
      if (typeof event.content === "string") column.content = event.content;
      column.usage = usageOf(event.usage) ?? column.usage;
      column.set(STATES.done);
    } else if (type === `${F}panel.failed`) {
      const column = this.column(event.model);
      column.error = str(event.error) || "failed";
      column.statusCode = event.status_code ?? null;
      column.usage = usageOf(event.usage) ?? column.usage;
      column.set(STATES.failed);
    } else if (type === `${F}analysis.in_progress`) {
      this.analyst = str(event.analyst_model || event.judge_model);
      this.showAnalyst();
      this.status("The analyst is comparing the answers…");
      this.analysisEl.replaceChildren(el("p", "pending", "Comparing the answers…"));
    } else if (type === `${F}analysis.completed`) {
      this.analysis = event.analysis && typeof event.analysis === "object" ? event.analysis : null;
      this.analysisUsage = usageOf(event.usage);
      this.renderAnalysis();
    } else if (type === `${F}completed`) this.status("Writing the answer…");
    else if (type === "response.output_item.done" && event.item?.type === "openrouter:fusion") {
      this.fusionItem(event.item);
    } else if (type === "response.output_text.delta") {
      this.answer += str(event.delta);
      this.paintAnswer();
    } else if (type === "response.output_text.done" && typeof event.text === "string") {
      this.answer = event.text;
      this.paintAnswer();
    } else if (["response.completed", "response.incomplete"].includes(type)) {
      this.model = str(event.response?.model);
      this.usage = event.response?.usage ?? null;
      const items = list(event.response?.output);
      const fusion = items.find((i) => i?.type === "openrouter:fusion");
      if (fusion && !this.item) this.fusionItem(fusion);
      const took = `${((performance.now() - this.started) / 1000).toFixed(1)} s`;
      this.finish(type === "response.incomplete" ? `Done in ${took} (the answer hit its length limit).` : `Done in ${took}.`);
    } else if (type === "response.failed" || type === "error") {
      const message = event.message || event.response?.error?.message || "the run failed";
      this.fail(str(message));
    }
  }

  showAnalyst() {
    this.root.querySelector("#analyst-name").textContent = this.analyst ? `by ${this.analyst}` : "";
  }

  fusionItem(item) {
    this.item = item;
    for (const r of list(item.responses)) {
      const column = this.column(r?.model);
      if (typeof r?.content === "string" && !column.content) column.content = r.content;
      if (column.state !== STATES.failed) column.set(STATES.done);
    }
    for (const f of list(item.failed_models)) {
      const column = this.column(f?.model);
      column.error = column.error || str(f?.error) || "failed";
      column.statusCode = column.statusCode ?? f?.status_code ?? null;
      column.set(STATES.failed);
    }
    if (item.analysis && !this.analysis) {
      this.analysis = item.analysis;
      this.renderAnalysis();
    } else if (!item.analysis) {
      const why = item.failure_reason || item.error || "the analyst gave no analysis";
      this.analysisEl.replaceChildren(el("p", "notice", `No analysis: ${str(why)}. The answer works from the panel's raw answers.`));
    }
    this.renderSources();
  }

  modelRef(model) {
    const ref = el("button", "model-ref", str(model));
    ref.type = "button";
    const column = this.findColumn(model);
    if (column) ref.style.setProperty("--hue", column.node.style.getPropertyValue("--hue"));
    ref.dataset.model = str(model);
    ref.title = `Show ${str(model)}'s column`;
    ref.addEventListener("click", () => {
      column?.node.scrollIntoView({ behavior: "smooth", block: "nearest" });
      column?.node.focus?.();
    });
    return ref;
  }

  findColumn(model) {
    const name = str(model);
    if (this.columns.has(name)) return this.columns.get(name);
    for (const [key, column] of this.columns) if (key.startsWith(name) || name.startsWith(key)) return column;
    return null;
  }

  /** Highlight the columns of `models` while `node` is hovered or focused. */
  linkColumns(node, models) {
    const columns = models.map((m) => this.findColumn(m)).filter(Boolean);
    const on = () => columns.forEach((c) => c.node.classList.add("highlight"));
    const off = () => columns.forEach((c) => c.node.classList.remove("highlight"));
    node.addEventListener("mouseenter", on);
    node.addEventListener("mouseleave", off);
    node.addEventListener("focusin", on);
    node.addEventListener("focusout", off);
  }

  renderAnalysis() {
    const analysis = this.analysis || {};
    const parts = SECTIONS.map(([key, title, hint]) => {
      const items = list(analysis[key]);
      const section = el("section", `analysis-section ${key}`);
      section.dataset.section = key;
      const head = el("header", "section-head");
      head.append(el("h3", "", title), el("span", "count", String(items.length)));
      section.append(head);
      if (!items.length) section.append(el("p", "empty", `None. ${hint}: nothing reported.`));
      const ul = el("ul", "findings");
      for (const entry of items) ul.append(this.finding(key, entry));
      if (items.length) section.append(ul);
      return section;
    });
    this.analysisEl.replaceChildren(...parts);
  }

  finding(key, entry) {
    const li = el("li", "finding");
    if (key === "consensus" || key === "blind_spots") {
      li.append(el("p", "", str(typeof entry === "string" ? entry : entry?.point ?? JSON.stringify(entry))));
    } else if (key === "contradictions") {
      li.append(el("p", "topic", str(entry?.topic)));
      const stances = el("div", "stances");
      for (const s of list(entry?.stances)) {
        const card = el("div", "stance");
        card.append(this.modelRef(s?.model), el("p", "", str(s?.stance)));
        stances.append(card);
      }
      li.append(stances);
      this.linkColumns(li, list(entry?.stances).map((s) => s?.model));
    } else if (key === "partial_coverage") {
      const refs = el("p", "refs");
      for (const m of list(entry?.models)) refs.append(this.modelRef(m));
      li.append(el("p", "", str(entry?.point)), refs);
      this.linkColumns(li, list(entry?.models));
    } else if (key === "unique_insights") {
      const refs = el("p", "refs");
      refs.append(this.modelRef(entry?.model));
      li.append(el("p", "", str(entry?.insight)), refs);
      this.linkColumns(li, [entry?.model]);
    }
    li.tabIndex = 0;
    return li;
  }

  renderSources() {
    const sources = list(this.item?.sources).filter((s) => safeUrl(s?.url));
    const box = this.root.querySelector("#sources");
    box.replaceChildren();
    if (!sources.length) return;
    box.append(el("h3", "", "Sources"));
    const ul = el("ul", "source-list");
    for (const s of sources) {
      const li = el("li");
      li.append(link(safeUrl(s.url), str(s.title) || s.url));
      ul.append(li);
    }
    box.append(ul);
  }

  renderUsage() {
    renderUsage(this.root.querySelector("#usage"), {
      columns: [...this.columns.values()],
      analysis: this.analysisUsage,
      total: usageOf(this.usage),
    });
  }

  finish(message, state = "done") {
    clearInterval(this.timer);
    this.settled = true;
    if (!this.analysis && this.analysisEl.querySelector(".pending")) {
      this.analysisEl.replaceChildren(el("p", "notice", "No analysis."));
    }
    for (const column of this.columns.values()) {
      if (column.live) column.set(column.content ? STATES.done : STATES.stopped);
    }
    this.answerEl.setAttribute("aria-busy", "false");
    this.paintAnswer();
    this.renderUsage();
    this.status(message, state);
  }

  fail(message) {
    this.error = message;
    this.finish(`Failed: ${message}`, "failed");
  }

  stop() {
    for (const column of this.columns.values()) if (column.live) column.set(STATES.stopped);
    this.finish("Stopped.", "failed");
  }

  record() {
    return {
      columns: [...this.columns.values()].map((c) => c.record()),
      analyst: this.analyst,
      analysis: this.analysis,
      answer: this.answer,
      usage: this.usage,
      analysisUsage: this.analysisUsage,
      item: this.item,
      error: this.error,
      model: this.model,
    };
  }

  /** Show a saved run as it ended. */
  static replay(root, saved) {
    const view = new RunView(root);
    for (const c of list(saved.columns)) {
      const column = view.column(c.model);
      Object.assign(column, { content: str(c.content), reasoning: str(c.reasoning), error: str(c.error) });
      column.statusCode = c.statusCode ?? null;
      column.state = STATES[c.state] || STATES.done;
      column.ms = c.ms ?? 0;
      column.usage = usageOf(c.usage);
      column.research = list(c.research);
      column.render();
    }
    view.analyst = str(saved.analyst);
    view.showAnalyst();
    if (saved.item) view.fusionItem(saved.item);
    view.analysis = saved.analysis || view.analysis;
    if (view.analysis) view.renderAnalysis();
    view.answer = str(saved.answer);
    view.usage = saved.usage || null;
    view.analysisUsage = usageOf(saved.analysisUsage);
    view.model = str(saved.model);
    view.error = str(saved.error);
    view.finish(
      saved.error ? `Failed: ${saved.error}` : `Reopened from history (${new Date(saved.at).toLocaleString()}).`,
      saved.error ? "failed" : "done",
    );
    return view;
  }
}

/** A usage object as the page reads it (tokens as numbers), or null. */
function usageOf(value) {
  if (!value || typeof value !== "object" || typeof value.total_tokens !== "number") return null;
  const { input_tokens, output_tokens, total_tokens, cost } = value;
  return { input_tokens, output_tokens, total_tokens, cost: typeof cost === "number" ? cost : null };
}
