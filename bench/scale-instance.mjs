// One app instance's revocation list, in a process of its own, for `npm run bench:scale`
// (bench/scale.mjs forks it, with --expose-gc, and talks to it over IPC). It runs the
// plugin's own RevocationList (built, from dist/) on the plugin's RedisStore:
// - `reload`: starts the list on a store holding very many revocations and reports how
//   long the first load took, and the heap it added per remembered revocation (after GC);
// - `storm`: starts the list, then records when each announced revocation reached it
//   (after the list took it) and the CPU it spent meanwhile, until told to report.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Cluster, Redis } from 'ioredis'
import { RedisStore } from '../dist/index.js'
import { StoreClock } from '../dist/clock.js'
import { RevocationList } from '../dist/revocations.js'

const silent = { info () {}, warn () {}, error () {}, debug () {}, trace () {}, fatal () {}, child () { return silent }, level: 'silent' }
/** The example app's access-token lifetime (15 minutes) and the plugin's margin. */
const REMEMBER_MS = 15 * 60_000 + 30_000
const now = () => performance.timeOrigin + performance.now()

function heap () {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

function storeOf ({ url, cluster }) {
  const client = cluster === undefined ? new Redis(url) : new Cluster(cluster.map((port) => ({ host: '127.0.0.1', port })))
  return new RedisStore({ client })
}

/** The list, on a feed that passes everything through and tells `onRevoked` after the list took it. */
function listOf (store, onRevoked = () => {}) {
  const feed = {
    revocations: () => store.revocationFeed.revocations(),
    watch: (listener) => store.revocationFeed.watch({
      ...listener,
      revoked: (revocations) => {
        listener.revoked(revocations)
        onRevoked(revocations, now())
      }
    })
  }
  const clock = new StoreClock(() => store.time(), silent)
  return new RevocationList(feed, clock, { maxOutageMs: 60_000, onOutage: 'accept', rememberMs: REMEMBER_MS }, silent)
}

async function reload (message) {
  const store = storeOf(message)
  await store.client.ping()
  const before = heap()
  const delay = monitorEventLoopDelay({ resolution: 5 })
  delay.enable()
  const start = now()
  const revocations = listOf(store)
  await revocations.start(600_000)
  const ms = now() - start
  delay.disable()
  const { size } = revocations
  const added = heap() - before
  process.send({ type: 'reloaded', ms, size, bytesPerRevocation: added / size, heapMB: added / 1048576, maxBlockMs: delay.max / 1e6 })
}

async function storm (message) {
  const store = storeOf(message)
  const ids = []
  const times = []
  const revocations = listOf(store, (announced, at) => {
    for (const revocation of announced) {
      if ('sessionId' in revocation) {
        ids.push(revocation.sessionId)
        times.push(at)
      }
    }
  })
  await revocations.start(60_000)
  let cpu
  process.on('message', (next) => {
    if (next.type === 'idle') cpu = process.cpuUsage()
    if (next.type === 'mark') {
      const spent = process.cpuUsage(cpu)
      process.send({ type: 'cpu', usec: spent.user + spent.system })
      cpu = process.cpuUsage()
    }
    if (next.type === 'report') {
      const spent = process.cpuUsage(cpu)
      process.send({ type: 'arrivals', ids, times, usec: spent.user + spent.system, size: revocations.size })
    }
  })
  process.send({ type: 'ready' })
}

process.once('message', (message) => {
  const run = message.type === 'reload' ? reload : storm
  run(message).catch((error) => {
    console.error(error)
    process.exit(1)
  })
})
process.on('message', (message) => {
  // Exits on its own (writing a CPU profile when run with --cpu-prof).
  if (message.type === 'exit') process.exit(0)
})
