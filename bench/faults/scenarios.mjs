// The faults of a fault-injection run: each scenario names a topology, the faults it
// injects (alone or together) and the revocation bound that docs/sessions.md ("How long a
// revoked access token can still be accepted") states for the default policy,
// `check-store`, under those faults.
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Milliseconds, for "feed up: milliseconds": delivery through Redis to another instance,
 * which the docs measured at 1.1–1.9 ms (worst 20.7 ms) on a quiet machine; here 3
 * instances, up to 12 Redis processes and the clients share 2 cores.
 */
export const FEED_UP_MS = 250
/** "Path silent, store up: `heartbeatInterval` + `heartbeatTimeout` (1.5 s)", then as up. */
export const PATH_SILENT_MS = 1500 + FEED_UP_MS
/**
 * How long before the old primary was cut off (or killed) a write it acknowledged may not
 * have reached its replica (replication is asynchronous; on loopback it takes well under a
 * millisecond). Only those writes may be lost: nothing the new primary acknowledges is.
 */
const REPLICATION_WINDOW_MS = 1000

/**
 * @typedef {object} FaultContext
 * @property {any} topology what bench/faults/topology.mjs started
 * @property {import('./instances.mjs').Instances} instances
 * @property {() => number} now the run's clock
 * @property {import('./checker.mjs').ExcusedLoss[]} excusedLosses where a fault makes Redis lose acknowledged writes
 */

/**
 * @typedef {object} Scenario
 * @property {string} name
 * @property {'standalone' | 'standalone-no-aof' | 'sentinel' | 'cluster'} topology
 * @property {number} revocationBoundMs
 * @property {number} [clockOffsetMs] instance c's wall-clock offset
 * @property {(ctx: FaultContext) => Promise<void>} [inject] the faults (none: a control run)
 */

/** @param {FaultContext} ctx */
async function blackHoleSubscribers (ctx) {
  ctx.topology.proxy.silenceSubscribers()
  await sleep(4000)
  ctx.topology.proxy.heal()
}

/**
 * A fault three times, a second apart.
 * @param {() => unknown} fault
 */
async function thrice (fault) {
  for (let i = 0; i < 3; i++) {
    await fault()
    await sleep(1000)
  }
}

/** @param {FaultContext} ctx */
async function killConnections (ctx, /** @type {'pubsub' | 'normal'} */ type) {
  await thrice(() => ctx.topology.clientKill(type))
}

/** @param {FaultContext} ctx */
async function killRedis (ctx) {
  await ctx.topology.kill()
  await sleep(1500)
  await ctx.topology.restart()
}

/** @param {FaultContext} ctx */
async function killRedisWithoutPersistence (ctx) {
  // The writes are lost at the kill, not when the restart is seen to be done: a request
  // answered between the two (Redis up, the harness not told yet) already sees the loss.
  const at = ctx.now()
  await killRedis(ctx)
  ctx.excusedLosses.push({ start: 0, end: at, why: 'Redis restarted without persistence: every write before the kill is gone' })
}

/** @param {FaultContext} ctx */
async function pauseRedis (ctx) {
  await ctx.topology.pause()
  await sleep(3000)
  await ctx.topology.resume()
}

const LATENCY_MS = 300
/** @param {FaultContext} ctx */
async function latencySpike (ctx) {
  ctx.topology.proxy.setLatency(LATENCY_MS)
  await sleep(4000)
  ctx.topology.proxy.heal()
}

/** @param {FaultContext} ctx */
async function cutConnections (ctx) {
  await thrice(() => ctx.topology.proxy.cut())
}

/** @param {FaultContext} ctx */
async function killInstance (ctx) {
  await ctx.instances.kill('b')
  await sleep(2000)
  await ctx.instances.restart('b')
}

/** @param {FaultContext} ctx */
async function sentinelFailover (ctx) {
  const at = ctx.now()
  await ctx.topology.isolatePrimary()
  ctx.excusedLosses.push({ start: at - REPLICATION_WINDOW_MS, end: at, why: 'Sentinel promoted the asynchronous replica: writes the old primary acknowledged but had not replicated are gone' })
  await ctx.topology.heal()
}

/** @param {FaultContext} ctx */
async function migrateSlots (ctx) {
  await ctx.topology.migrateSlots(64)
}

/** @param {FaultContext} ctx */
async function clusterFailover (ctx) {
  const at = ctx.now()
  await ctx.topology.failoverPrimary()
  ctx.excusedLosses.push({ start: at - REPLICATION_WINDOW_MS, end: at, why: 'the Cluster promoted an asynchronous replica: writes the killed primary acknowledged but had not replicated are gone' })
  await ctx.topology.restartKilled()
}

/**
 * Runs faults together.
 * @param {...((ctx: FaultContext) => Promise<void>)} faults
 * @returns {(ctx: FaultContext) => Promise<void>}
 */
function together (...faults) {
  return async (ctx) => { await Promise.all(faults.map((fault) => fault(ctx))) }
}

/** @type {Scenario[]} */
export const SCENARIOS = [
  { name: 'no-fault', topology: 'standalone', revocationBoundMs: FEED_UP_MS },
  { name: 'subscriber-black-holed', topology: 'standalone', revocationBoundMs: PATH_SILENT_MS, inject: blackHoleSubscribers },
  { name: 'client-kill-subscriber', topology: 'standalone', revocationBoundMs: FEED_UP_MS, inject: (ctx) => killConnections(ctx, 'pubsub') },
  { name: 'client-kill-command', topology: 'standalone', revocationBoundMs: FEED_UP_MS, inject: (ctx) => killConnections(ctx, 'normal') },
  { name: 'redis-sigkill-aof', topology: 'standalone', revocationBoundMs: FEED_UP_MS, inject: killRedis },
  { name: 'redis-sigkill-no-persistence', topology: 'standalone-no-aof', revocationBoundMs: FEED_UP_MS, inject: killRedisWithoutPersistence },
  { name: 'redis-sigstop', topology: 'standalone', revocationBoundMs: PATH_SILENT_MS, inject: pauseRedis },
  { name: 'latency-spike', topology: 'standalone', revocationBoundMs: FEED_UP_MS + 2 * LATENCY_MS, inject: latencySpike },
  { name: 'connections-cut', topology: 'standalone', revocationBoundMs: FEED_UP_MS, inject: cutConnections },
  { name: 'app-instance-killed', topology: 'standalone', revocationBoundMs: FEED_UP_MS, inject: killInstance },
  { name: 'clock-offset', topology: 'standalone', revocationBoundMs: FEED_UP_MS, clockOffsetMs: 90_000 },
  { name: 'sentinel-failover-isolated', topology: 'sentinel', revocationBoundMs: PATH_SILENT_MS, inject: sentinelFailover },
  { name: 'cluster-slot-migration', topology: 'cluster', revocationBoundMs: FEED_UP_MS, inject: migrateSlots },
  { name: 'cluster-primary-failover', topology: 'cluster', revocationBoundMs: PATH_SILENT_MS, inject: clusterFailover },
  { name: 'black-holed+command-kill', topology: 'standalone', revocationBoundMs: PATH_SILENT_MS, inject: together(blackHoleSubscribers, (ctx) => killConnections(ctx, 'normal')) },
  { name: 'app-killed+redis-sigkill', topology: 'standalone', revocationBoundMs: FEED_UP_MS, inject: together(killInstance, killRedis) },
  { name: 'sigstop+latency', topology: 'standalone', revocationBoundMs: PATH_SILENT_MS + 2 * LATENCY_MS, inject: together(pauseRedis, latencySpike) }
]
