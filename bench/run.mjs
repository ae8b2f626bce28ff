// `npm run bench`: throughput and latency of the plugin's operations next to their
// baselines, measured in the same run, plus Redis round trips and memory per session.
// Numbers, not pass/fail: it prints a Markdown table and writes it to bench/RESULTS.md.
//
// Layout: a private redis-server (never the shared one), the app under test in a child
// process (bench/server.mjs), autocannon in this process, all on loopback. Each pair that
// has a target runs in alternating short rounds in one server process (baseline, then the
// operation, then the other way round, ...) and is judged by the median of the rounds'
// ratios, which a noisy machine moves far less than the ratio of two long runs.
//
// Environment: BENCH_SECONDS (5) per single run, BENCH_ROUNDS (7) and BENCH_ROUND_SECONDS
// (2) for the pairs, BENCH_CONNECTIONS (50), BENCH_PROFILE=1 to write the server's CPU
// profiles to bench/profiles/; across the delayed Redis, BENCH_DELAY_MS (1) each way and
// BENCH_NETWORK_ROUND_SECONDS (5) for the rounds at 1 connection; BENCH_BEFORE, a built
// checkout of an earlier version, to compare the telemetry rows with it too.
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { RedisStore } from '../dist/index.js'
// What the plugin stores of a refresh-token id, so that the sessions measured hold what
// logins write (an internal module of the build, not a public export).
import { usedMemory } from './lib/redis-stats.mjs'
import { percentile } from './lib/figures.mjs'
import { addedRoundTrip, startDelayProxy } from './lib/delay-proxy.mjs'
import { SESSIONS_PER_USER, USER_AGENTS, sessionOf } from './lib/session-shape.mjs'
import { PUBLIC_ORIGIN, SECRET, buildApp, buildJwtBaseline } from './apps.mjs'
import { RedisServer } from '../test/helpers/redis.mjs'
import { startServer } from './lib/server-process.mjs'

const SECONDS = positive('BENCH_SECONDS', 5)
const ROUNDS = positive('BENCH_ROUNDS', 7)
const ROUND_SECONDS = positive('BENCH_ROUND_SECONDS', 2)
const CONNECTIONS = positive('BENCH_CONNECTIONS', 50)
/** A checkout of an earlier version, built: its plugin runs beside this one's telemetry comparisons (bench/apps.mjs). */
const BEFORE = process.env.BENCH_BEFORE !== undefined
/** How long the proxy in front of Redis holds each chunk, each way (ms). */
const DELAY_MS = positive('BENCH_DELAY_MS', 1)
/** The rounds of the refresh trio at 1 connection, across the delay (s). */
const NETWORK_ROUND_SECONDS = positive('BENCH_NETWORK_ROUND_SECONDS', 5)
const WARMUP_SECONDS = 1
/** Sessions created for the memory figure. */
const MEMORY_SESSIONS = 100_000
/** Sessions revoked before authenticate runs, so that its revocation set is not empty. */
const REVOKED_SESSIONS = 1000
/** Sessions whose access tokens the feed up / feed down pair cycles through. */
const LOOKUP_SESSIONS = 5000
/** Users the token pools are spread over. */
const USERS = 10_000
/** Real browsers' user agents, 111 to 122 characters. */
const JSON_HEADERS = { 'content-type': 'application/json' }

