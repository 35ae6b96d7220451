// The page: the Ask form, a run's stream into the view, the history, and the
// "Copy as request" / "Download result JSON" actions.

import {
  ApiError,
  HOSTED,
  chatBody,
  listModels,
  loadPresets,
  responsesBody,
  serverKey,
  streamResponses,
} from "./api.js";
import { clearHistory, loadHistory, saveRun } from "./history.js";
import { RunView } from "./run.js";

const $ = (id) => document.getElementById(id);
const MAX_PANEL = 8;
const FUSION_ALIASES = ["openrouter/fusion", "openrouter/fusion-flash"];
const state = { panel: [], presets: {}, view: null, controller: null, runs: loadHistory() };

function option(value, text = value) {
  const node = document.createElement("option");
  node.value = value;
  node.textContent = text;
  return node;
}

function say(id, text) {
  $(id).textContent = text;
}

// --- the server and its key ---------------------------------------------------------------

function needKey(message) {
  $("key-form").hidden = false;
  delete $("key-form").dataset.state;
  say("key-hint", message);
  $("server-key").focus();
}

async function connect() {
  try {
    const models = await listModels();
    const aliases = models.filter((id) => FUSION_ALIASES.includes(id));
    const others = models.filter((id) => !FUSION_ALIASES.includes(id));
    const selected = $("model").value;
    $("model").replaceChildren(...(aliases.length ? aliases : FUSION_ALIASES).map((id) => option(id)));
    if (selected) $("model").value = selected;
    fillSuggestions(others);
    say("server-status", `Connected · ${location.host}`);
    $("server-status").dataset.state = "ok";
    if (serverKey.get()) {
      say("key-hint", "Using your server key (kept in this tab only).");
      $("key-form").dataset.state = "ok";
    }
  } catch (error) {
    $("server-status").dataset.state = "error";
    if (error instanceof ApiError && error.status === 401) {
      say("server-status", "This server needs a key");
      needKey(serverKey.get() ? `The key was refused: ${error.message}` : "This server requires a key.");
    } else {
      say("server-status", `Cannot reach the server: ${error.message}`);
    }
  }
}

function fillSuggestions(extra = []) {
  const names = new Set(extra);
  for (const preset of Object.values(state.presets)) {
    for (const model of preset.analysis_models || []) names.add(model);
    if (preset.model) names.add(preset.model);
  }
  $("model-options").replaceChildren(...[...names].sort().map((id) => option(id)));
}

// --- the Ask form -------------------------------------------------------------------------

