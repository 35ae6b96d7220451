// The runs kept in this browser (localStorage): what was asked and what came back, never
// the server key. The newest first, at most MAX of them.

const STORE = "langchain-fusion:history";
const MAX = 50;

export function loadHistory() {
  try {
    const runs = JSON.parse(localStorage.getItem(STORE) || "[]");
    return Array.isArray(runs) ? runs : [];
  } catch {
    return [];
  }
}

export function saveRun(run) {
  const runs = [run, ...loadHistory().filter((r) => r.id !== run.id)].slice(0, MAX);
  for (let keep = runs.length; keep > 0; keep--) {
    try {
      localStorage.setItem(STORE, JSON.stringify(runs.slice(0, keep)));
      return;
    } catch {
      /* over the quota: drop the oldest and try again */
    }
  }
}

export function clearHistory() {
  localStorage.removeItem(STORE);
}
