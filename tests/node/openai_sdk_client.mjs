// The gateway through the `openai` npm SDK (tests/test_server_openai_node.py): Chat
// Completions and Responses, created and streamed (no stream_options: usage must come
// unasked), printing what the SDK parsed as JSON.
import OpenAI from "openai";
const [baseURL, outer, panel] = process.argv.slice(2);
const client = new OpenAI({ apiKey: "sk-client", baseURL, maxRetries: 0 });
const plugins = [{ id: "fusion", analysis_models: JSON.parse(panel) }];
const messages = [{ role: "user", content: "Is a carbon tax a good idea?" }];
const out = {};
const chat = await client.chat.completions.create({ model: outer, messages, plugins });
out.chat = { model: chat.model, text: chat.choices[0].message.content, usage: chat.usage };
const stream = await client.chat.completions.create({ model: outer, messages, plugins, stream: true });
out.chunks = [];
for await (const chunk of stream) out.chunks.push({ model: chunk.model, usage: chunk.usage ?? null });
const input = "Is a carbon tax a good idea?";
const response = await client.responses.create({ model: outer, input, plugins });
out.response = { model: response.model, text: response.output_text, usage: response.usage };
const events = await client.responses.create({ model: outer, input, plugins, stream: true });
out.events = [];
for await (const event of events) {
  out.events.push({ type: event.type, model: event.response?.model ?? null, usage: event.response?.usage ?? null });
}
console.log(JSON.stringify(out));
