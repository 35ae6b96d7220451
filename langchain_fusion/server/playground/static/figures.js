// Figures a person reads: money, token counts, and the arithmetic of usage objects
// ({input_tokens, output_tokens, total_tokens, cost?}, cost in USD when it is known).

/** USD with two significant digits below a dollar: $0.012, $0.00012, $1.25. */
export function money(usd) {
  if (typeof usd !== "number" || !Number.isFinite(usd)) return "";
  if (usd === 0) return "$0";
  if (usd >= 1) return `$${usd.toFixed(2)}`;
  const digits = Math.min(10, Math.max(2, 1 - Math.floor(Math.log10(usd))));
  return `$${usd.toFixed(digits)}`;
}

export function tokens(n) {
  return typeof n === "number" ? `${n.toLocaleString("en-US")} tokens` : "";
}

const KEYS = ["input_tokens", "output_tokens", "total_tokens"];

/** Its cost, where nothing billed counts as $0 (a panelist refused before any token). */
function costOf(u) {
  if (typeof u.cost === "number") return u.cost;
  return u.total_tokens === 0 ? 0 : null;
}

/** The sum of usages; its cost only when every part's is known (a partial sum is no cost).
 * Null when any part is missing. */
export function sum(usages) {
  if (!usages.length || usages.some((u) => !u || typeof u !== "object")) return null;
  const out = {};
  for (const key of KEYS) out[key] = usages.reduce((n, u) => n + (Number(u[key]) || 0), 0);
  const costs = usages.map(costOf);
  out.cost = costs.every((c) => c !== null) ? costs.reduce((a, b) => a + b, 0) : null;
  return out;
}

/** What `total` holds beyond `parts` (never below zero); null when any is missing. */
export function rest(total, parts) {
  const known = sum(parts);
  if (!total || !known) return null;
  const out = {};
  for (const key of KEYS) out[key] = Math.max(0, (Number(total[key]) || 0) - known[key]);
  const cost = typeof total.cost === "number" && known.cost !== null ? total.cost - known.cost : null;
  out.cost = cost === null ? null : Math.max(0, Math.round(cost * 1e10) / 1e10);
  return out;
}

/** The run against one completion of its cheapest panelist that answered: by cost when
 * every answer's cost is known, else by tokens. `{ratio, model, by}` or null. */
export function againstCheapest(total, answered) {
  const priced = answered.filter((a) => a.usage && typeof a.usage.cost === "number" && a.usage.cost > 0);
  if (total && typeof total.cost === "number" && priced.length && priced.length === answered.length) {
    const cheapest = priced.reduce((a, b) => (b.usage.cost < a.usage.cost ? b : a));
    return { ratio: total.cost / cheapest.usage.cost, model: cheapest.model, by: "cost" };
  }
  const counted = answered.filter((a) => a.usage && a.usage.total_tokens > 0);
  if (!total || !total.total_tokens || !counted.length || counted.length !== answered.length) return null;
  const cheapest = counted.reduce((a, b) => (b.usage.total_tokens < a.usage.total_tokens ? b : a));
  return { ratio: total.total_tokens / cheapest.usage.total_tokens, model: cheapest.model, by: "tokens" };
}
