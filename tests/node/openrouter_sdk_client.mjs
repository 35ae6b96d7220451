// The gateway through the official TypeScript SDK (tests/test_server_openrouter_sdk.py):
// every body and event is parsed by the SDK's zod schemas; what it cannot parse becomes
// UNKNOWN (an event) or throws (a body).
import { OpenRouter } from "@openrouter/sdk";
const [serverURL, outer, panel] = process.argv.slice(2);
const client = new OpenRouter({ apiKey: "sk-client", serverURL });
const out = {};
const fusion = { type: "openrouter:fusion", parameters: { analysisModels: JSON.parse(panel) } };
const messages = [{ role: "user", content: "Is a carbon tax a good idea?" }];
const chatRequest = { model: outer, messages, tools: [fusion], toolChoice: "required" };
const chat = await client.chat.send({ chatRequest });
out.chat = { model: chat.model, text: chat.choices[0].message.content };
const stream = await client.chat.send({ chatRequest: { ...chatRequest, stream: true } });
out.chunks = [];
for await (const chunk of stream) out.chunks.push({ model: chunk.model, usage: chunk.usage ?? null });
const responsesRequest = {
  model: "openrouter/fusion",
  input: "Is a carbon tax a good idea?",
  toolChoice: "required",
};
const response = await client.beta.responses.send({ responsesRequest });
out.response = { model: response.model, items: response.output.map((item) => item.type) };
const events = await client.beta.responses.send({
  responsesRequest: { ...responsesRequest, stream: true },
});
out.events = [];
for await (const event of events) out.events.push(event.type ?? "UNKNOWN");
console.log(JSON.stringify(out));
