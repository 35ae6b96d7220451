// The page's only way to the server: the public API (GET /v1/models, POST /v1/responses
// streamed), with the server key from sessionStorage (never the URL, never localStorage).

const KEY = "langchain-fusion:server-key";
export const HOSTED = "https://openrouter.ai/api/v1";

export const serverKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const out = { "content-type": "application/json" };
  const key = serverKey.get();
  if (key) out.authorization = `Bearer ${key}`;
  return out;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = String(body.error.message);
  } catch {
    /* not JSON */
  }
  return new ApiError(response.status, message);
}

export async function listModels() {
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) throw await failure(response);
  const body = await response.json();
  return (body.data || []).map((m) => m.id).filter((id) => typeof id === "string");
}

export async function loadPresets() {
  const response = await fetch("playground/presets.json");
  return response.ok ? response.json() : {};
}

/** The fusion parameters the form asks for (only what is set: the rest is the server's). */
export function fusionParameters(ask) {
  const parameters = {};
  if (ask.panel.length) parameters.analysis_models = [...ask.panel];
  if (ask.analyst) parameters.model = ask.analyst;
  if (ask.maxToolCalls != null) parameters.max_tool_calls = ask.maxToolCalls;
  if (ask.temperature != null) parameters.temperature = ask.temperature;
  return parameters;
}

function fusionTool(ask) {
  const parameters = fusionParameters(ask);
  const tool = { type: "openrouter:fusion" };
  if (Object.keys(parameters).length) tool.parameters = parameters;
  return tool;
}

/** The Responses request of a run: fusion forced, so that it always deliberates. */
export function responsesBody(ask, { stream = false } = {}) {
  const body = { model: ask.model, input: ask.prompt, tools: [fusionTool(ask)], tool_choice: "required" };
  if (stream) body.stream = true;
  return body;
}

/** The same request for Chat Completions. */
export function chatBody(ask) {
  return {
    model: ask.model,
    messages: [{ role: "user", content: ask.prompt }],
    tools: [fusionTool(ask)],
    tool_choice: "required",
  };
}

/** Every server-sent event of `response`, parsed, in order. */
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length || data.join("") === "[DONE]") continue;
      let event;
      try {
        event = JSON.parse(data.join("\n"));
      } catch {
        continue; // a line we cannot read is skipped, not fatal
      }
      if (event && typeof event === "object") {
        if (!event.type && name) event.type = name;
        yield event;
      }
    }
  }
}

/** Stream one run: `onEvent` gets each Responses event. */
export async function streamResponses(body, signal, onEvent) {
  const response = await fetch("v1/responses", {
    method: "POST",
    headers: headers(),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  for await (const event of events(response)) onEvent(event);
}