function positive (name, fallback) {
  const value = Number(process.env[name] ?? fallback)
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer (got ${process.env[name]})`)
  return value
}

function progress (message) {
  process.stderr.write(`[bench] ${message}\n`)
}

// ---------------------------------------------------------------------------------------
// Load runs

/** CPU time Redis has used so far, in µs. */
async function redisCpu (client) {
  const info = await client.info('cpu')
  return (Number(/used_cpu_user:(\S+)/.exec(info)[1]) + Number(/used_cpu_sys:(\S+)/.exec(info)[1])) * 1e6
}

/**
 * One autocannon run of `seconds` over `connections` (CONNECTIONS unless the side names its
 * own). `side` is `{ name, request }` or `{ name, prepare }`, where
 * `prepare(seconds, connections)` is awaited before the run and returns the request (so a
 * run can be fed a pool of tokens sized to it); a `prepare.record(rps)` it may have is told
 * each measured run's rate. Returns req/s, p99, the latency of every
 * 2xx answer (ms, as measured by autocannon to the microsecond: its own percentiles are
 * whole milliseconds), and the CPU time the server process and Redis spent on the run: on
 * a busy machine throughput wanders, the work done per request much less.
 */
async function run (server, side, seconds, warmUp = false) {
  const connections = side.connections ?? CONNECTIONS
  const request = side.prepare === undefined ? side.request : await side.prepare(seconds, connections)
  const before = { server: await server.cpu(), redis: await redisCpu(inspect) }
  const latencies = []
  const running = autocannon({ url: side.url ?? server.url, connections, duration: seconds, requests: [request] })
  running.on('response', (_client, status, _bytes, ms) => { if (status >= 200 && status < 300) latencies.push(ms) })
  const result = await running
  const after = { server: await server.cpu(), redis: await redisCpu(inspect) }
  // A warm-up (a cold server, first key imports) says little of the rate to come.
  if (!warmUp) side.prepare?.record?.(result.requests.average)
  latencies.sort((x, y) => x - y)
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    /** The median latency, ms. */
    p50: percentile(latencies, 0.5),
    latencies,
    total: result.requests.total,
    serverCpuTotal: after.server.user + after.server.system - before.server.user - before.server.system,
    redisCpuTotal: after.redis - before.redis,
    failures: result.non2xx + result.errors + result.timeouts
  }
}

/** The figures of one or more runs of the same operation: totals over all of them. */
function summary (runs, warm) {
  const total = runs.reduce((sum, r) => sum + r.total, 0)
  const p99s = runs.map((r) => r.p99)
  return {
    // Each run lasts the same time, so the mean of the rates is the total rate.
    rps: runs.reduce((sum, r) => sum + r.rps, 0) / runs.length,
    p99: median(p99s),
    serverCpu: runs.reduce((sum, r) => sum + r.serverCpuTotal, 0) / total,
    redisCpu: runs.reduce((sum, r) => sum + r.redisCpuTotal, 0) / total,
    total,
    /** Requests answered in the warm-up and the measured runs. */
    answered: total + (warm?.total ?? 0),
    failures: runs.reduce((sum, r) => sum + r.failures, 0) + (warm?.failures ?? 0),
    runs: runs.length,
    /** Latency percentiles of every answer of the measured runs, in ms, to the microsecond. */
    latency: latencyOf(runs.flatMap((r) => r.latencies).sort((x, y) => x - y))
  }
}

/** The p50 and p99 of sorted latencies. */
function latencyOf (sorted) {
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) }
}

function median (values) {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

function logFigures (name, figures) {
  progress(`  ${name}: ${integer.format(figures.rps)} req/s, p99 ${figures.p99} ms, CPU/req ${figures.serverCpu.toFixed(0)} µs server + ${figures.redisCpu.toFixed(0)} µs Redis`)
}

/** One operation on its own: a warm-up run, then one measured run of SECONDS. */
async function measure (server, side) {
  const warm = await run(server, side, WARMUP_SECONDS, true)
  const figures = summary([await run(server, side, SECONDS)], warm)
  logFigures(side.name, figures)
  return figures
}

/**
 * Contenders measured in ROUNDS rounds of ROUND_SECONDS each, after a warm-up run of each,
 * in one server process, the order rotating from round to round (a b c, b c a, c a b, ...;
 * for two: a b, b a, ...). The runs of a round are seconds apart and share whatever else
 * the machine was doing, so a ratio within a round is far steadier than the ratio of two
 * long runs minutes apart; rotating the order cancels a drift within the rounds. Returns
 * each side's totals (`figures`, in the order given) and each round's runs (`rounds`, each
 * in the order given).
 */
async function rounds (server, sides, roundSeconds = ROUND_SECONDS) {
  const warm = []
  for (const side of sides) warm.push(await run(server, side, WARMUP_SECONDS, true))
  const perRound = []
  for (let round = 0; round < ROUNDS; round++) {
    const results = new Array(sides.length)
    for (let step = 0; step < sides.length; step++) {
      const which = (round + step) % sides.length
      results[which] = await run(server, sides[which], roundSeconds)
    }
    perRound.push(results)
    progress(`  round ${round + 1}/${ROUNDS}: ${sides.map((side, i) => `${side.name} ${integer.format(results[i].rps)} req/s, p50 ${results[i].p50.toFixed(2)} ms`).join('; ')}`)
  }
  const figures = sides.map((side, i) => summary(perRound.map((results) => results[i]), warm[i]))
  sides.forEach((side, i) => logFigures(side.name, figures[i]))
  return { figures, rounds: perRound }
}

/**
 * A baseline (a) and the operation compared with it (b), measured in {@link rounds}.
 * Returns the totals of each side and the ratio b / a of every round's req/s.
 */
async function pair (server, a, b) {
  return pairOf(await rounds(server, [a, b]), 0, 1)
}

/** Two sides of what {@link rounds} measured, as a {@link pair}: side `b` against side `a`. */
function pairOf ({ figures, rounds: perRound }, a, b) {
  return { a: figures[a], b: figures[b], ratios: perRound.map((results) => results[b].rps / results[a].rps) }
}

/** Registers a user on the example app and logs in: its access token. */
async function exampleLogin (url) {
  const credentials = JSON.stringify({ username: 'bench', password: 'bench password 1' })
  await fetch(`${url}/auth/register`, { method: 'POST', headers: JSON_HEADERS, body: credentials })
  const login = await fetch(`${url}/auth/login`, { method: 'POST', headers: { ...JSON_HEADERS, 'x-token-transport': 'body' }, body: credentials })
  if (login.status !== 200) throw new Error(`example app login: ${login.status} ${await login.text()}`)
  return (await login.json()).accessToken
}

// ---------------------------------------------------------------------------------------
// Token pools: every refresh and logout request presents a token of its own.

let nextUser = 0
function user () {
  return `u${nextUser++ % USERS}`
}

/** How each kind of token pair is minted, in an app instance of this process. */
const issuers = {
  ours: (issuer, userId) => issuer.tokenSessions.issue(userId),
  bound: (issuer, userId) => boundLogin(issuer.app, userId),
  naive: (issuer, userId) => issuer.naiveIssue(userId),
  floor: (issuer, userId) => issuer.floorIssue(userId)
}

/**
 * Mints `count` token pairs in an app instance of this process (same secrets, same
 * Redis), then closes it, so that it is not subscribed to the revocation feed while
 * autocannon runs here. `kind`: 'ours' (`tokenSessions.issue`), 'bound' (a login with a
 * DPoP proof, see {@link boundLogin}), 'naive' or 'floor' (see bench/apps.mjs).
 */
async function mint (redisUrl, kind, count) {
  const issuer = await buildApp(redisUrl)
  try {
    const minted = await batched(count, () => issuers[kind](issuer, user()))
    return minted.map((tokens) => JSON.stringify({ refreshToken: tokens.refreshToken }))
  } finally {
    await issuer.app.close()
  }
}

/**
 * A `prepare` for `run` that feeds each request a token of its own, from a pool sized to
 * the run (see {@link perRequest}). A refresh of a session bound to a DPoP key ('bound')
 * carries a proof of its own too, made once the tokens are minted; its `ceilingRps` is the
 * rate of the unbound refresh.
 */
function pooled (redisUrl, kind, method, path, ceilingRps, exhausted) {
  return perRequest({ method, path, headers: JSON_HEADERS }, async (count) => {
    const bodies = await mint(redisUrl, kind, count)
    return bodies.map((body) => kind === 'bound' ? { body, headers: { dpop: dpopProof(method, path) } } : { body })
  }, ceilingRps, exhausted)
}

/** `count` results of `make()`, made 500 at a time (so many in flight at once would only queue). */
async function batched (count, make) {
  const results = []
  for (let done = 0; done < count; done += 500) {
    results.push(...await Promise.all(Array.from({ length: Math.min(500, count - done) }, make)))
  }
  return results
}

/**
 * A `prepare` for `run` of `GET path` that cycles through `tokens`, one session's each, a
 * different one from request to request: with as many sessions as LOOKUP_SESSIONS, two
 * requests in flight at once almost never carry the same one, so none shares another's
 * store lookup.
 */
function cycling (path, tokens) {
  let next = 0
  return async () => ({
    method: 'GET',
    path,
    setupRequest: (built) => ({ ...built, headers: { ...built.headers, authorization: `Bearer ${tokens[next++ % tokens.length]}` } })
  })
}

/**
 * A `prepare` for `run` that gives each request a part of its own (`{ body?, headers? }`,
 * added to `request`), from a pool `supply(count)` makes just before the run, sized to it.
 * Twice the best rate of this operation measured so far (warm-ups aside: a cold server is
 * slow), or, before any, `ceilingRps` (the bare route's rate, an upper bound on all, or a
 * DPoP-bound operation's unbound twin's), all capped at 1.2 times `ceilingRps`. A run that
 * exhausts its pool replays its last part (a spent token, a proof seen before), and the
 * resulting 4xx mark the run as failed.
 */
function perRequest (request, supply, ceilingRps, exhausted) {
  let bestRps = 0
  const prepare = async (seconds, connections) => {
    const ceiling = ceilingRps * 1.2
    const rate = bestRps > 0 ? Math.min(ceiling, bestRps * 2) : ceiling
    const parts = await supply(Math.ceil(rate * seconds) + connections * 2)
    let next = 0
    const withPart = (built, part) => ({ ...built, ...part, headers: { ...built.headers, ...part.headers } })
    return {
      ...request,
      setupRequest (built) {
        if (next === parts.length) {
          exhausted.count++
          return withPart(built, parts[parts.length - 1])
        }
        return withPart(built, parts[next++])
      }
    }
  }
  prepare.record = (rps) => { bestRps = Math.max(bestRps, rps) }
  return prepare
}

// ---------------------------------------------------------------------------------------
// DPoP (RFC 9449): one client key signs every proof of the run.

/**
 * The P-256 key of every DPoP-bound session and of every proof (ES256). The server imports
 * a proof's key once and keeps it by thumbprint, so one key costs it one import.
 */
const DPOP_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' })
/** Every proof's JWS header, base64url: its type, algorithm and public key. */
const DPOP_HEADER = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: DPOP_KEY.publicKey.export({ format: 'jwk' }) })).toString('base64url')

/**
 * A DPoP proof for `method` and `path` of the bench app (at its `publicOrigin`) with an id
 * of its own, issued now; with `ath` (see {@link accessTokenHash}), for that access token.
 */
function dpopProof (method, path, ath) {
  const claims = { jti: randomBytes(16).toString('base64url'), htm: method, htu: `${PUBLIC_ORIGIN}${path}`, iat: Math.floor(Date.now() / 1000) }
  const signed = `${DPOP_HEADER}.${Buffer.from(JSON.stringify(ath === undefined ? claims : { ...claims, ath })).toString('base64url')}`
  const signature = sign('sha256', Buffer.from(signed), { key: DPOP_KEY.privateKey, dsaEncoding: 'ieee-p1363' })
  return `${signed}.${signature.toString('base64url')}`
}

/** A proof's `ath`: the base64url SHA-256 of the access token it comes with. */
function accessTokenHash (accessToken) {
  return createHash('sha256').update(accessToken).digest('base64url')
}

/**
 * Logs `userId` in through the app's login route, injected, with a DPoP proof and the body
 * transport, as a native client does: the session and its access token are bound to
 * DPOP_KEY (`tokenType: 'DPoP'`). Returns the token response.
 */
async function boundLogin (app, userId) {
  const response = await app.inject({
    method: 'POST',
    url: '/auth/login',
    headers: { 'x-token-transport': 'body', dpop: dpopProof('POST', '/auth/login') },
    payload: { userId }
  })
  const tokens = response.json()
  if (response.statusCode !== 200 || tokens.tokenType !== 'DPoP') throw new Error(`DPoP login: ${response.statusCode} ${response.body}`)
  return tokens
}

/**
 * A `prepare` for `run` of `GET path` with a DPoP-bound access token: each request carries
 * a proof of its own for it (a proof is accepted once), signed just before the run, from a
 * pool sized as {@link perRequest} sizes it to `ceilingRps`, the rate of the same request
 * with a Bearer token.
 */
function proofPooled (path, accessToken, ceilingRps, exhausted) {
  const ath = accessTokenHash(accessToken)
  return perRequest({ method: 'GET', path, headers: { authorization: `DPoP ${accessToken}` } },
    async (count) => Array.from({ length: count }, () => ({ headers: { dpop: dpopProof('GET', path, ath) } })),
    ceilingRps, exhausted)
}

/**
 * Revokes `count` sessions, so that authenticate runs with a revocation set that is not
 * empty. Returns the access token of one of them.
 */
async function revokeSessions (tokenSessions, count) {
  const sessions = await Promise.all(Array.from({ length: count }, (_, i) => tokenSessions.issue(`revoked-${i}`)))
  await Promise.all(sessions.map((tokens, i) => tokenSessions.revokeSession(`revoked-${i}`, tokens.sessionId)))
  return sessions[0].accessToken
}

/** Waits until the server's revocation feed has delivered: the token is refused. */
async function untilRejected (url, accessToken) {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const response = await fetch(`${url}/me`, { headers: { authorization: `Bearer ${accessToken}` } })
    await response.arrayBuffer()
    if (response.status === 401) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('the server did not learn of the revocations within 5 s')
}

// ---------------------------------------------------------------------------------------
// Redis across a network: a proxy that holds every chunk DELAY_MS each way

let loginUser = 0
/** A login run over `connections`, each request for a user of its own (of USERS). */
function loginSide (connections) {
  return {
    name: 'login',
    connections,
    request: {
      method: 'POST',
      path: '/auth/login',
      headers: { ...JSON_HEADERS, 'x-token-transport': 'body', 'user-agent': USER_AGENTS[0] },
      setupRequest: (request) => ({ ...request, body: `{"userId":"login-${loginUser++ % USERS}"}` })
    }
  }
}

/**
 * The server with its Redis behind the delay proxy (its plugin client, its subscriber and
 * the baselines' clients alike; the harness mints tokens straight). At 1 connection (the
 * latency a user feels) and at CONNECTIONS (throughput): the floor, the naive and the
 * plugin's refresh in {@link rounds}, then login and logout in one run each.
 * `bareRps` bounds the token pools at CONNECTIONS; at 1 connection each refresh waits for
 * at least one round trip through the proxy, which bounds its rate.
 */
async function acrossNetwork (bareRps, exhausted) {
  const proxy = await startDelayProxy({ host: '127.0.0.1', port: redis.port }, DELAY_MS)
  const proxied = new Redis(proxy.url)
  try {
    const trip = await addedRoundTrip(inspect, proxied)
    progress(`  PING, median of one at a time: ${trip.directMs.toFixed(3)} ms straight, ${trip.proxiedMs.toFixed(3)} ms through the proxy`)
    const server = await serverFor('network', {}, proxy.url)
    const measured = { trip, refresh: {}, login: {}, logout: {} }
    for (const connections of [1, CONNECTIONS]) {
      progress(`  ${connections} connection${connections === 1 ? '' : 's'}: floor, naive and plugin refresh`)
      const ceiling = connections === 1 ? 1000 / trip.proxiedMs : bareRps
      const refreshOf = (name, kind, path) => ({ name, connections, prepare: pooled(redis.url, kind, 'POST', path, ceiling, exhausted) })
      // One connection answers a few hundred requests a second: its rounds run longer,
      // for p50s of as many answers as a round at 50 connections has.
      measured.refresh[connections] = await rounds(server, [
        refreshOf('floor refresh', 'floor', '/floor/refresh'),
        refreshOf('naive refresh', 'naive', '/naive/refresh'),
        refreshOf('refresh', 'ours', '/auth/refresh')
      ], connections === 1 ? NETWORK_ROUND_SECONDS : ROUND_SECONDS)
      progress(`  ${connections} connection${connections === 1 ? '' : 's'}: login and logout`)
      measured.login[connections] = await measure(server, loginSide(connections))
      measured.logout[connections] = await measure(server, refreshOf('logout', 'ours', '/auth/logout'))
    }
    await server.stop()
    return measured
  } finally {
    proxied.disconnect()
    await proxy.stop()
  }
}

// ---------------------------------------------------------------------------------------
// Redis round trips, counted with MONITOR

/**
 * The commands the server's connections send while `operation` runs (not those scripts
 * run inside Redis), as MONITOR sees them: `{ command, source }`. `sources` are the
 * server's client addresses. A PING from the inspecting client marks the end.
 */
async function roundTrips (inspect, sources, operation) {
  const monitor = await inspect.monitor()
  const seen = []
  let marker = ''
  const done = new Promise((resolve) => {
    monitor.on('monitor', (_time, args, source) => {
      if (String(args[0]).toLowerCase() === 'ping' && args[1] === marker) return resolve()
      // The revocation feed's heartbeat (a script on the heartbeat key) runs whatever the requests.
      if (String(args[3]).endsWith(':heartbeat')) return
      if (sources.has(source)) seen.push({ command: String(args[0]).toLowerCase(), source })
      else if (source !== 'lua') progress(`  (not counted: ${String(args[0]).toLowerCase()} from ${source}, not a server connection)`)
    })
  })
  await operation()
  marker = `end-${Date.now()}`
  await inspect.ping(marker)
  await done
  monitor.disconnect()
  return seen
}

async function post (url, body, headers = {}) {
  const response = await fetch(url, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) })
  if (!response.ok) throw new Error(`POST ${url}: ${response.status} ${await response.text()}`)
  return response.status === 204 ? undefined : await response.json()
}

/** How many times each operation's round trips are counted. */
const TRIP_REPEATS = 3

/**
 * Counts each operation's round trips TRIP_REPEATS times. Returns, per operation, the
 * commands of its most frequent count, and every command seen in any repetition beyond
 * that (with the CLIENT LIST line of the connection that sent it), for the report.
 * `inspect` is this process's own client: the only connection that is not the server's.
 */
async function countRoundTrips (inspect, server) {
  const login = () => post(`${server.url}/auth/login`, { userId: 'trips' }, { 'x-token-transport': 'body', 'user-agent': USER_AGENTS[0] })
  // The first use of each script on the connection sends EVAL, later ones EVALSHA:
  // count the steady state, after one of each (the first use is one round trip too).
  const warm = await login()
  const warmed = await post(`${server.url}/auth/refresh`, { refreshToken: warm.refreshToken })
  await post(`${server.url}/auth/logout`, { refreshToken: warmed.refreshToken })
  // Every other connection is the server's: its plugin client, its subscriber and the
  // naive baseline's client.
  const self = await inspect.client('ID')
  const clients = new Map((await inspect.client('LIST')).trim().split('\n')
    .filter((line) => !line.startsWith(`id=${self} `))
    .map((line) => [/\baddr=(\S+)/.exec(line)[1], line]))
  const sources = new Set(clients.keys())

  const seen = { login: [], refresh: [], authenticate: [], logout: [] }
  for (let i = 0; i < TRIP_REPEATS; i++) {
    let tokens
    seen.login.push(await roundTrips(inspect, sources, async () => { tokens = await login() }))
    seen.refresh.push(await roundTrips(inspect, sources, async () => { tokens = await post(`${server.url}/auth/refresh`, { refreshToken: tokens.refreshToken }) }))
    seen.authenticate.push(await roundTrips(inspect, sources, async () => {
      const response = await fetch(`${server.url}/me`, { headers: { authorization: `Bearer ${tokens.accessToken}` } })
      if (response.status !== 200) throw new Error(`GET /me: ${response.status}`)
    }))
    seen.logout.push(await roundTrips(inspect, sources, () => post(`${server.url}/auth/logout`, { refreshToken: tokens.refreshToken })))
  }
  const counts = {}
  for (const [operation, repetitions] of Object.entries(seen)) {
    const lengths = repetitions.map((commands) => commands.length)
    const usual = repetitions.find((commands) => lengths.filter((n) => n === commands.length).length > TRIP_REPEATS / 2) ?? repetitions[0]
    const strays = repetitions.filter((commands) => commands.length !== usual.length).flat()
      .filter((entry) => !usual.some((u) => u.command === entry.command))
      .map((entry) => `${entry.command} from ${clients.get(entry.source)}`)
    counts[operation] = { commands: usual.map((entry) => entry.command), lengths, strays }
  }
  return counts
}

// ---------------------------------------------------------------------------------------
// Redis memory per session

/**
 * Creates MEMORY_SESSIONS sessions through RedisStore.create, as logins would (a user
 * agent, an IP, the real TTLs), pipelined in batches, on a Redis of their own. Returns
 * the growth of `used_memory` per session, and the `MEMORY USAGE` of each session's hash
 * plus its share of its user's index.
 */
async function memoryPerSession () {
  const server = await RedisServer.start()
  const client = new Redis(server.port, '127.0.0.1', { enableAutoPipelining: true })
  try {
    const store = new RedisStore({ client })
    // Load the script and let the allocator settle before the first reading.
    await store.create(sessionOf('warm-up'))
    await client.flushall()
    const before = await usedMemory(client)

    const users = MEMORY_SESSIONS / SESSIONS_PER_USER
    const created = []
    for (let done = 0; done < MEMORY_SESSIONS; done += 1000) {
      const batch = Array.from({ length: 1000 }, (_, i) => sessionOf(`user-${(done + i) % users}`))
      await Promise.all(batch.map((s) => store.create(s)))
      for (const s of batch) created.push(s)
    }
    const after = await usedMemory(client)
    const first = created[0]
    const encoding = await client.object('ENCODING', store.sessionKey(first.userId, first.sessionId))
    const [, listpackValue] = await client.config('GET', 'hash-max-listpack-value')

    const usage = async (keys) => {
      let total = 0
      for (let i = 0; i < keys.length; i += 1000) {
        const sizes = await Promise.all(keys.slice(i, i + 1000).map((key) => client.memory('USAGE', key, 'SAMPLES', '0')))
        for (const size of sizes) total += size
      }
      return total
    }
    const hashes = await usage(created.map((s) => store.sessionKey(s.userId, s.sessionId)))
    const indexes = await usage(Array.from({ length: users }, (_, i) => store.indexKey(`user-${i}`)))
    return {
      usedMemory: (after - before) / MEMORY_SESSIONS,
      memoryUsage: (hashes + indexes) / MEMORY_SESSIONS,
      hash: hashes / MEMORY_SESSIONS,
      indexShare: indexes / MEMORY_SESSIONS,
      keys: await client.dbsize(),
      encoding,
      listpackValue
    }
  } finally {
    client.disconnect()
    await server.destroy()
  }
}

// ---------------------------------------------------------------------------------------
// Report

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

function row (cells) {
  return `| ${cells.join(' | ')} |`
}

function throughputTable (rows) {
  const lines = [
    row(['operation', 'req/s', 'p99 latency', 'baseline', 'ratio', 'target', 'met?', 'CPU per request: server + Redis']),
    row(['---', '---:', '---:', '---', '---:', '---', '---', '---:'])
  ]
  for (const r of rows) {
    const ratio = r.ratios !== undefined ? median(r.ratios) : r.baseline === undefined ? undefined : r.rps / r.baseline.rps
    const met = r.target === undefined ? '—' : r.failures > 0 ? 'invalid run' : ratio >= r.target ? 'yes' : 'no'
    lines.push(row([
      r.name,
      integer.format(r.rps),
      `${r.p99.toFixed(0)} ms`,
      r.baseline === undefined ? '—' : r.baseline.name,
      ratio === undefined ? '1.00' : ratio.toFixed(2),
      r.target === undefined ? '—' : `≥ ${r.target.toFixed(2)}×`,
      met,
      `${r.serverCpu.toFixed(0)} + ${r.redisCpu.toFixed(0)} µs`
    ]))
  }
  return lines.join('\n')
}

/** Every round of the pairs with a target, and how their ratio of totals compares. */
function roundsTable (paired) {
  const lines = [
    row(['operation / baseline', 'ratio per round', 'median', 'range', 'ratio of totals']),
    row(['---', '---', '---:', '---:', '---:'])
  ]
  for (const r of paired) {
    lines.push(row([
      `${r.name} / ${r.baseline.name}`,
      r.ratios.map((ratio) => ratio.toFixed(2)).join(', '),
      median(r.ratios).toFixed(2),
      `${Math.min(...r.ratios).toFixed(2)}–${Math.max(...r.ratios).toFixed(2)}`,
      (r.rps / r.baseline.rps).toFixed(2)
    ]))
  }
  return lines.join('\n')
}

/** Server CPU per request with the API and no SDK, at most this times its baseline's. */
const NO_SDK_TARGET = 1.02

/**
 * The sides of a telemetry comparison of `operation`, each the plugin under a path
 * (bench/apps.mjs): the baseline first (the earlier version of BENCH_BEFORE when given,
 * else this one with telemetry off), then the API without an SDK, then the metrics SDK.
 */
function telemetrySides (operation, side) {
  const sides = [['telemetry off', '/off'], ['API, no SDK', ''], ['metrics SDK', '/sdk']]
  if (BEFORE) sides.unshift(['the version before', '/before'])
  return sides.map(([kind, path]) => ({ name: `${operation}, ${kind}`, ...side(path) }))
}

/**
 * The telemetry trios (off, no SDK, SDK): each side's server CPU per request and its
 * ratio, round by round, to telemetry off's in the same round.
 */
function telemetryTable (trios) {
  const lines = [
    row(['operation', 'req/s', 'CPU per request: server', `CPU ratio per round, to ${BEFORE ? 'the version before' : 'telemetry off'}`, 'median', 'range', 'target', 'met?']),
    row(['---', '---:', '---:', '---', '---:', '---:', '---', '---'])
  ]
  const perRequest = (result) => result.serverCpuTotal / result.total
  for (const [operation, trio] of Object.entries(trios)) {
    const names = telemetrySides(operation, () => ({})).map((side) => side.name)
    trio.figures.forEach((f, i) => {
      const name = names[i]
      if (i === 0) return lines.push(row([name, integer.format(f.rps), `${f.serverCpu.toFixed(1)} µs`, '—', '1.00', '—', '—', '—']))
      const ratios = trio.rounds.map((results) => perRequest(results[i]) / perRequest(results[0]))
      const target = name.endsWith('API, no SDK') ? NO_SDK_TARGET : undefined
      const met = target === undefined ? '—' : f.failures > 0 ? 'invalid run' : median(ratios) <= target ? 'yes' : 'no'
      lines.push(row([name, integer.format(f.rps), `${f.serverCpu.toFixed(1)} µs`, ratios.map((ratio) => ratio.toFixed(3)).join(', '), median(ratios).toFixed(3),
        `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`, target === undefined ? '—' : `≤ ${target.toFixed(2)}×`, met]))
    })
  }
  return lines.join('\n')
}

/** The target of the plugin's refresh at 1 connection: its p50 at most this times the floor's. */
const FLOOR_TARGET = 1.05

/** Per round of a network trio: the plugin's and the naive refresh's p50 over the floor's, and the naive refresh's over the plugin's. */
function networkRatios (trio) {
  return {
    overFloor: trio.rounds.map(([floor, , ours]) => ours.p50 / floor.p50),
    naiveOverFloor: trio.rounds.map(([floor, naive]) => naive.p50 / floor.p50),
    naiveOver: trio.rounds.map(([, naive, ours]) => naive.p50 / ours.p50)
  }
}

const ms = (value) => `${value.toFixed(2)} ms`

function networkTable (network) {
  const lines = [
    row(['operation', 'connections', 'req/s', 'p50', 'p99', 'p50 / floor\'s p50', 'target', 'met?', 'naive\'s p50 / this p50', 'CPU per request: server + Redis']),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---', '---', '---:', '---:'])
  ]
  const figures = (f) => [integer.format(f.rps), ms(f.latency.p50), ms(f.latency.p99)]
  const cpu = (f) => `${f.serverCpu.toFixed(0)} + ${f.redisCpu.toFixed(0)} µs`
  for (const [connections, trio] of Object.entries(network.refresh)) {
    const [floor, naive, ours] = trio.figures
    const { overFloor, naiveOverFloor, naiveOver } = networkRatios(trio)
    const target = Number(connections) === 1 ? FLOOR_TARGET : undefined
    const failed = floor.failures + naive.failures + ours.failures > 0
    const met = target === undefined ? '—' : failed ? 'invalid run' : median(overFloor) <= target ? 'yes' : 'no'
    lines.push(row(['floor refresh (the plugin\'s crypto, one compare-and-swap script)', connections, ...figures(floor), '1.00', '—', '—', '—', cpu(floor)]))
    lines.push(row(['naive refresh (verify, GET, SET EX, DEL)', connections, ...figures(naive), median(naiveOverFloor).toFixed(2), '—', '—', '1.00', cpu(naive)]))
    lines.push(row(['refresh (rotation, one Lua script)', connections, ...figures(ours), median(overFloor).toFixed(2), target === undefined ? '—' : `≤ ${target.toFixed(2)}×`, met, `${median(naiveOver).toFixed(2)}×`, cpu(ours)]))
  }
  for (const [name, runs] of [['login (reply.issueTokens, body transport)', network.login], ['logout (refresh token in body)', network.logout]]) {
    for (const [connections, f] of Object.entries(runs)) lines.push(row([name, connections, ...figures(f), '—', '—', '—', '—', cpu(f)]))
  }
  return lines.join('\n')
}

/** Every round's p50 ratios of the network trios. */
function networkRoundsTable (network) {
  const lines = [
    row(['ratio of p50s', 'connections', 'per round', 'median', 'range']),
    row(['---', '---:', '---', '---:', '---:'])
  ]
  for (const [connections, trio] of Object.entries(network.refresh)) {
    const { overFloor, naiveOver } = networkRatios(trio)
    for (const [name, ratios] of [['refresh / floor refresh', overFloor], ['naive refresh / refresh', naiveOver]]) {
      lines.push(row([name, connections, ratios.map((r) => r.toFixed(3)).join(', '), median(ratios).toFixed(3),
        `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`]))
    }
  }
  return lines.join('\n')
}

function redisTable (trips, memory) {
  const lines = [row(['measure', 'value', 'target', 'met?']), row(['---', '---:', '---', '---'])]
  for (const [operation, target] of [['login', 1], ['refresh', 1], ['logout', 1], ['authenticate', 0]]) {
    const { commands, lengths } = trips[operation]
    const value = commands.length === 0 ? '0' : `${commands.length} (${commands.join(', ')})`
    const each = lengths.every((n) => n === commands.length) ? '' : `; per repetition ${lengths.join(', ')}`
    lines.push(row([`Redis round trips: ${operation}`, value + each, `= ${target}`, commands.length === target ? 'yes' : 'no']))
  }
  lines.push(row([`memory per session: INFO used_memory growth / ${integer.format(MEMORY_SESSIONS)}`, `${memory.usedMemory.toFixed(0)} B`, '≤ 512 B', memory.usedMemory <= 512 ? 'yes' : 'no']))
  lines.push(row([
    'memory per session: MEMORY USAGE, hash + index share',
    `${memory.memoryUsage.toFixed(0)} B (${memory.hash.toFixed(0)} + ${memory.indexShare.toFixed(0)})`,
    '≤ 512 B',
    memory.memoryUsage <= 512 ? 'yes' : 'no'
  ]))
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------

const started = Date.now()
const date = new Date()
const redis = await RedisServer.start()
/** Reads Redis's CPU time, and the version. */
const inspect = redis.client()
const servers = []
async function serverFor (name, env = {}, redisUrl = redis.url) {
  const server = await startServer(redisUrl, { name, env })
  servers.push(server)
  return server
}

try {
  const redisVersion = /redis_version:(\S+)/.exec(await inspect.info('server'))[1]
  const cpus = os.cpus()
  const machine = `${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, Node ${process.version}, Redis ${redisVersion}, ${os.platform()} ${os.release()}`
  // Other work on the machine skews every figure: say how busy it was.
  const load = os.loadavg()[0].toFixed(2)
  progress(machine)

  progress('Redis round trips (MONITOR)')
  let server = await serverFor('round-trips')
  const trips = await countRoundTrips(inspect, server)
  await server.stop()

  progress('bare route')
  server = await serverFor('bare')
  const bare = { name: 'bare route', ...await measure(server, { name: 'bare route', request: { method: 'GET', path: '/bare' } }) }
  await server.stop()

  progress('@fastify/jwt verify alone, a verifier alone and authenticate')
  server = await serverFor('authenticate')
  /** How often a pool of tokens or DPoP proofs ran out (see perRequest). */
  const exhausted = { count: 0 }
  const issuer = await buildApp(redis.url)
  const jwtToken = issuer.jwtSign({ sub: 'u1', sid: randomBytes(16).toString('base64url') })
  const ourToken = (await issuer.tokenSessions.issue('u1')).accessToken
  const boundToken = (await boundLogin(issuer.app, 'u1')).accessToken
  const revokedToken = await revokeSessions(issuer.tokenSessions, REVOKED_SESSIONS)
  const manySessions = (await batched(LOOKUP_SESSIONS, () => issuer.tokenSessions.issue(user()))).map((issued) => issued.accessToken)
  await issuer.app.close()
  await untilRejected(server.url, revokedToken)
  const bearerRequest = { method: 'GET', path: '/me', headers: { authorization: `Bearer ${ourToken}` } }
  const jwtBearer = { authorization: `Bearer ${jwtToken}` }
  // Beside them, the ceiling of any authenticate: fast-jwt's verifier called directly on
  // @fastify/jwt's token, nothing else (bench/apps.mjs, GET /verifier/me).
  const authTrio = await rounds(server, [
    { name: '@fastify/jwt verify alone', request: { method: 'GET', path: '/jwt/me', headers: jwtBearer } },
    { name: 'verifier alone', request: { method: 'GET', path: '/verifier/me', headers: jwtBearer } },
    { name: 'authenticate', request: bearerRequest }
  ])
  const authPair = pairOf(authTrio, 0, 2)
  const ceilingPair = pairOf(authTrio, 0, 1)

  progress('authenticate with telemetry off, with the OpenTelemetry API and no SDK, and with the metrics SDK, in the same server')
  const telemetryAuth = await rounds(server, telemetrySides('authenticate', (path) => ({ request: { ...bearerRequest, path: `${path}/me` } })))

  progress('authenticate with the feed up vs down (check-store: one Redis lookup per request), in the same server')
  const feedDownPair = await pair(server,
    { name: 'authenticate, feed up', prepare: cycling('/me', manySessions) },
    { name: 'authenticate, feed down', prepare: cycling('/feed-down/me', manySessions) })

  progress('authenticate, Bearer vs DPoP-bound (a proof of its own per request), in the same server')
  const dpopAuthPair = await pair(server,
    { name: 'authenticate, Bearer', request: bearerRequest },
    { name: 'authenticate, DPoP-bound', prepare: proofPooled('/me', boundToken, authPair.b.rps, exhausted) })
  await server.stop()

  progress('@fastify/jwt verify alone vs GET /me through the example app (as docker-compose.yml runs it)')
  server = await serverFor('example', { BENCH_APP: 'example', JWT_SECRET: SECRET, LOG_LEVEL: 'info', KEY_PREFIX: 'bench-example:' })
  const exampleToken = await exampleLogin(server.url)
  const exampleSigner = await buildJwtBaseline()
  const exampleJwt = exampleSigner.jwtSign({ sub: 'u1', sid: randomBytes(16).toString('base64url') })
  await exampleSigner.app.close()
  const examplePair = await pair(server,
    { name: '@fastify/jwt verify alone (beside the example)', url: server.secondUrl, request: { method: 'GET', path: '/jwt/me', headers: { authorization: `Bearer ${exampleJwt}` } } },
    { name: 'example app GET /me', request: { method: 'GET', path: '/me', headers: { authorization: `Bearer ${exampleToken}` } } })
  await server.stop()

  progress('naive refresh vs refresh (a token of its own per request)')
  server = await serverFor('refresh')
  const refreshPair = await pair(server,
    { name: 'naive refresh', prepare: pooled(redis.url, 'naive', 'POST', '/naive/refresh', bare.rps, exhausted) },
    { name: 'refresh', prepare: pooled(redis.url, 'ours', 'POST', '/auth/refresh', bare.rps, exhausted) })

  progress('refresh, unbound vs DPoP-bound (a token and a proof of its own per request), in the same server')
  const dpopRefreshPair = await pair(server,
    { name: 'refresh, unbound', prepare: pooled(redis.url, 'ours', 'POST', '/auth/refresh', bare.rps, exhausted) },
    { name: 'refresh, DPoP-bound', prepare: pooled(redis.url, 'bound', 'POST', '/auth/refresh', refreshPair.b.rps, exhausted) })

  progress('refresh with telemetry off, with the OpenTelemetry API and no SDK, and with the metrics SDK, in the same server')
  const telemetryRefresh = await rounds(server, telemetrySides('refresh', (path) => ({ prepare: pooled(redis.url, 'ours', 'POST', `${path}/auth/refresh`, bare.rps, exhausted) })))
  await server.stop()

  progress('login and logout')
  server = await serverFor('login-logout')
  const login = { name: 'login (reply.issueTokens, body transport)', ...await measure(server, loginSide(CONNECTIONS)) }
  const logout = {
    name: 'logout (refresh token in body)',
    ...await measure(server, { name: 'logout', prepare: pooled(redis.url, 'ours', 'POST', '/auth/logout', bare.rps, exhausted) })
  }
  await server.stop()

  progress(`Redis across a network: ${DELAY_MS} ms each way through a proxy`)
  const network = await acrossNetwork(bare.rps, exhausted)

  progress(`Redis memory: ${integer.format(MEMORY_SESSIONS)} sessions`)
  const memory = await memoryPerSession()

  /** A pair's row: its operation (`b`) named `name`, against its baseline (`a`) named `baselineName`. */
  const pairRow = (measured, name, baselineName, target) =>
    ({ ...measured.b, name, baseline: { ...measured.a, name: baselineName }, target, ratios: measured.ratios })
  const authenticate = pairRow(authPair, 'authenticate (with revocation set)', '@fastify/jwt verify alone', 1.1)
  const ceiling = pairRow(ceilingPair, 'verifier alone (fast-jwt, called directly; no checks)', '@fastify/jwt verify alone', undefined)
  // No target on loopback, where the round trips the rotation saves cost almost nothing:
  // its target is judged across a network, against the floor (networkTable).
  const refresh = pairRow(refreshPair, 'refresh (rotation, one Lua script)', 'naive refresh', undefined)
  const jwt = authenticate.baseline
  const naive = refresh.baseline
  // The DPoP pairs' baselines are the operations above, measured again beside them.
  const dpopAuthenticate = pairRow(dpopAuthPair, 'authenticate, DPoP-bound (proof per request)', 'authenticate (with revocation set), in the DPoP pair', 0.35)
  const dpopRefresh = pairRow(dpopRefreshPair, 'refresh, DPoP-bound (proof per request)', 'refresh (rotation, one Lua script), in the DPoP pair', 0.5)
  const feedDown = pairRow(feedDownPair, 'authenticate, feed down (check-store: a Redis lookup per request)', 'authenticate (with revocation set), feed up, in its pair (the same sessions)', undefined)
  const example = pairRow(examplePair, 'example app GET /me (helmet, info logs)', '@fastify/jwt verify alone (its own server)', 0.6)
  const paired = [ceiling, authenticate, feedDown, dpopAuthenticate, refresh, dpopRefresh, example]
  const rows = [
    bare,
    { ...jwt, baseline: bare },
    ceiling,
    authenticate,
    { ...feedDown.baseline, baseline: bare },
    feedDown,
    { ...dpopAuthenticate.baseline, baseline: bare },
    dpopAuthenticate,
    { ...naive, name: 'naive refresh (verify, GET, SET EX, DEL)', baseline: bare },
    refresh,
    { ...dpopRefresh.baseline, baseline: bare },
    dpopRefresh,
    { ...login, baseline: bare },
    { ...logout, baseline: bare },
    example.baseline,
    example
  ]
  const networkRows = [
    ...Object.entries(network.refresh).flatMap(([connections, trio]) => trio.figures.map((f, i) => ({ ...f, name: `${['floor refresh', 'naive refresh', 'refresh'][i]} across the network, ${connections} connection(s)` }))),
    ...Object.entries(network.login).map(([connections, f]) => ({ ...f, name: `login across the network, ${connections} connection(s)` })),
    ...Object.entries(network.logout).map(([connections, f]) => ({ ...f, name: `logout across the network, ${connections} connection(s)` }))
  ]
  const telemetryRows = [telemetryAuth, telemetryRefresh].flatMap((trio) => trio.figures.map((f, i) => ({ ...f, name: `side ${i + 1} of a telemetry comparison` })))
  const failed = [...rows, ...networkRows, ...telemetryRows].filter((r) => r.failures > 0)
  const notes = [
    `- ${date.toISOString()}; ${machine}; load average ${load} when the run began.`,
    `- autocannon, ${CONNECTIONS} connections, on loopback (operations without a target: one run of ${SECONDS} s after a ${WARMUP_SECONDS} s warm-up); the server in its own process (bench/server.mjs), autocannon and redis-server sharing the same ${cpus.length} cores. ` +
      (cpus.length <= 2 ? 'On 2 cores the three compete for CPU, and any other load on the machine moves req/s by tens of percent between runs. ' : '') +
      `Each pair ran in one server process: a ${WARMUP_SECONDS} s warm-up of each, then ${ROUNDS} rounds of ${ROUND_SECONDS} s each, baseline and operation back to back, the order alternating from round to round; ` +
      'its ratio is the median of the rounds\' ratios (each round\'s two runs share whatever else the machine was doing then), and its req/s, CPU and the ratio of totals cover all the rounds (p99: the median round\'s). ' +
      'CPU per request is the server process\'s and redis-server\'s CPU time (user + system) over the requests answered in the measured runs: steadier than req/s on a busy machine.',
    '- Every refresh and logout presented a token of its own (pre-issued sessions), so every refresh really rotated.',
    `- Across a network: the server's Redis connections (the plugin's client and subscriber, the baselines' clients) went through a TCP proxy in a process of its own (bench/lib/delay-proxy.mjs) that holds every chunk ${DELAY_MS} ms in each direction; ` +
      `a PING, one at a time, took ${ms(network.trip.directMs)} straight and ${ms(network.trip.proxiedMs)} through it (medians of 300). ` +
      'The floor refresh (bench/apps.mjs) does exactly the plugin\'s crypto, with its token code and the keys it derives from the same secret (verify the refresh token, the successor\'s id, both ids\' hashes, sign an access and a refresh token with the same claims), and one compare-and-swap script, nothing else. ' +
      `Floor, naive and plugin refresh ran in ${ROUNDS} rounds, the order rotating from round to round, at 1 connection (rounds of ${NETWORK_ROUND_SECONDS} s) and at ${CONNECTIONS} (${ROUND_SECONDS} s); each ratio is the median of the rounds' ratios of p50s. ` +
      'Latencies are autocannon\'s per answer, to the microsecond, over every measured run (its own percentiles are whole milliseconds); login and logout: one run each.',
    '- DPoP pairs (RFC 9449), HS256 access and refresh tokens on both sides (the plugin\'s `secret`): one P-256 key (ES256) for every bound session and every proof, so the server imported it once (it keeps imported keys by thumbprint). ' +
      'Each ran in the server process of the pair above it in the table, right after that pair: the Bearer authenticate with the same revocation set, the unbound refresh with sessions minted as before. ' +
      'Every DPoP-bound refresh presented a token of its own, of a session bound at login (pre-issued through the app\'s login route with a proof and the body transport, injected into an app instance of the harness), and a proof of its own; ' +
      'every DPoP-bound authenticate presented the same bound access token (`Authorization: DPoP`) with a proof of its own (a unique `jti`, and `ath`, the token\'s hash), each remembered by the server against replay. ' +
      `The harness signed each run's proofs just before the run, not during it, so their \`iat\` was within the default proof lifetime (60 s) when used; their \`htu\` names the bench app's \`publicOrigin\` (${PUBLIC_ORIGIN}), so that they are made without knowing a server's port.`,
    `- Memory: ${integer.format(MEMORY_SESSIONS)} sessions over ${integer.format(MEMORY_SESSIONS / SESSIONS_PER_USER)} users via RedisStore.create, each with a user agent of ${Math.min(...USER_AGENTS.map((ua) => ua.length))} to ${Math.max(...USER_AGENTS.map((ua) => ua.length))} characters and an IP; ` +
      `${integer.format(memory.keys)} keys. MEMORY USAGE leaves out the main and expires dictionaries' entries, which used_memory includes. ` +
      `A session hash is encoded as \`${memory.encoding}\`` +
      (memory.encoding === 'listpack' ? '.' : ` (Redis keeps a hash as a compact listpack only while every value is at most hash-max-listpack-value = ${memory.listpackValue} bytes).`),
    '- Round trips: commands the server\'s Redis connections sent during one operation, as MONITOR shows them (it hides admin commands such as CONFIG), ' +
      `counted ${TRIP_REPEATS} times each after a warm-up; the most frequent count is shown.` +
      Object.entries(trips).flatMap(([operation, { strays }]) => strays.map((stray) => ` Also seen once during ${operation}: ${stray}.`)).join(''),
    '- The example app ran as docker-compose.yml runs it (NODE_ENV=production, LOG_LEVEL=info, its security headers), its log written to /dev/null; ' +
      'its `@fastify/jwt` baseline is a bare Fastify app with that route alone, in the same process on a port of its own.',
    '- Verifier alone: the fast-jwt verifier that @fastify/jwt wraps, made once with the baseline\'s key and called directly in a synchronous onRequest hook on the baseline\'s token, its payload answered as the baseline answers it: no checks, no options merged per call, no promise. It ran in the same rounds as @fastify/jwt verify alone and authenticate (the order rotating), as the ceiling of any authenticate on the machine.',
    `- authenticate ran with ${integer.format(REVOKED_SESSIONS)} revoked sessions in the server's revocation set; ` +
      `logout ran in a server whose set started empty and grew by one session per logout, to ${integer.format(logout.answered)}.`,
    '- OpenTelemetry: authenticate and refresh ran three ways in the same rounds (the order rotating; four with BENCH_BEFORE), each a registration of the plugin in the same server on the same Redis keys: `telemetry: false`; the default with `@opentelemetry/api` installed and no SDK (the main registration, as an app that installs the plugin\'s optional peer and nothing else); and a meter provider of the SDK recording every metric, its reader collecting every 10 s. No request was traced (no span active), so no store call made a span. ' +
      (BEFORE ? `Beside them, the version before (BENCH_BEFORE: ${process.env.BENCH_BEFORE}), registered the same way in the same server. ` : '') +
      `The ratio is of server CPU per request, round by round, against ${BEFORE ? 'the version before' : 'telemetry off'}.`,
    `- Feed up vs feed down: both sides cycled through the access tokens of the same ${integer.format(LOOKUP_SESSIONS)} live sessions, a different session from request to request, so that no two requests in flight shared a store lookup (the instance's feed-down plugin keeps no memory of sessions found live: \`revocationFeed.knownAlive\` is 0 by default). The feed-down side is a second registration of the plugin in the same server, on the same Redis keys, whose revocation feed never connects.`,
    failed.length === 0
      ? '- Every request answered 2xx.'
      : `- **Failed requests** (non-2xx, errors or timeouts): ${failed.map((r) => `${r.name}: ${r.failures}`).join('; ')}` +
        (exhausted.count > 0 ? `; a pool of tokens or proofs ran out ${exhausted.count} times` : '') + '.'
  ]
  const report = [
    `## fastify-token-sessions benchmark, ${date.toISOString().slice(0, 10)}`,
    '',
    throughputTable(rows),
    '',
    roundsTable(paired),
    '',
    '### OpenTelemetry: what the metrics cost',
    '',
    telemetryTable({ authenticate: telemetryAuth, refresh: telemetryRefresh }),
    '',
    `### Redis across a network: ${DELAY_MS} ms each way through a proxy, ${ms(network.trip.addedMs)} added per round trip`,
    '',
    networkTable(network),
    '',
    networkRoundsTable(network),
    '',
    redisTable(trips, memory),
    '',
    ...notes,
    ''
  ].join('\n')
  process.stdout.write('\n' + report)
  writeFileSync(new URL('RESULTS.md', import.meta.url), '# Benchmark results\n\nWritten by `npm run bench` (bench/run.mjs); each run replaces it.\n\n' + report)
  progress(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; written to bench/RESULTS.md`)
} finally {
  for (const server of servers) await server.stop()
  await inspect.quit()
  await redis.destroy()
}
