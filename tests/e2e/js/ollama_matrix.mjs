// Drives the official `ollama` npm package against a live mlx-lama server and prints one JSON
// object of what each call returned (or threw), for tests/e2e/test_ollama_js.py to check.
// Usage: node ollama_matrix.mjs <path of ollama's dist/index.mjs> <server url> <models JSON>
import { pathToFileURL } from 'node:url'

const [, , modulePath, host, modelsJson] = process.argv
const { Ollama } = await import(pathToFileURL(modulePath).href)
const models = JSON.parse(modelsJson)
const ollama = new Ollama({ host })
const hi = [{ role: 'user', content: 'hi' }]
const out = {}

// Each step records its value, or the error it threw (message and status), under its name.
async function step(name, fn) {
  try {
    out[name] = { ok: await fn() }
  } catch (err) {
    out[name] = { error: err.message, status: err.status_code ?? null, name: err.name }
  }
}

// Consumes a stream: the client throws if it ends without a done/success object.
async function drain(iterable) {
  const parts = []
  for await (const part of iterable) parts.push(part)
  return parts
}

await step('version', () => ollama.version())
await step('list', async () => (await ollama.list()).models.map((m) => m.model))
await step('show', async () => {
  const s = await ollama.show({ model: models.hello })
  return { capabilities: s.capabilities, has_model_info: 'model_info' in s, family: s.details.family }
})
await step('chat', async () => {
  const r = await ollama.chat({ model: models.hello, messages: hi })
  return { content: r.message.content, done: r.done, done_reason: r.done_reason, eval_count: r.eval_count }
})
await step('chat_stream', async () => {
  const parts = await drain(await ollama.chat({ model: models.hello, messages: hi, stream: true }))
  const last = parts[parts.length - 1]
  return { content: parts.map((p) => p.message.content).join(''), chunks: parts.length, done: last.done,
           done_reason: last.done_reason, eval_count: last.eval_count }
})
await step('chat_think', async () => {
  const r = await ollama.chat({ model: models.thinker, messages: hi, think: true })
  return { content: r.message.content, thinking: r.message.thinking }
})
await step('generate', async () => {
  const r = await ollama.generate({ model: models.hello, prompt: 'hi' })
  return { response: r.response, done: r.done, context: Array.isArray(r.context) }
})
await step('generate_stream', async () => {
  const parts = await drain(await ollama.generate({ model: models.hello, prompt: 'hi', stream: true }))
  return { response: parts.map((p) => p.response).join(''), done: parts[parts.length - 1].done }
})
await step('embed', async () => {
  const r = await ollama.embed({ model: models.embed, input: ['a cat', 'a dog'] })
  return { count: r.embeddings.length, norm: Math.hypot(...r.embeddings[0]) }
})
await step('ps', async () => (await ollama.ps()).models.map((m) => m.model))
await step('create_stream', async () =>
  (await drain(await ollama.create({ model: 'js-copy', from: models.hello, system: 'Be brief.', stream: true })))
    .map((p) => p.status))
await step('copy', () => ollama.copy({ source: 'js-copy', destination: 'js-copy-2' }))
await step('delete', async () => {
  await ollama.delete({ model: 'js-copy' })
  await ollama.delete({ model: 'js-copy-2' })
  return (await ollama.list()).models.map((m) => m.model)
})
await step('chat_missing', () => ollama.chat({ model: 'no-such-model', messages: hi }))
await step('chat_stream_missing', async () =>
  drain(await ollama.chat({ model: 'no-such-model', messages: hi, stream: true })))
await step('pull_stream_missing', async () =>
  drain(await ollama.pull({ model: 'hf.co/no-such-org/no-such-model', stream: true })))
await step('unload', () => ollama.generate({ model: models.hello, prompt: '', keep_alive: 0 }))

console.log(JSON.stringify(out))
