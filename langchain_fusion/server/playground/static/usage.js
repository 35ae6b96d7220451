// The run's usage line (Understand): tokens and cost per stage and in total, and the cost
// against one completion of the cheapest panelist.
//
// The panel's figures are the sum of its columns' (`usage` on `panel.completed` and
// `panel.failed`, our extension), the analysis's come with `analysis.completed`, the total
// with `response.completed`; synthesis is the rest: the outer model's calls (asking for
// fusion, then writing the answer). Against a server that sends no per-stage usage (the
// hosted one), only the total shows.

import { STATES, el, figure } from "./column.js";
import { againstCheapest, money, rest, sum, tokens } from "./figures.js";

const STAGES = [
  ["panel", "Panel", "Every panelist's calls, research included"],
  ["analysis", "Analysis", "The analyst comparing the answers"],
  ["synthesis", "Synthesis", "The outer model: asking for fusion, then writing the answer"],
  ["total", "Total", "The whole run, as the server billed it"],
];

function stage(key, label, hint, usage) {
  const item = el("div", "stage");
  item.dataset.stage = key;
  item.title = hint;
  const figures = el("dd");
  figures.append(usage ? figure("tokens", tokens(usage.total_tokens), usage.total_tokens) : "—");
  if (usage && typeof usage.cost === "number") figures.append(figure("cost", money(usage.cost), usage.cost));
  item.append(el("dt", "", label), figures);
  return item;
}

/** The usage line of a run: `columns` its panelists, `analysis` the analyst's usage,
 * `total` the response's. */
export function renderUsage(box, { columns, analysis, total }) {
  if (!total) {
    box.replaceChildren();
    return;
  }
  const panel = columns.length && columns.every((c) => c.usage) ? sum(columns.map((c) => c.usage)) : null;
  const figures = {
    panel,
    analysis: analysis || null,
    synthesis: panel && analysis ? rest(total, [panel, analysis]) : null,
    total: { ...total, cost: typeof total.cost === "number" ? total.cost : null },
  };
  const shown = STAGES.filter(([key]) => key === "total" || figures[key]);
  const list = el("dl", "stages");
  list.append(...shown.map(([key, label, hint]) => stage(key, label, hint, figures[key])));
  const answered = columns.filter((c) => c.state === STATES.done);
  const note = el("p", "usage-note");
  const against = againstCheapest(figures.total, answered);
  if (against) {
    const what = against.by === "cost" ? "the cost" : "the tokens";
    const text = `${against.ratio.toFixed(1)}× ${what} of one completion of ${against.model}`;
    const ratio = figure("ratio", text, against.ratio);
    ratio.dataset.by = against.by;
    ratio.dataset.model = against.model;
    note.append(ratio, " · ");
  }
  note.append(el("span", "answered", `${answered.length} of ${columns.length} panelists answered`));
  box.replaceChildren(list, note);
}
