// Revocations and sessions at scale (`npm run bench:scale`, about 10 minutes).
//
// Numbers, not pass/fail; printed as Markdown. Each part starts its own redis-server
// processes (standalone, and a 3-primary Cluster) on free loopback ports:
// 1. Reload: SCALE_REVOCATIONS (1,000,000) remembered revocations in the store, as a mass
//    logout over a minute leaves them (session ids, and separately per-user stamps),
//    seeded straight into the revocation buckets; an instance (bench/scale-instance.mjs, its own process)
//    starts its revocation list and reports how long the first load took, the heap it
//    added per revocation (after GC) and its longest event-loop block; Redis's SLOWLOG
//    (every command over 1 ms) tells the slowest command meanwhile.
// 2. Storm: STORM_INSTANCES (4) instances listen while one client revokes STORM_RATE
//    (2,000) sessions a second for STORM_SECONDS (30), each through the store's revoke
//    (the script logout runs); for each instance, how long each revocation took from the
//    revoke call to the instance's list (p50, p99, max; and p99 per 5-second window, to
//    see whether it falls behind), and its CPU per revocation received, next to its CPU
//    when idle; SLOWLOG again.
// SCALE_PARTS (reload,storm,sessions) picks the parts to run; SCALE_NICE=1 runs the
// instances at the lowest CPU priority, so that Redis never waits for a core.
// 3. Sessions: SCALE_SESSIONS (10,000, 100,000, 1,000,000) sessions, two per user, as
//    `npm run bench` shapes them, standalone and on the Cluster: Redis memory per session
//    (used_memory growth), and for SAMPLES (500) sessions picked at random, the latency of
//    one list, rotate and revoke (one at a time) and the Redis time of their scripts.
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { setPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, Redis } from 'ioredis'
import { RedisStore } from '../dist/index.js'
import { RevocationBuckets, SLOTS, STANDALONE_BUCKETS } from '../dist/stores/buckets.js'
import { hashId } from '../dist/tokens.js'
import { percentile } from './lib/figures.mjs'
import { scriptStats, usedMemory } from './lib/redis-stats.mjs'
import { SESSIONS_PER_USER, sessionOf } from './lib/session-shape.mjs'
import { RedisServer, clusterNodeArgs, freePort, joinCluster, killProcess, spawnRedis } from '../test/helpers/redis.mjs'

const REVOCATIONS = Number(process.env.SCALE_REVOCATIONS ?? 1_000_000)
const SIZES = (process.env.SCALE_SESSIONS ?? '10000,100000,1000000').split(',').map(Number)
const SAMPLES = Number(process.env.SAMPLES ?? 500)
const STORM_INSTANCES = Number(process.env.STORM_INSTANCES ?? 4)
const STORM_RATE = Number(process.env.STORM_RATE ?? 2000)
const STORM_SECONDS = Number(process.env.STORM_SECONDS ?? 30)
const PARTS = (process.env.SCALE_PARTS ?? 'reload,storm,sessions').split(',')
/** SCALE_NICE=1: instances at the lowest CPU priority, so that Redis is never kept waiting for a core (as on a host of its own). */
const NICE = process.env.SCALE_NICE === '1'
/** The example app's access-token lifetime (15 minutes) and the plugin's margin. */
const REMEMBER_MS = 15 * 60_000 + 30_000
const INSTANCE = new URL('./scale-instance.mjs', import.meta.url)
const now = () => performance.timeOrigin + performance.now()
const fmt = (n, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** A 3-primary Cluster of its own: its ports, and a function that stops it. */
async function startCluster () {
  const dir = mkdtempSync(join(tmpdir(), 'fts-scale-'))
  const ports = [await freePort(), await freePort(), await freePort()]
  const children = []
  for (const port of ports) children.push(await spawnRedis(port, clusterNodeArgs(port, dir)))
  await joinCluster(ports)
  return {
    ports,
    stop: async () => {
      for (const child of children) await killProcess(child)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** The two set-ups every part runs on: how to connect, and an admin client per node. */
async function topologies () {
  const standalone = await RedisServer.start()
  const cluster = await startCluster()
  return [
    { name: 'standalone', target: { url: standalone.url }, client: () => new Redis(standalone.url), nodes: [standalone.port], stop: () => standalone.destroy() },
    {
      name: 'Cluster (3 primaries)',
      target: { cluster: cluster.ports },
      client: () => new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port }))),
      nodes: cluster.ports,
      stop: cluster.stop
    }
  ]
}

