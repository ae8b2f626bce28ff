import t from 'tap'
import type { Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemoryStore } from 'fastify-token-sessions'
import { loadConfig } from '../example-app/src/config.js'
import { PASSWORD, appStarter, assertError, call, callFrom, loginNative, refreshNative, register, type Call } from './helpers/example-app.js'
import { freePort, startRedis } from './helpers/redis.mjs'

// The example app's rate limits on login, registration, refresh and the routes that end sessions.
const redis = await startRedis(t)
const startApp = appStarter(redis)

/** A 429 in the app's error shape, with the limiter's headers. */
function assertLimited (t: Test, response: Call, limit: number, label: string): void {
  assertError(t, response, 429, 'RATE_LIMITED', label)
  t.equal(response.body.message, 'Too many requests; retry later', `${label}: a fixed message`)
  const retryAfter = Number(response.headers.get('retry-after'))
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${label}: Retry-After in seconds within the minute (${String(response.headers.get('retry-after'))})`)
  t.equal(response.headers.get('x-ratelimit-limit'), String(limit), `${label}: the limit is announced`)
  t.equal(response.headers.get('x-ratelimit-remaining'), '0', `${label}: nothing remains`)
}

/** A 429 of the refresh route's own limit: the app's error shape and Retry-After, no counter headers. */
function assertLimitedHere (t: Test, response: Call, label: string): void {
  assertError(t, response, 429, 'RATE_LIMITED', label)
  const retryAfter = Number(response.headers.get('retry-after'))
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `${label}: Retry-After in seconds within the minute (${String(response.headers.get('retry-after'))})`)
}

/** An OAuth form (RFC 6749 §6, RFC 7009) posted to one of the plugin's routes for native clients. */
async function form (base: string, path: string, fields: Record<string, string>): Promise<Call> {
  return await call(base, 'POST', path, { body: new URLSearchParams(fields).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } })
}

/** The commands clients sent Redis (not those of scripts) while `operation` ran. */
async function clientCommands (operation: () => Promise<unknown>): Promise<string[]> {
  // Connected before MONITOR starts, so that its own handshake is not seen.
  const marker = redis.client()
  await marker.ping()
  const watcher = redis.client()
  const monitor = await watcher.monitor()
  const seen: string[] = []
  // Not the revocation feed's heartbeat (a script on the heartbeat key, twice a second).
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (!source.startsWith('lua') && !String(args[3]).endsWith(':heartbeat')) seen.push(String(args[0]).toLowerCase())
  })
  await operation()
  // MONITOR's feed runs behind the commands themselves: our PING marks its end.
  await marker.ping()
  await new Promise((resolve) => setTimeout(resolve, 100))
  monitor.disconnect()
  watcher.disconnect()
  await marker.quit()
  // Connection housekeeping (this helper's own PINGs, a client's handshake or QUIT) is not work for a request.
  return seen.filter((command) => !['ping', 'hello', 'info', 'client', 'select', 'quit'].includes(command))
}

/**
 * The refresh limit counts in windows of the clock's minutes: a test that needs its
 * requests in one window starts at least 15 s before the next one.
 */
async function freshWindow (): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000)
  if (left < 15_000) await sleep(left + 50)
}

t.test('rate limit: refresh is limited per IP in each instance, with no Redis round trip of its own', async (t) => {
  await freshWindow()
  const { url, keyPrefix } = await startApp(t, { RATE_LIMIT_REFRESH: '5' })
  await register(url, 'alice')
  const alice = await loginNative(url, 'alice')
  const bob = await (async () => { await register(url, 'bob'); return await loginNative(url, 'bob') })()
  const client = redis.client()
  t.teardown(() => client.quit())

  const honest = await clientCommands(async () => {
    t.equal((await refreshNative(url, bob.refreshToken)).status, 200)
  })
  t.equal(honest.length, 1, `an honest refresh costs Redis one command, the rotation, and nothing for the limit (${honest.join(', ')})`)
  t.match(honest[0], /^eval(sha)?$/, 'a script call')
  for (let i = 2; i <= 5; i++) {
    assertError(t, await refreshNative(url, `guess-${i}`), 401, 'FTS_TOKEN_INVALID', `request ${i} of 5 reaches the plugin`)
  }
  const forged = await clientCommands(async () => {
    assertLimitedHere(t, await refreshNative(url, 'guess-6'), 'the 6th request')
  })
  t.same(forged, [], 'a refused refresh costs Redis nothing')
  assertLimitedHere(t, await refreshNative(url, alice.refreshToken), 'a real token from the same IP: the limit is per IP, whatever the token')
  assertLimitedHere(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 'guess-7' }, headers: { 'x-forwarded-for': '203.0.113.9' } }),
    'X-Forwarded-For buys no fresh limit: the app trusts no proxy by default')
  t.same((await client.keys(`${keyPrefix}rate-limit:*refresh*`)), [], 'no counter in Redis for refresh')

  const other = await callFrom('127.0.0.2', url, 'POST', '/auth/refresh', { json: { refreshToken: alice.refreshToken } })
  t.equal(other.status, 200, 'another IP is not limited, and the refused real token was never used')
  t.type(other.body.refreshToken, 'string')
  const login = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })
  t.equal(login.status, 200, 'the limited IP can still log in: each route counts apart')
})

t.test('rate limit: logout, logout-all and revocation are limited per IP in each instance like refresh, in a count of their own', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_REFRESH: '3' })
  await register(url, 'alice')
  const ended = await loginNative(url, 'alice')
  const kept = await loginNative(url, 'alice')

  for (let i = 1; i <= 3; i++) assertError(t, await refreshNative(url, `guess-${i}`), 401, 'FTS_TOKEN_INVALID', `refresh ${i} of 3`)
  assertLimitedHere(t, await refreshNative(url, 'guess-4'), 'the 4th refresh')
  const grant = await form(url, '/auth/token', { grant_type: 'refresh_token', refresh_token: kept.refreshToken })
  t.equal(grant.status, 429, 'the refresh grant shares refresh\'s count')
  t.ok(Number(grant.headers.get('retry-after')) >= 1, 'with Retry-After')

  const honest = await clientCommands(async () => {
    t.equal((await call(url, 'POST', '/auth/logout', { json: { refreshToken: ended.refreshToken } })).status, 204,
      'request 1 of 3: logout, from an IP whose refreshes are used up')
  })
  t.equal(honest.length, 1, `an honest logout costs Redis one command, the revocation, and nothing for the limit (${honest.join(', ')})`)
  t.match(honest[0], /^eval(sha)?$/, 'a script call')
  const again = await clientCommands(async () => {
    t.equal((await call(url, 'POST', '/auth/logout', { json: { refreshToken: ended.refreshToken } })).status, 204, 'request 2 of 3: logout again')
  })
  t.equal(again.length, 0, 'a session this instance knows ended: logging out again costs Redis nothing (the limit bounds it beyond the list\'s memory)')
  t.equal((await form(url, '/auth/revoke', { token: ended.refreshToken })).status, 200, 'request 3 of 3: a revocation (RFC 7009: a dead token is a 200)')

  const refused = await clientCommands(async () => {
    assertLimitedHere(t, await call(url, 'POST', '/auth/logout', { json: { refreshToken: kept.refreshToken } }), 'the 4th: logout')
    assertLimitedHere(t, await call(url, 'POST', '/auth/logout-all', { json: { refreshToken: kept.refreshToken } }), 'logout-all, in the same count')
    const revoked = await form(url, '/auth/revoke', { token: kept.refreshToken })
    t.equal(revoked.status, 429, 'revocation, in the same count')
    t.match(revoked.body, { error: 'invalid_request', error_description: /RATE_LIMITED/ }, 'in OAuth\'s error shape, as the refresh grant\'s 429 is')
    const retryAfter = Number(revoked.headers.get('retry-after'))
    t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After in seconds within the minute (${String(revoked.headers.get('retry-after'))})`)
  })
  t.same(refused, [], 'a refused logout or revocation costs Redis nothing')

  const other = await callFrom('127.0.0.2', url, 'POST', '/auth/refresh', { json: { refreshToken: kept.refreshToken } })
  t.equal(other.status, 200, 'the session the refused requests named is live, and another IP is not limited')
  const out = await callFrom('127.0.0.2', url, 'POST', '/auth/logout', { json: { refreshToken: other.body.refreshToken } })
  t.equal(out.status, 204, 'another IP logs out')
})

