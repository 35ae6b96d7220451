"""The gateway's response side on the wire: typed bodies, chunks, output items and events.

Chat Completions bodies and chunks are the `openai` SDK's own types (`ChatCompletion`,
`ChatCompletionChunk`), which match the hosted schema once unset fields are left out; the
Responses objects, output items and events (the hosted API adds the `openrouter:fusion`
item and the `response.fusion_call.*` events to OpenAI's) are our pydantic models of the
hosted `openapi.yaml`, in `responses.py` and `events.py`. Every model serialises with its
optional fields omitted when they have no value: the official TypeScript SDK refuses `null`
where the schema says "a string or no field", while a nullable required field (the
Response's `frequency_penalty`) is always sent, `null` or not.
"""
