import t from 'tap'
import { connect } from 'node:net'
import {
  NEW_PASSWORD, PASSWORD, appStarter, assertError, assertLogsClean, auditLines, bearer, call, loginNative, refreshNative, register, sessionIdOf
} from './helpers/example-app.js'
import { startRedis } from './helpers/redis.mjs'

// What the example app logs (audit hooks, URLs) and never logs (tokens, passwords), and how it cuts off slow bodies.
const redis = await startRedis(t)
const startApp = appStarter(redis)

t.test('audit hooks: one structured line per call, never a token', async (t) => {
  const { url, logs } = await startApp(t)
  const alice = await register(url, 'alice')
  const laptop = await loginNative(url, 'alice', 'Laptop/1.0')
  const phone = await loginNative(url, 'alice', 'Phone/2.0')
  const tablet = await loginNative(url, 'alice', 'Tablet/3.0')
  const [laptopId, phoneId, tabletId] = await Promise.all([laptop, phone, tablet].map((tokens) => sessionIdOf(url, tokens.accessToken)))

  const refreshed = await refreshNative(url, phone.refreshToken)
  t.equal(refreshed.status, 200)
  t.equal((await call(url, 'POST', '/auth/logout', { json: { refreshToken: refreshed.body.refreshToken } })).status, 204)
  const changed = await call(url, 'POST', '/auth/change-password', {
    json: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }, headers: bearer(tablet.accessToken)
  })
  t.equal(changed.status, 204)

  const lines = auditLines(logs)
  const summary = lines.map((entry) => [entry.audit, entry.sessionId, entry.reason])
  t.same(summary, [
    ['onLogin', laptopId, 'login'],
    ['onLogin', phoneId, 'login'],
    ['onLogin', tabletId, 'login'],
    ['onRefresh', phoneId, 'refresh'],
    ['onLogout', phoneId, 'logout'],
    ['onSessionRevoked', phoneId, 'logout'],
    ['onSessionRevoked', undefined, 'password-change'],
    ['onSessionRevoked', undefined, 'password-changed']
  ], 'login, refresh, logout, and the password change\'s two revocations (before and after the new password), each once')
  t.match(lines[6], { allSessions: true, except: tabletId }, 'the password change ended every session but the one that asked, in one event')
  for (const entry of lines) {
    t.equal(entry.userId, alice.id, `${String(entry.audit)}: the user`)
    t.equal(entry.level, 30, `${String(entry.audit)}: at info`)
    t.notOk('userAgent' in entry, `${String(entry.audit)}: no user agent`)
  }
  t.same(lines.slice(0, 6).map((entry) => entry.ip), Array(6).fill('127.0.0.1'), 'the client\'s IP when a request caused it')
  t.same(lines.slice(0, 6).map((entry) => typeof entry.reqId), Array(6).fill('string'), 'on the request\'s logger')
  assertLogsClean(t, logs, [
    laptop.accessToken, laptop.refreshToken, phone.accessToken, phone.refreshToken, tablet.accessToken, tablet.refreshToken,
    refreshed.body.accessToken, refreshed.body.refreshToken, PASSWORD, NEW_PASSWORD
  ])
})

t.test('a token in the query string stays out of the log', async (t) => {
  const { url, logs } = await startApp(t)
  await register(url, 'alice')
  const login = await loginNative(url, 'alice')
  const query = `?access_token=${login.accessToken}&refresh_token=${login.refreshToken}`

  t.equal((await call(url, 'GET', `/me${query}`, { headers: bearer(login.accessToken) })).status, 200)
  assertError(t, await call(url, 'GET', `/nowhere${query}`), 404, 'NOT_FOUND', 'an unknown route')
  assertError(t, await call(url, 'POST', `/auth/refresh${query}`, { json: {} }), 401, 'FTS_TOKEN_MISSING', 'a plugin route')
  const completed = logs.entries().filter((entry) => entry.msg === 'request completed')
  const urls = completed.map((entry) => (entry.req as { url?: string }).url)
  t.same(urls.slice(-3), ['/me', '/nowhere', '/auth/refresh'], 'requests are logged by path')
  t.same(completed.slice(-3).map((entry) => (entry.res as { statusCode?: number }).statusCode), [200, 404, 401], 'with their status, once each')
  t.notOk(logs.entries().some((entry) => entry.msg === 'incoming request'), 'one line per request, not two')
  t.notOk(logs.text.includes('access_token='), 'no query string in any line')
  assertLogsClean(t, logs, [login.accessToken, login.refreshToken, PASSWORD])
})

t.test('a request body that never finishes is cut off in seconds, not minutes', async (t) => {
  const { url } = await startApp(t)
  const port = Number(new URL(url).port)
  // One client stops sending; the other sends a byte a second, so the connection is never silent.
  const [stalled, trickling] = await Promise.all([partialRequest(port, false), partialRequest(port, true)])
  t.ok(stalled.ms < 13_000, `a stalled body: closed after ${stalled.ms} ms`)
  t.ok(trickling.ms < 13_000, `a trickling body: closed after ${trickling.ms} ms`)
  t.match(trickling.response, /^HTTP\/1\.1 408 /, 'with a 408')
})

/**
 * Sends headers that announce a 1000-byte body and only part of it; resolves when the
 * server closes the connection, or after 20 s (ms is then Infinity).
 */
async function partialRequest (port: number, trickle: boolean): Promise<{ ms: number, response: string }> {
  return await new Promise((resolve) => {
    const started = Date.now()
    let response = ''
    let done = false
    const socket = connect(port, '127.0.0.1')
    const ticker = trickle ? setInterval(() => socket.write('a'), 1000) : undefined
    const giveUp = setTimeout(() => finish(Number.POSITIVE_INFINITY), 20_000)
    function finish (ms: number): void {
      if (done) return
      done = true
      clearInterval(ticker)
      clearTimeout(giveUp)
      socket.destroy()
      resolve({ ms, response })
    }
    socket.on('data', (chunk) => { response += chunk.toString() })
    socket.on('error', () => {})
    socket.on('close', () => finish(Date.now() - started))
    socket.write('POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"username":"')
  })
}

t.test('a 503 of the plugin, while Redis is down, is logged once', async (t) => {
  const outage = await startRedis(t)
  const { url, logs } = await appStarter(outage)(t)
  await register(url, 'alice')
  const phone = await loginNative(url, 'alice')
  await outage.stop()
  assertError(t, await refreshNative(url, phone.refreshToken), 503, 'FTS_STORE_UNAVAILABLE', 'the refresh cannot reach the store')
  const about = logs.entries().filter((entry) => entry.msg === 'session store unavailable' || entry.msg === 'request rejected' || entry.msg === 'request failed')
  t.equal(about.length, 1, 'one line')
  t.match(about[0], { level: 50, msg: 'session store unavailable', err: { message: /./ } }, 'an error, with its cause')
})