t.test('the refresh limit\'s memory is bounded: past MAX_CLIENTS addresses in a window, newcomers share one count', async (t) => {
  const { LocalLimit } = await import('../example-app/src/rate-limits.js')
  // A clock that stays within one window.
  const limit = new LocalLimit(1, () => 30_000)
  for (let i = 0; i < LocalLimit.MAX_CLIENTS; i++) limit.hit(`2001:db8::${i.toString(16)}`)
  t.ok(limit.hit('2001:db8::1') > 0, 'a client counted before keeps its own count (over its limit of 1)')
  t.equal(limit.hit('198.51.100.1'), 0, 'the first newcomer past the bound')
  t.ok(limit.hit('198.51.100.2') > 0, 'shares its count with the next')
})

t.test('TRUST_PROXY: behind a trusted proxy each client has its own limit', async (t) => {
  await freshWindow()
  const { url } = await startApp(t, { RATE_LIMIT_REFRESH: '1', TRUST_PROXY: '127.0.0.1' })
  const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip })
  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 'x' }, headers: from('203.0.113.1') }), 401, 'FTS_TOKEN_INVALID', 'client 1')
  assertLimitedHere(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 'x' }, headers: from('203.0.113.1') }), 'client 1 again')
  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: 'x' }, headers: from('203.0.113.2') }), 401, 'FTS_TOKEN_INVALID', 'client 2 has its own')
  t.match(loadConfig({}), { trustProxy: false }, 'off by default')
  t.match(loadConfig({ TRUST_PROXY: 'true' }), { trustProxy: true })
  t.match(loadConfig({ TRUST_PROXY: '2' }), { trustProxy: 2 })
  t.match(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }), { trustProxy: '10.0.0.0/8, 127.0.0.1' })
  for (const bad of ['yes', '0', '11', 'proxy.example.com']) {
    t.throws(() => loadConfig({ TRUST_PROXY: bad }), { name: 'ConfigError', message: /^TRUST_PROXY must be/ }, bad)
  }
  const hops = await startApp(t, { RATE_LIMIT_REFRESH: '1', TRUST_PROXY: '1' })
  assertError(t, await call(hops.url, 'POST', '/auth/refresh', { json: { refreshToken: 'x' }, headers: from('198.51.100.1') }), 401, 'FTS_TOKEN_INVALID', 'one hop: client 1')
  assertError(t, await call(hops.url, 'POST', '/auth/refresh', { json: { refreshToken: 'x' }, headers: from('198.51.100.2') }), 401, 'FTS_TOKEN_INVALID', 'one hop: client 2')
})

