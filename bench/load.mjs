// `npm run test:load`: a load and soak test (not part of `npm test`). Simulated users log
// in, call a protected route, refresh and log out against the app (bench/server.mjs, in a
// process of its own) on a private redis-server, on loopback. It fails (exit code 1) on
// any 5xx or unexpected answer, on any lost or leaked session, and when the server's
// memory grows after warm-up: the median of the last third of the run's samples against
// the middle third's, for both heapUsed (after a full GC) and RSS.
//
// Environment: LOAD_SECONDS (30; at most 60), LOAD_USERS (100), LOAD_MEMORY_GROWTH
// (0.15, the largest allowed growth).
import http from 'node:http'
import { RedisServer } from '../test/helpers/redis.mjs'
import { percentile } from './lib/figures.mjs'
import { startServer } from './lib/server-process.mjs'

const SECONDS = bounded('LOAD_SECONDS', 30, 3, 60)
const USERS = bounded('LOAD_USERS', 100, 1, 1000)
const MAX_GROWTH = Number(process.env.LOAD_MEMORY_GROWTH ?? 0.15)
if (!(MAX_GROWTH >= 0 && MAX_GROWTH < 10)) throw new Error(`LOAD_MEMORY_GROWTH must be a fraction such as 0.15 (got ${process.env.LOAD_MEMORY_GROWTH})`)
/**
 * How often the server's memory is sampled, each time after a full garbage collection
 * (a few milliseconds on a heap this size), so that a short run compares retained memory.
 */
const SAMPLE_EVERY_MS = 500
/** A user keeps at most this many sessions (devices); a login beyond it logs one out first. */
const MAX_SESSIONS_PER_USER = 3
const USER_AGENT = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'