/** Runs `fn` with a client to each node, and quits them. */
async function onNodes (ports, fn) {
  const admins = ports.map((port) => new Redis(port, '127.0.0.1'))
  try {
    return await Promise.all(admins.map(fn))
  } finally {
    for (const admin of admins) admin.disconnect()
  }
}

/** SLOWLOG from now on: every command over 1 ms, up to 1,000 of them per node. */
async function slowlogReset (ports) {
  await onNodes(ports, async (admin) => {
    await admin.config('SET', 'slowlog-log-slower-than', '1000')
    await admin.config('SET', 'slowlog-max-len', '1000')
    await admin.slowlog('RESET')
  })
}

/** The slowest command since slowlogReset, and how many took over 10 ms. */
async function slowlogRead (ports) {
  const entries = (await onNodes(ports, async (admin) => await admin.slowlog('GET', 1000))).flat()
  let slowest = { usec: 0, command: '(none over 1 ms)' }
  for (const [, , usec, args] of entries) {
    if (usec > slowest.usec) slowest = { usec, command: args.slice(0, 2).join(' ').slice(0, 40) }
  }
  return { over10ms: entries.filter(([, , usec]) => usec > 10_000).length, over1ms: entries.length, slowest }
}

/** Seeds revocations straight into the buckets, as the scripts write them: `count` members made by `member(n)`. */
async function seedRevocations (client, cluster, count, member) {
  const buckets = new RevocationBuckets('tsess:', cluster ? SLOTS : STANDALONE_BUCKETS)
  const byBucket = new Map()
  for (let n = 0; n < count; n++) {
    const [userId, value, score] = member(n)
    const bucket = buckets.of(`tsess:{${userId}}`)
    let pairs = byBucket.get(bucket)
    if (pairs === undefined) byBucket.set(bucket, pairs = [])
    pairs.push(score, value)
  }
  const all = [...byBucket]
  for (let from = 0; from < all.length; from += 256) {
    await Promise.all(all.slice(from, from + 256).map(async ([bucket, pairs]) => {
      await client.zadd(bucket, ...pairs)
      await client.pexpire(bucket, REMEMBER_MS)
    }))
  }
}

function forkInstance () {
  const child = fork(INSTANCE, [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  if (NICE) setPriority(child.pid, 19)
  const next = (type) => new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      child.off('message', onMessage)
      resolve(message)
    }
    child.on('message', onMessage)
    child.once('exit', (code) => reject(new Error(`scale-instance exited (${code})`)))
  })
  return { child, next, send: (message) => child.send(message) }
}

async function reloadPart (setups) {
  const rows = []
  for (const setup of setups) {
    for (const kind of ['sessions', 'stamps']) {
      const client = setup.client()
      // A mass logout: revocations over the last minute, each remembered for an access lifetime.
      const at = () => Date.now() - Math.floor(Math.random() * 60_000)
      await seedRevocations(client, setup.target.cluster !== undefined, REVOCATIONS, kind === 'sessions'
        ? (n) => [`user-${n}`, randomBytes(16).toString('base64url'), at() + REMEMBER_MS]
        : (n) => {
            const startedBefore = at()
            return [`user-${n}`, `u:${startedBefore}::user-${n}`, startedBefore + REMEMBER_MS]
          })
      await slowlogReset(setup.nodes)
      const instance = forkInstance()
      instance.send({ type: 'reload', ...setup.target })
      const reloaded = await instance.next('reloaded')
      instance.child.kill()
      const slow = await slowlogRead(setup.nodes)
      rows.push({ setup: setup.name, kind, ...reloaded, slow })
      await onNodes(setup.nodes, async (admin) => { await admin.flushall() })
      client.disconnect()
    }
  }
  console.log(`\n## Reload of ${fmt(REVOCATIONS)} remembered revocations\n`)
  console.log('| Redis | revocations | first load | remembered | heap per revocation | heap in all | longest event-loop block | commands > 10 ms | slowest command |')
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---|')
  for (const row of rows) {
    console.log(`| ${row.setup} | ${row.kind === 'sessions' ? 'one session each' : 'a user\'s stamp each'} | ${fmt(row.ms)} ms | ${fmt(row.size)} | ${fmt(row.bytesPerRevocation, 1)} B | ${fmt(row.heapMB, 1)} MB | ${fmt(row.maxBlockMs, 1)} ms | ${row.slow.over10ms} | ${fmt(row.slow.slowest.usec / 1000, 2)} ms (${row.slow.slowest.command}) |`)
  }
}