t.test('rate limit: a burst of bad logins from one IP gets 429 after RATE_LIMIT_LOGIN, even with the right password', async (t) => {
  const { url, keyPrefix } = await startApp(t, { RATE_LIMIT_LOGIN: '3' })
  await register(url, 'alice')
  const client = redis.client()
  t.teardown(() => client.quit())

  const wrong = { username: 'alice', password: 'wrong password' }
  assertError(t, await call(url, 'POST', '/auth/login', { json: wrong }), 401, 'INVALID_CREDENTIALS', 'wrong password 1')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice' } }), 400, 'FST_ERR_VALIDATION', 'a malformed login counts too')
  assertError(t, await call(url, 'POST', '/auth/login', { json: wrong }), 401, 'INVALID_CREDENTIALS', 'wrong password 2')
  const limited = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } })
  assertLimited(t, limited, 3, 'the right password after the limit')
  t.equal(limited.headers.getSetCookie().length, 0, 'no session started')
  t.equal(await client.get(`${keyPrefix}rate-limit:POST/auth/login-127.0.0.1`), '4', 'the login counter is in Redis')
  t.same((await client.keys(`${keyPrefix}{*`)).filter((key) => !key.endsWith(':heartbeat')), [], 'no session was created in Redis by any of them (the feed\'s heartbeat key aside)')

  const other = await callFrom('127.0.0.2', url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD }, headers: { 'x-token-transport': 'body' } })
  t.equal(other.status, 200, 'another IP logs in')
  t.type(other.body.accessToken, 'string')
  t.equal((await call(url, 'POST', '/auth/register', { json: { username: 'bob', password: PASSWORD } })).status, 201,
    'routes without a limit are not affected')
})

