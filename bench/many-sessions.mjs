// One user with very many sessions, and what that costs everyone else (`npm run bench:many-sessions`).
//
// Seeds MANY_SESSIONS (20,000) sessions for one user through the app's login route (the
// server raises maxSessionsPerUser for the seed), then measures, on the server's own
// private Redis:
// - the Redis time of one session listing and of one logout-all (INFO commandstats: the
//   usec of the scripts that one call ran, measured alone and warm), and the listing's
//   answer size;
// - another user's refresh latency (p50, p99: one client refreshing its own chain for
//   HAMMER_SECONDS), first on a quiet server, then while LISTERS clients list the big
//   user's sessions as fast as they can, and the Redis time per script meanwhile;
// - every Redis command over 1 ms during the run (SLOWLOG), and the slowest, by script.
// Numbers, not pass/fail: printed as Markdown.
import { performance } from 'node:perf_hooks'
import { Redis } from 'ioredis'
import { RedisServer } from '../test/helpers/redis.mjs'
import { percentile } from './lib/figures.mjs'
import { scriptStats } from './lib/redis-stats.mjs'
import { startServer } from './lib/server-process.mjs'

const MANY = Number(process.env.MANY_SESSIONS ?? 20_000)
const LISTERS = Number(process.env.LISTERS ?? 8)
const HAMMER_SECONDS = Number(process.env.HAMMER_SECONDS ?? 5)
const JSON_HEADERS = { 'content-type': 'application/json', 'x-token-transport': 'body' }

async function post (base, path, body, headers = {}) {
  const response = await fetch(base + path, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
}

async function login (base, userId) {
  const response = await post(base, '/auth/login', { userId })
  if (response.status !== 200) throw new Error(`login answered ${response.status}`)
  return response.body
}

/** Runs `operation` alone and returns its scripts' Redis time in ms and the script count. */
async function redisTimeOf (client, operation) {
  const before = await scriptStats(client)
  const result = await operation()
  const after = await scriptStats(client)
  return { ms: (after.usec - before.usec) / 1000, scripts: after.calls - before.calls, result }
}

/** The SHA-1 of each of the plugin's scripts, by name, as `SCRIPT LOAD` would give them (to name SLOWLOG entries). */
async function scriptShas (client) {
  const { createHash } = await import('node:crypto')
  const { readFileSync, readdirSync } = await import('node:fs')
  const dir = new URL('../dist/stores/lua/', import.meta.url)
  const read = (name) => readFileSync(new URL(`${name}.lua`, dir), 'utf8')
  const shas = {}
  for (const file of readdirSync(dir)) {
    const name = file.replace(/\.lua$/, '')
    const source = read(name).replace(/^[ \t]*--@include (\w+)\r?$/gm, (_line, part) => read(part))
    shas[createHash('sha1').update(source).digest('hex')] = name
  }
  await client.ping()
  return shas
}

/** One client refreshing its own token chain for `seconds`, from `start`'s tokens: latencies in ms, sorted. */
async function refreshChain (base, seconds, start) {
  let { refreshToken } = start
  const latencies = []
  const statuses = new Map()
  const end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    const started = performance.now()
    const response = await post(base, '/auth/refresh', { refreshToken })
    latencies.push(performance.now() - started)
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
    if (response.status === 200) refreshToken = response.body.refreshToken
  }
  return { latencies: latencies.sort((a, b) => a - b), statuses }
}

async function hammerListing (base, accessToken, until) {
  const statuses = new Map()
  while (Date.now() < until) {
    const response = await fetch(`${base}/auth/sessions`, { headers: { authorization: `Bearer ${accessToken}` } })
    await response.arrayBuffer()
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
  }
  return statuses
}

function describe (statuses) {
  return [...statuses].map(([status, count]) => `${count}× ${status}`).join(', ')
}