async function stormPart (setup) {
  const store = new RedisStore({ client: setup.client() })
  const total = STORM_RATE * STORM_SECONDS
  const fields = { tokenHash: 'h', ttlMs: 3_600_000, maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER_MS }
  const sessions = Array.from({ length: total }, (_, n) => ({ userId: `storm-${n}`, sessionId: randomBytes(16).toString('base64url') }))
  for (let from = 0; from < total; from += 500) await Promise.all(sessions.slice(from, from + 500).map((s) => store.create({ ...s, ...fields })))
  const instances = []
  for (let n = 0; n < STORM_INSTANCES; n++) {
    const instance = forkInstance()
    instance.send({ type: 'storm', ...setup.target })
    await instance.next('ready')
    instances.push(instance)
  }
  // Idle CPU first, over as long as the storm, for comparison.
  for (const instance of instances) instance.send({ type: 'idle' })
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const idle = await Promise.all(instances.map(async (instance) => {
    const reading = instance.next('cpu')
    instance.send({ type: 'mark' })
    return (await reading).usec / 5
  }))
  await slowlogReset(setup.nodes)
  const sentAt = new Map()
  const failures = []
  const inFlight = new Set()
  const start = now()
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor((now() - start) / 1000 * STORM_RATE))
    for (; sent < due; sent++) {
      const session = sessions[sent]
      sentAt.set(session.sessionId, now())
      const call = store.revoke({ ...session, rememberMs: REMEMBER_MS }).then((outcome) => {
        if (outcome !== 'revoked') failures.push(outcome)
      }, (error) => { failures.push(error.message) })
      inFlight.add(call)
      call.finally(() => inFlight.delete(call))
    }
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  await Promise.all(inFlight)
  const stormSeconds = (now() - start) / 1000
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const reports = await Promise.all(instances.map(async (instance) => {
    const reading = instance.next('arrivals')
    instance.send({ type: 'report' })
    return await reading
  }))
  for (const instance of instances) instance.child.kill()
  const slow = await slowlogRead(setup.nodes)
  console.log(`\n## Revocation storm: ${STORM_INSTANCES} instances, ${fmt(STORM_RATE)} revocations/s for ${STORM_SECONDS} s (${setup.name})\n`)
  console.log(`${fmt(total)} revocations sent in ${fmt(stormSeconds, 1)} s (${fmt(total / stormSeconds)}/s), ${failures.length} failed${failures.length > 0 ? ` (${[...new Set(failures)].slice(0, 3).join(', ')})` : ''}; Redis commands > 10 ms: ${slow.over10ms}, slowest ${fmt(slow.slowest.usec / 1000, 2)} ms (${slow.slowest.command}).\n`)
  console.log('| instance | received | propagation p50 | p99 | max | p99 per 5 s window (ms) | CPU per revocation | CPU when idle |')
  console.log('|---|---:|---:|---:|---:|---|---:|---:|')
  for (const [n, report] of reports.entries()) {
    const delays = []
    const windows = []
    for (const [i, id] of report.ids.entries()) {
      const at = sentAt.get(id)
      if (at === undefined) continue
      const delay = report.times[i] - at
      delays.push(delay)
      const window = Math.floor((at - start) / 5000)
      ;(windows[window] ??= []).push(delay)
    }
    delays.sort((a, b) => a - b)
    const perWindow = windows.map((w) => fmt(percentile(w.sort((a, b) => a - b), 0.99), 1)).join(', ')
    console.log(`| ${n + 1} | ${fmt(delays.length)} | ${fmt(percentile(delays, 0.5), 1)} ms | ${fmt(percentile(delays, 0.99), 1)} ms | ${fmt(delays.at(-1), 1)} ms | ${perWindow} | ${fmt(report.usec / delays.length, 1)} µs | ${fmt(idle[n] / 1000, 1)} ms/s |`)
  }
  await store.close()
  store.client.disconnect()
}

/** Redis's used_memory summed over the nodes. */
async function usedMemoryOf (ports) {
  const readings = await onNodes(ports, usedMemory)
  return readings.reduce((a, b) => a + b, 0)
}

/** The usec and calls of scripts so far, summed over the nodes. */
async function scriptTime (ports) {
  const readings = await onNodes(ports, scriptStats)
  return readings.reduce((a, b) => ({ usec: a.usec + b.usec, calls: a.calls + b.calls }), { usec: 0, calls: 0 })
}