t.test('rate limit: without Redis the counters are in memory', async (t) => {
  const closedPort = await freePort()
  const { app, url, keyPrefix } = await startApp(t, { REDIS_URL: `redis://127.0.0.1:${closedPort}`, RATE_LIMIT_REFRESH: '2' })
  t.ok(app.tokenSessions.store instanceof MemoryStore, 'sessions live in memory')
  assertError(t, await refreshNative(url, 'guess-1'), 401, 'FTS_TOKEN_INVALID', 'guess 1')
  assertError(t, await refreshNative(url, 'guess-2'), 401, 'FTS_TOKEN_INVALID', 'guess 2')
  assertLimitedHere(t, await refreshNative(url, 'guess-3'), 'guess 3')
  const client = redis.client()
  t.teardown(() => client.quit())
  t.same(await client.keys(`${keyPrefix}*`), [], 'nothing in the test\'s Redis')
})

t.test('rate limit: while Redis is down, login fails closed before the password is checked', async (t) => {
  const outage = await startRedis(t)
  const { url, logs } = await startApp(t, { REDIS_URL: outage.url })
  await register(url, 'alice')
  await outage.stop()
  // Were the login run uncounted, a wrong password would answer 401 and the right one 503.
  const wrong = await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: 'wrong password' } })
  assertError(t, wrong, 503, 'FTS_STORE_UNAVAILABLE', 'a wrong password while the limiter cannot count')
  t.equal(wrong.headers.get('retry-after'), '1', 'with a hint when to retry')
  t.equal(wrong.headers.get('x-ratelimit-limit'), null, 'the limiter did not count it')
  const logged = logs.entries().filter((entry) => entry.msg === 'session store unavailable')
  t.equal(logged.length, 1, 'the failure is logged once')
  t.equal(logged[0]?.level, 50, 'as an error')
  t.type((logged[0]?.err as { message?: unknown } | undefined)?.message, 'string', 'with its cause')
  assertError(t, await refreshNative(url, 'guess'), 401, 'FTS_TOKEN_INVALID', 'a forged refresh token needs no Redis to be refused')
})

t.test('rate limit config', async (t) => {
  t.match(loadConfig({}), { rateLimitLogin: 10, rateLimitRefresh: 60 }, 'defaults: 10 logins and 60 refreshes per minute')
  t.match(loadConfig({ RATE_LIMIT_LOGIN: '1', RATE_LIMIT_REFRESH: '1000000' }), { rateLimitLogin: 1, rateLimitRefresh: 1_000_000 }, 'both read')
  for (const name of ['RATE_LIMIT_LOGIN', 'RATE_LIMIT_REFRESH']) {
    for (const bad of ['0', '-1', '1.5', 'ten', '1e3', '1000001']) {
      t.throws(() => loadConfig({ [name]: bad }), { name: 'ConfigError', message: new RegExp(`^${name} must be a whole number from 1 to 1000000`) },
        `${name}=${JSON.stringify(bad)} refuses`)
    }
  }
})