const redis = await RedisServer.start()
const inspect = new Redis(redis.url)
// Every command over 1 ms is kept, with the script it ran (SLOWLOG keeps EVALSHA's first arguments).
await inspect.config('SET', 'slowlog-log-slower-than', '1000')
await inspect.config('SET', 'slowlog-max-len', '10000')
const server = await startServer(redis.url, { env: { BENCH_MAX_SESSIONS: String(MANY + 10) } })
const base = server.url
try {
  const big = `big-user-${Date.now()}`
  const seedStart = Date.now()
  let first
  for (let done = 0; done < MANY; done += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, MANY - done) }, () => login(base, big)))
    first ??= batch[0]
  }
  const newest = await login(base, big)
  const seedSeconds = (Date.now() - seedStart) / 1000

  // Warm: the first call of a script loads it (EVAL), which is not what a listing costs.
  await fetch(`${base}/auth/sessions`, { headers: { authorization: `Bearer ${newest.accessToken}` } })
  await post(base, '/auth/logout-all', { refreshToken: (await login(base, 'warm-up')).refreshToken })
  const listing = await redisTimeOf(inspect, async () => {
    const response = await fetch(`${base}/auth/sessions`, { headers: { authorization: `Bearer ${newest.accessToken}` } })
    const text = await response.text()
    return { status: response.status, bytes: Buffer.byteLength(text), sessions: response.status === 200 ? JSON.parse(text).sessions.length : 0 }
  })

  const quiet = await refreshChain(base, HAMMER_SECONDS, await login(base, 'other-quiet'))
  // Logged in before the hammering starts: only the refreshes are measured under it.
  const other = await login(base, 'other-hammered')
  const until = Date.now() + HAMMER_SECONDS * 1000
  const beforeHammer = await scriptStats(inspect)
  const [hammered, ...listers] = await Promise.all([
    refreshChain(base, HAMMER_SECONDS, other),
    ...Array.from({ length: LISTERS }, () => hammerListing(base, newest.accessToken, until))
  ])
  const afterHammer = await scriptStats(inspect)
  const listStatuses = new Map()
  for (const statuses of listers) for (const [status, count] of statuses) listStatuses.set(status, (listStatuses.get(status) ?? 0) + count)

  const afterSeed = await inspect.call('SLOWLOG', 'GET', '10000')
  const revokeAll = await redisTimeOf(inspect, async () => (await post(base, '/auth/logout-all', { refreshToken: newest.refreshToken })).status)
  const slowlog = await inspect.call('SLOWLOG', 'GET', '10000')
  const overOneMs = slowlog.length
  const slowest = slowlog.reduce((top, entry) => top === undefined || entry[2] > top[2] ? entry : top, undefined)
  const scriptNames = new Map(Object.entries(await scriptShas(inspect)))
  const nameOf = (entry) => entry[3][0].toLowerCase() === 'evalsha' ? `${scriptNames.get(entry[3][1]) ?? 'a script'}` : entry[3][0]

  const ms = (value) => value.toFixed(2)
  console.log(`## One user with ${MANY.toLocaleString('en')} sessions\n`)
  console.log('| measure | value |\n| --- | ---: |')
  console.log(`| seeding (logins through the app) | ${seedSeconds.toFixed(1)} s |`)
  console.log(`| one listing: Redis time (scripts: ${listing.scripts}) | ${ms(listing.ms)} ms |`)
  console.log(`| one listing: status, sessions in the answer, bytes | ${listing.result.status}, ${listing.result.sessions}, ${listing.result.bytes.toLocaleString('en')} |`)
  console.log(`| one logout-all: Redis time (scripts: ${revokeAll.scripts}), status | ${ms(revokeAll.ms)} ms, ${revokeAll.result} |`)
  console.log(`| another user's refresh alone: p50 / p99 (${quiet.latencies.length} refreshes; ${describe(quiet.statuses)}) | ${ms(percentile(quiet.latencies, 0.5))} / ${ms(percentile(quiet.latencies, 0.99))} ms |`)
  console.log(`| the same while ${LISTERS} clients list the big user's sessions: p50 / p99 (${hammered.latencies.length} refreshes; ${describe(hammered.statuses)}) | ${ms(percentile(hammered.latencies, 0.5))} / ${ms(percentile(hammered.latencies, 0.99))} ms |`)
  console.log(`| listings answered meanwhile | ${describe(listStatuses)} |`)
  console.log(`| meanwhile, Redis time per script (listings and refreshes, INFO commandstats) | ${ms((afterHammer.usec - beforeHammer.usec) / 1000 / (afterHammer.calls - beforeHammer.calls))} ms |`)
  console.log(`| Redis commands over 1 ms during the whole run (SLOWLOG) | ${overOneMs}${overOneMs === 0 ? '' : `, the slowest ${ms(slowest[2] / 1000)} ms (${nameOf(slowest)})`} |`)
  if (afterSeed.length !== overOneMs) console.log(`| of which during logout-all | ${overOneMs - afterSeed.length} |`)
  if (first === undefined) throw new Error('nothing was seeded')
} finally {
  await server.stop()
  inspect.disconnect()
  await redis.destroy()
}