/** Latency (p50, p99) and Redis script time per call of `operation` over `targets`, one call at a time. */
async function measure (ports, targets, operation) {
  const latencies = []
  const before = await scriptTime(ports)
  for (const target of targets) {
    const start = now()
    await operation(target)
    latencies.push(now() - start)
  }
  const after = await scriptTime(ports)
  latencies.sort((a, b) => a - b)
  return { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), redisUs: (after.usec - before.usec) / targets.length }
}

async function sessionsPart (setups) {
  const rows = []
  for (const setup of setups) {
    const store = new RedisStore({ client: setup.client() })
    await store.create(sessionOf('warm-up'))
    await onNodes(setup.nodes, async (admin) => { await admin.flushall() })
    const baseline = await usedMemoryOf(setup.nodes)
    const sessions = []
    for (const size of SIZES) {
      // A user's sessions are created one after the other: SESSIONS_PER_USER each.
      for (let seeded = sessions.length; seeded < size; seeded += 1000) {
        const batch = Array.from({ length: Math.min(1000, size - seeded) }, (_, i) => sessionOf(`user-${Math.floor((seeded + i) / SESSIONS_PER_USER)}`))
        await Promise.all(batch.map((session) => store.create(session)))
        sessions.push(...batch)
      }
      const memory = await usedMemoryOf(setup.nodes)
      const picked = new Set()
      while (picked.size < Math.min(SAMPLES * 3, size)) picked.add(Math.floor(Math.random() * size))
      const targets = [...picked].map((n) => sessions[n])
      const list = await measure(setup.nodes, targets.slice(0, SAMPLES), async (s) => await store.list(s.userId, { limit: 10 }))
      const rotate = await measure(setup.nodes, targets.slice(SAMPLES, 2 * SAMPLES), async (s) => {
        const successor = hashId(randomBytes(32).toString('base64url'))
        const outcome = await store.rotate({ userId: s.userId, sessionId: s.sessionId, presentedHash: s.tokenHash, successorHash: successor, ttlMs: s.ttlMs, maxTtlMs: s.maxTtlMs, graceMs: 0, rememberMs: s.rememberMs })
        if (outcome.status !== 'rotated') throw new Error(`rotate: ${outcome.status}`)
        s.tokenHash = successor
      })
      const revoked = targets.slice(2 * SAMPLES, 3 * SAMPLES)
      const revoke = await measure(setup.nodes, revoked, async (s) => {
        if (await store.revoke({ userId: s.userId, sessionId: s.sessionId, rememberMs: s.rememberMs }) !== 'revoked') throw new Error('revoke: not revoked')
      })
      // The revoked sessions' users log in again, so the next size counts whole users.
      await Promise.all(revoked.map(async (s) => {
        const again = sessionOf(s.userId)
        Object.assign(s, again)
        await store.create(again)
      }))
      rows.push({ setup: setup.name, size, perSession: (memory - baseline) / size, list, rotate, revoke })
      process.stderr.write(`sessions: ${setup.name}, ${fmt(size)} done\n`)
    }
    await store.close()
    store.client.disconnect()
  }
  console.log('\n## Sessions: memory, and costs as users grow\n')
  console.log(`${SESSIONS_PER_USER} sessions per user, each with a browser's user agent and an IP, created through RedisStore.create. Memory: used_memory growth (all primaries) per session. Costs: ${SAMPLES} sessions picked at random for each operation, one call at a time: latency p50 / p99, and the Redis time of its script (INFO commandstats).\n`)
  console.log('| Redis | sessions (users) | Redis memory per session | list p50 / p99 (Redis) | rotate p50 / p99 (Redis) | revoke p50 / p99 (Redis) |')
  console.log('|---|---:|---:|---:|---:|---:|')
  const cell = (m) => `${fmt(m.p50, 2)} / ${fmt(m.p99, 2)} ms (${fmt(m.redisUs)} µs)`
  for (const row of rows) console.log(`| ${row.setup} | ${fmt(row.size)} (${fmt(row.size / SESSIONS_PER_USER)}) | ${fmt(row.perSession)} B | ${cell(row.list)} | ${cell(row.rotate)} | ${cell(row.revoke)} |`)
}

const setups = await topologies()
try {
  console.log(`# Scale: revocations and sessions\n\nNode ${process.version}; Redis on this machine's loopback${NICE ? '; instances at the lowest CPU priority' : ''}.`)
  if (PARTS.includes('reload')) await reloadPart(setups)
  if (PARTS.includes('storm')) await stormPart(setups[0])
  if (PARTS.includes('sessions')) await sessionsPart(setups)
} finally {
  for (const setup of setups) await setup.stop()
}