function bounded (name, fallback, min, max) {
  const value = Number(process.env[name] ?? fallback)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max} (got ${process.env[name]})`)
  }
  return value
}

// ---------------------------------------------------------------------------------------
// HTTP, with one keep-alive connection per simulated user at most

const agent = new http.Agent({ keepAlive: true, maxSockets: USERS })
let baseUrl = ''

/** Resolves to { status, body } (body parsed when JSON); rejects on a network error. */
function call (method, path, { body, token } = {}) {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers = { 'user-agent': USER_AGENT }
  if (payload !== undefined) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = Buffer.byteLength(payload)
  }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  if (path === '/auth/login') headers['x-token-transport'] = 'body'
  return new Promise((resolve, reject) => {
    const request = http.request(`${baseUrl}${path}`, { method, headers, agent, timeout: 10_000 }, (response) => {
      const chunks = []
      response.on('data', (chunk) => chunks.push(chunk))
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed = text
        if ((response.headers['content-type'] ?? '').startsWith('application/json')) parsed = JSON.parse(text)
        resolve({ status: response.statusCode, body: parsed })
      })
      response.on('error', reject)
    })
    request.on('timeout', () => request.destroy(new Error(`${method} ${path} timed out`)))
    request.on('error', reject)
    request.end(payload)
  })
}

// ---------------------------------------------------------------------------------------
// Bookkeeping

const stats = new Map()
const failures = []
let serverErrors = 0

function record (operation, status, ms) {
  let entry = stats.get(operation)
  if (entry === undefined) stats.set(operation, entry = { count: 0, statuses: new Map(), latencies: [] })
  entry.count++
  entry.statuses.set(status, (entry.statuses.get(status) ?? 0) + 1)
  entry.latencies.push(ms)
  if (typeof status === 'number' && status >= 500) serverErrors++
}

function fail (message) {
  if (failures.length < 20) failures.push(message)
  else if (failures.length === 20) failures.push('... (more failures not listed)')
}

/** Runs one request, records it, and checks its status. Resolves to the body, or undefined on failure. */
async function expect (operation, expected, method, path, options) {
  const started = performance.now()
  let response
  try {
    response = await call(method, path, options)
  } catch (error) {
    record(operation, 'network error', performance.now() - started)
    fail(`${operation}: ${error.message}`)
    return undefined
  }
  record(operation, response.status, performance.now() - started)
  if (response.status !== expected) {
    fail(`${operation}: expected ${expected}, got ${response.status} ${JSON.stringify(response.body)}`)
    return undefined
  }
  return response.body
}

// ---------------------------------------------------------------------------------------
// A simulated user: sessions on up to three devices

async function login (userId, sessions) {
  const tokens = await expect('login', 200, 'POST', '/auth/login', { body: { userId } })
  if (tokens !== undefined) sessions.push({ accessToken: tokens.accessToken, refreshToken: tokens.refreshToken })
}

async function logout (sessions, index) {
  const [session] = sessions.splice(index, 1)
  const done = await expect('logout', 204, 'POST', '/auth/logout', { body: { refreshToken: session.refreshToken } })
  // The logged-out session's access token must stop working at once.
  if (done !== undefined) await expect('/me after logout', 401, 'GET', '/me', { token: session.accessToken })
}

async function simulate (userId, deadline, live) {
  const sessions = []
  live.set(userId, sessions)
  while (Date.now() < deadline) {
    const pick = Math.random()
    const index = Math.floor(Math.random() * sessions.length)
    if (sessions.length === 0 || (pick >= 0.85 && pick < 0.93)) {
      if (sessions.length >= MAX_SESSIONS_PER_USER) await logout(sessions, 0)
      await login(userId, sessions)
    } else if (pick < 0.6) {
      await expect('/me', 200, 'GET', '/me', { token: sessions[index].accessToken })
    } else if (pick < 0.85) {
      const session = sessions[index]
      const tokens = await expect('refresh', 200, 'POST', '/auth/refresh', { body: { refreshToken: session.refreshToken } })
      if (tokens === undefined) sessions.splice(index, 1)
      else Object.assign(session, { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken })
    } else {
      await logout(sessions, index)
    }
  }
}

// ---------------------------------------------------------------------------------------
// Figures

function median (values) {
  return percentile([...values].sort((a, b) => a - b), 0.5)
}

const MB = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

/** Splits the samples taken during the load into thirds by time and compares the medians. */
function memoryGrowth (samples, from, to) {
  const third = (to - from) / 3
  const middle = samples.filter((s) => s.at >= from + third && s.at < from + 2 * third)
  const last = samples.filter((s) => s.at >= from + 2 * third && s.at <= to)
  const figures = {}
  for (const key of ['heapUsed', 'rss']) {
    const before = median(middle.map((s) => s[key]))
    const after = median(last.map((s) => s[key]))
    figures[key] = { before, after, growth: after / before - 1 }
  }
  return { ...figures, samples: { middle: middle.length, last: last.length } }
}

// ---------------------------------------------------------------------------------------

const redis = await RedisServer.start()
const inspect = redis.client()
let server
try {
  server = await startServer(redis.url, { name: 'load', execArgv: ['--expose-gc'] })
  baseUrl = server.url
  console.log(`load test: ${USERS} users for ${SECONDS} s against ${baseUrl} (Redis on port ${redis.port})`)

  server.sample(SAMPLE_EVERY_MS, true)
  const from = Date.now()
  const deadline = from + SECONDS * 1000
  const live = new Map()
  await Promise.all(Array.from({ length: USERS }, (_, i) => simulate(`load-user-${i}`, deadline, live)))
  const to = Date.now()
  const memory = memoryGrowth(server.samples, from, deadline)

  // Every session not logged out must still refresh, and nothing else may remain.
  const remaining = [...live.values()].flat()
  const sessionKeys = (await inspect.keys('tsess:*:s:*')).length
  let refreshed = 0
  for (let i = 0; i < remaining.length; i += 50) {
    const answers = await Promise.all(remaining.slice(i, i + 50).map((session) =>
      expect('final refresh', 200, 'POST', '/auth/refresh', { body: { refreshToken: session.refreshToken } })))
    refreshed += answers.filter((answer) => answer !== undefined).length
  }
  if (sessionKeys !== remaining.length) fail(`Redis holds ${sessionKeys} sessions, the users ${remaining.length}`)

  // Report
  const elapsed = (to - from) / 1000
  let total = 0
  console.log('\n| operation | requests | req/s | p50 | p99 | statuses |')
  console.log('| --- | ---: | ---: | ---: | ---: | --- |')
  for (const [operation, entry] of stats) {
    if (operation !== 'final refresh') total += entry.count
    const sorted = entry.latencies.sort((a, b) => a - b)
    const statuses = [...entry.statuses].map(([status, count]) => `${status}: ${count}`).join(', ')
    const rate = operation === 'final refresh' ? '—' : (entry.count / elapsed).toFixed(0)
    console.log(`| ${operation} | ${entry.count} | ${rate} | ${percentile(sorted, 0.5).toFixed(1)} ms | ${percentile(sorted, 0.99).toFixed(1)} ms | ${statuses} |`)
  }
  console.log(`\n${total} requests in ${elapsed.toFixed(1)} s (${(total / elapsed).toFixed(0)} req/s), ${serverErrors} answers 5xx`)
  console.log(`sessions left live: ${remaining.length}; refreshed at the end: ${refreshed}; session hashes in Redis: ${sessionKeys}`)
  console.log(`server memory after a full GC, median of the middle third vs the last third (${memory.samples.middle} and ${memory.samples.last} samples):`)
  for (const key of ['heapUsed', 'rss']) {
    const { before, after, growth } = memory[key]
    const verdict = growth > MAX_GROWTH ? `FAIL (over +${(MAX_GROWTH * 100).toFixed(0)} %)` : 'ok'
    console.log(`  ${key.padEnd(8)} ${MB(before)} -> ${MB(after)} (${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)} %) ${verdict}`)
    if (!(growth <= MAX_GROWTH)) fail(`server ${key} grew ${(growth * 100).toFixed(1)} % after warm-up`)
  }
  if (serverErrors > 0) fail(`${serverErrors} answers 5xx`)
  if (refreshed !== remaining.length) fail(`${remaining.length - refreshed} sessions lost`)
  if (memory.samples.middle === 0 || memory.samples.last === 0) fail('no memory samples')

  if (failures.length > 0) {
    console.log(`\nFAILED:\n  ${failures.join('\n  ')}`)
    process.exitCode = 1
  } else {
    console.log('\nPASSED: no 5xx, no unexpected answer, no lost or leaked session, memory flat after warm-up')
  }
} finally {
  agent.destroy()
  await inspect.quit()
  await server?.stop()
  await redis.destroy()
}