function renderChips() {
  const chips = state.panel.map((model, i) => {
    const li = document.createElement("li");
    li.className = "chip";
    const label = document.createElement("span");
    label.textContent = model;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${model}`);
    remove.addEventListener("click", () => {
      state.panel.splice(i, 1);
      $("preset").value = "";
      renderChips();
      $("panel-input").focus();
    });
    li.append(label, remove);
    return li;
  });
  if (!chips.length) {
    const li = document.createElement("li");
    li.className = "chip placeholder";
    li.textContent = "the server's panel";
    chips.push(li);
  }
  $("chips").replaceChildren(...chips);
}

function addModel() {
  const model = $("panel-input").value.trim();
  if (!model) return;
  if (state.panel.length >= MAX_PANEL) {
    say("ask-error", `A panel has at most ${MAX_PANEL} models.`);
    return;
  }
  say("ask-error", "");
  state.panel.push(model);
  $("panel-input").value = "";
  $("preset").value = "";
  renderChips();
}

function number(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

function readAsk() {
  return {
    prompt: $("prompt").value,
    model: $("model").value || FUSION_ALIASES[0],
    panel: [...state.panel],
    analyst: $("analyst").value.trim(),
    maxToolCalls: number("max-tool-calls"),
    temperature: number("temperature"),
    preset: $("preset").value,
  };
}

function fillAsk(ask) {
  $("prompt").value = ask.prompt || "";
  if (ask.model) $("model").value = ask.model;
  state.panel = [...(ask.panel || [])];
  $("analyst").value = ask.analyst || "";
  $("max-tool-calls").value = ask.maxToolCalls ?? "";
  $("temperature").value = ask.temperature ?? "";
  $("preset").value = ask.preset || "";
  renderChips();
}

// --- a run --------------------------------------------------------------------------------

function showRun() {
  $("watch").hidden = false;
  $("understand").hidden = false;
}

async function run() {
  const ask = readAsk();
  if (!ask.prompt.trim()) {
    say("ask-error", "Type a prompt first.");
    $("prompt").focus();
    return;
  }
  say("ask-error", "");
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  showRun();
  const view = new RunView(document);
  state.view = view;
  $("run").disabled = true;
  $("stop").hidden = false;
  const record = { id: crypto.randomUUID(), at: new Date().toISOString(), ask };
  let accepted = false; // a request the server refused (a 4xx) is not a run to keep
  try {
    await streamResponses(responsesBody(ask, { stream: true }), controller.signal, (event) => {
      accepted = true;
      view.handle(event);
    });
    if (!view.usage && !view.error) view.finish("Done.");
  } catch (error) {
    if (controller.signal.aborted) view.stop();
    else {
      view.fail(error.message);
      if (error instanceof ApiError && error.status === 401) needKey(error.message);
    }
  } finally {
    $("run").disabled = false;
    $("stop").hidden = true;
    if (state.controller === controller) state.controller = null;
  }
  if (!accepted) return;
  saveRun({ ...record, ...view.record() });
  state.runs = loadHistory();
  renderHistory();
}

// --- Keep: history, request, result -------------------------------------------------------

function renderHistory() {
  const items = state.runs.map((saved) => {
    const li = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "history-item";
    const title = document.createElement("span");
    title.className = "history-prompt";
    title.textContent = saved.ask?.prompt || "(no prompt)";
    const meta = document.createElement("span");
    meta.className = "history-meta";
    const when = new Date(saved.at);
    const panel = (saved.columns || []).length;
    meta.textContent = `${when.toLocaleString()} · ${panel} panelist${panel === 1 ? "" : "s"}${saved.error ? " · failed" : ""}`;
    open.append(title, meta);
    open.addEventListener("click", () => {
      fillAsk(saved.ask || {});
      showRun();
      state.view = RunView.replay(document, saved);
      $("watch").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    li.append(open);
    return li;
  });
  $("history-list").replaceChildren(...items);
  $("history-empty").hidden = items.length > 0;
  $("clear-history").disabled = items.length === 0;
}

function requestText() {
  const ask = readAsk(); // the form: after a run, or a run reopened, it holds that run's ask
  const hosted = $("request-target").value === "hosted";
  const chat = $("request-api").value === "chat";
  const base = hosted ? HOSTED : new URL("v1", location.href).href;
  say("request-url", `POST ${base}/${chat ? "chat/completions" : "responses"}`);
  return JSON.stringify(chat ? chatBody(ask) : responsesBody(ask), null, 2);
}

async function copyRequest() {
  const text = requestText();
  $("request-json").value = text;
  if (!$("request-dialog").open) $("request-dialog").showModal();
  try {
    await navigator.clipboard.writeText(text);
    say("copy-status", "Copied to the clipboard.");
  } catch {
    say("copy-status", "Select the text and copy it (the clipboard needs https or localhost).");
    $("request-json").select();
  }
}

function contractResult(item) {
  const result = { status: item.failure_reason || item.status === "incomplete" ? "error" : "ok" };
  for (const key of ["analysis", "responses", "failed_models", "sources", "failure_reason", "error"]) {
    if (item[key] != null) result[key] = item[key];
  }
  return result;
}

function downloadResult() {
  const item = state.view?.item;
  if (!item) {
    say("keep-status", "No result yet: run a prompt first.");
    return;
  }
  const blob = new Blob([JSON.stringify(contractResult(item), null, 2)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "fusion-result.json";
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  say("keep-status", "");
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("run").disabled) {
      event.preventDefault();
      run();
    }
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("add-model").addEventListener("click", addModel);
  $("panel-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      addModel();
    }
  });
  $("preset").addEventListener("change", () => {
    const preset = state.presets[$("preset").value];
    state.panel = preset ? [...preset.analysis_models] : [];
    $("analyst").value = preset ? preset.model : "";
    renderChips();
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    serverKey.set($("server-key").value.trim());
    $("server-key").value = "";
    connect();
  });
  $("forget-key").addEventListener("click", () => {
    serverKey.set("");
    delete $("key-form").dataset.state;
    say("key-hint", "Key forgotten: this tab no longer sends it.");
    $("server-key").focus();
  });
  $("copy-request").addEventListener("click", copyRequest);
  for (const id of ["request-api", "request-target"]) {
    $(id).addEventListener("change", () => ($("request-json").value = requestText()));
  }
  $("close-request").addEventListener("click", () => $("request-dialog").close());
  $("download-result").addEventListener("click", downloadResult);
  $("clear-history").addEventListener("click", () => {
    clearHistory();
    state.runs = [];
    renderHistory();
  });
}

async function main() {
  wire();
  renderChips();
  renderHistory();
  if (serverKey.get()) $("key-form").hidden = false;
  state.presets = await loadPresets().catch(() => ({}));
  for (const [name, preset] of Object.entries(state.presets)) {
    $("preset").append(option(name, `${name} · ${preset.analysis_models.length} models`));
  }
  fillSuggestions();
  await connect();
  document.body.dataset.ready = "true";
}

main();
