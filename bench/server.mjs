// The server under test, in a process of its own so that the load generator does not
// share its event loop. Started by bench/run.mjs and bench/load.mjs with an IPC channel:
// it sends { type: 'listening', port } once ready; it answers { type: 'memory' } with
// process.memoryUsage() and { type: 'cpu' } with process.cpuUsage(), and on
// { type: 'sample', everyMs, collect } it streams memory samples (after a full garbage
// collection if `collect` and the process runs with --expose-gc).
// It exits when its parent goes away or sends { type: 'close' }.
// With BENCH_APP=example it serves the example app instead (built, as docker-compose.yml
// configures it: production, its log level, every log line written to a file descriptor),
// and on a second port the `@fastify/jwt` baseline route (`secondPort`).
import { openSync, writeSync } from 'node:fs'
import { buildApp, buildJwtBaseline } from './apps.mjs'

const redisUrl = process.env.REDIS_URL
if (redisUrl === undefined || process.send === undefined) {
  console.error('bench/server.mjs is started by bench/run.mjs or bench/load.mjs (it needs REDIS_URL and an IPC channel)')
  process.exit(2)
}

let app
let baseline
if (process.env.BENCH_APP === 'example') {
  const { buildApp: buildExample } = await import('../example-app/dist/app.js')
  const { loadConfig } = await import('../example-app/dist/config.js')
  const sink = openSync('/dev/null', 'w')
  app = await buildExample(loadConfig({ ...process.env, NODE_ENV: 'production' }), { logStream: { write: (line) => writeSync(sink, line) } })
  baseline = await buildJwtBaseline()
  await baseline.app.listen({ host: '127.0.0.1', port: 0 })
} else {
  app = (await buildApp(redisUrl)).app
}
await app.listen({ host: '127.0.0.1', port: 0 })

let sampler
async function close () {
  clearInterval(sampler)
  await app.close()
  await baseline?.app.close()
  // Let --cpu-prof write its profile: it does so on a normal exit.
  process.exit(0)
}

process.on('message', (message) => {
  if (message.type === 'memory') process.send({ type: 'memory', at: Date.now(), ...process.memoryUsage() })
  if (message.type === 'cpu') process.send({ type: 'cpu', ...process.cpuUsage() })
  if (message.type === 'sample') {
    clearInterval(sampler)
    sampler = setInterval(() => {
      // With --expose-gc, a full collection first: heapUsed is then what the server
      // retains, not wherever the garbage collector's sawtooth happens to be.
      if (message.collect && typeof globalThis.gc === 'function') globalThis.gc()
      process.send({ type: 'memory', at: Date.now(), ...process.memoryUsage() })
    }, message.everyMs)
  }
  if (message.type === 'close') close()
})
process.on('disconnect', () => { close() })
process.send({ type: 'listening', port: app.server.address().port, secondPort: baseline?.app.server.address().port })
