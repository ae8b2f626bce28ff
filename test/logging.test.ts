import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import Fastify from 'fastify'
import tokenSessions, { tokenResponse } from '../lib/index.js'
import { LogCapture, buildApp, login, refresh } from './helpers/app.js'
import { SECRET } from './helpers/common.js'
import { loggable, rateBound } from '../lib/log.js'
import { payloadOf } from './helpers/jwt.js'
import { freePort, startRedis } from './helpers/redis.mjs'

t.test('logs at debug level never hold a token, a token id or a cookie value', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url, reuseGrace: 0, storeTimeout: 300 }, { logs })
  const secrets: string[] = []

  const first = await login(app, 'logged')
  const second = (await refresh(app, first.refreshToken)).json()
  secrets.push(first.accessToken, first.refreshToken, second.accessToken, second.refreshToken)
  secrets.push(payloadOf(first.refreshToken).jti as string, payloadOf(second.refreshToken).jti as string)
  await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${second.accessToken}` } })
  await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${second.accessToken}x` } })
  await refresh(app, first.refreshToken) // reuse: a warning
  const browser = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'logged' } })
  const cookieHeader = browser.cookies.map((c: { name: string, value: string }) => `${c.name}=${c.value}`).join('; ')
  secrets.push(...browser.cookies.map((c: { value: string }) => c.value))
  await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader, 'x-requested-with': '1' } })
  await redis.stop()
  await refresh(app, second.refreshToken) // store down: an error with its cause
  await app.inject({ method: 'POST', url: '/auth/logout', headers: { cookie: cookieHeader, 'x-requested-with': '1' } })

  t.ok(logs.lines.length > 10, `${logs.lines.length} log lines written`)
  t.ok(logs.entries().some((entry) => entry.level === 40), 'the reuse warning is there')
  t.ok(logs.entries().some((entry) => entry.level === 50), 'the store error is there')
  for (const secret of secrets) t.notOk(logs.text.includes(secret), 'no secret in the logs')
})

/**
 * Makes a session's hash a string: Redis still answers, and the session's next rotation
 * fails with WRONGTYPE, a store failure without a connection error. Its session id.
 */
async function breakSession (inspect: Redis, userId: string, refreshToken: string): Promise<string> {
  const { sid } = payloadOf(refreshToken) as { sid: string }
  const [key] = await inspect.keys(`*{${userId}}:s:${sid}`)
  await inspect.del(key as string)
  await inspect.set(key as string, 'not a hash')
  return sid
}

t.test('a Redis reply error is logged once, by the error handler, with its message, never the command\'s arguments', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url }, { logs })
  const tokens = await login(app, 'logged-args')
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  // ioredis's WRONGTYPE error carries the script's keys and arguments (user id, session id, token hashes).
  const sid = await breakSession(inspect, 'logged-args', tokens.refreshToken)
  const response = await refresh(app, tokens.refreshToken)
  t.equal(response.statusCode, 503)
  const logged = logs.entries().filter((entry) => entry.level === 50)
  t.equal(logged.length, 1, 'one line for the one 503')
  t.match(logged[0], { msg: 'The session store is unavailable; retry later', err: { code: 'FTS_STORE_UNAVAILABLE', message: /WRONGTYPE/ } }, 'the 503 and its cause')
  t.notOk(logs.text.includes('logged-args'), 'no user id in the logs')
  t.notOk(logs.text.includes(sid), 'no session id in the logs')
})

t.test('a store outage is logged by the plugin, once in 10 s, even where the app logs no request errors', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  // No request logging: Fastify's error handler then logs no 503, and nothing else would.
  const app = Fastify({ logger: { level: 'info', stream: logs }, disableRequestLogging: true })
  await app.register(tokenSessions, { secret: SECRET, redis: redis.url, routes: true })
  app.post<{ Body: { userId: string } }>('/auth/login', async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId)))
  await app.ready()
  t.teardown(() => app.close())
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  // A connected store that fails every rotation (WRONGTYPE): no connection error is logged.
  const sessions = []
  for (const user of ['outage-a', 'outage-b', 'outage-c']) {
    const tokens = await login(app, user)
    await breakSession(inspect, user, tokens.refreshToken)
    sessions.push(tokens.refreshToken)
  }
  for (const token of sessions) t.equal((await refresh(app, token)).statusCode, 503)
  const about = logs.entries().filter((entry) => String(entry.msg).startsWith('session store unavailable'))
  t.equal(about.length, 1, 'one line for three 503s within 10 s')
  t.match(about[0], { level: 40, answeredSince: 0, err: { message: /WRONGTYPE/ } }, 'a warning, with the cause')
  t.notOk(logs.text.includes('outage-a'), 'no user id in it')
  // The next line, 10 s on, counts each 503 since the first once.
  await sleep(10_050)
  t.equal((await refresh(app, sessions[0] ?? '')).statusCode, 503)
  const next = logs.entries().filter((entry) => String(entry.msg).startsWith('session store unavailable'))
  t.match(next[1], { answeredSince: 2 }, 'two 503s answered since the first line, each counted once')
})

t.test('loggable: what the logs keep of an error', async (t) => {
  t.same(loggable('a thrown string'), { message: 'a thrown string' })
  const plain = loggable(new Error('plain'))
  t.match(plain, { type: 'Error', message: 'plain', stack: /Error: plain/ })
  t.notOk('code' in plain || 'command' in plain, 'no code, no command')
  const reply = Object.assign(new Error('WRONGTYPE'), { code: 'ERR', command: { name: 'evalsha', args: ['user-id', 'token-hash'] } })
  t.same(loggable(reply), { type: 'Error', message: 'WRONGTYPE', stack: reply.stack, code: 'ERR', command: 'evalsha' }, 'the command\'s name, not its arguments')
})

/** What ioredis prints to stderr (console.error) while `run` runs. */
async function stderrOf (t: Test, run: () => Promise<void>): Promise<string[]> {
  const printed: string[] = []
  const original = console.error
  console.error = (...args: unknown[]) => { printed.push(args.map(String).join(' ')) }
  t.teardown(() => { console.error = original })
  try {
    await run()
  } finally {
    console.error = original
  }
  return printed
}

/** The log lines of the store's connection errors. */
function connectionErrors (logs: LogCapture): Array<Record<string, unknown>> {
  return logs.entries().filter((entry) => entry.msg === 'session store connection error')
}

t.test('an app\'s own ioredis client with Redis down: its errors go to the app\'s log, at most one line per 10 s, none to stderr', async (t) => {
  const client = new Redis(await freePort(), '127.0.0.1', { lazyConnect: true })
  t.teardown(() => client.disconnect())
  const logs = new LogCapture()
  const printed = await stderrOf(t, async () => {
    const app = await buildApp(t, { redis: client, storeTimeout: 200 }, { logs })
    t.equal(client.listenerCount('error'), 1, 'the plugin listens to a client that had no listener')
    // ioredis retries after 50, 100, 150 ms…: errors of the client and of the feed's connection.
    await sleep(800)
    await app.close()
  })
  t.same(printed.filter((line) => line.includes('Unhandled error event')), [], 'nothing on stderr')
  const logged = connectionErrors(logs)
  t.equal(logged.length, 1, 'one line for the whole outage so far')
  t.match(logged[0], { level: 40, err: { message: /ECONNREFUSED/, code: 'ECONNREFUSED' }, skipped: 0 })
  t.equal(client.listenerCount('error'), 0, 'the listener leaves with the app')
  t.not(client.status, 'end', 'the client given is never closed')
})

t.test('a client with its own error listener is left alone; the feed\'s own connections still report to the log', async (t) => {
  const client = new Redis(await freePort(), '127.0.0.1', { lazyConnect: true })
  t.teardown(() => client.disconnect())
  const own: Error[] = []
  client.on('error', (err) => own.push(err))
  const logs = new LogCapture()
  const printed = await stderrOf(t, async () => {
    const app = await buildApp(t, { redis: client, storeTimeout: 200 }, { logs })
    t.equal(client.listenerCount('error'), 1, 'no second listener')
    await sleep(500)
    await app.close()
  })
  t.ok(own.length > 0, 'the app\'s listener hears its client')
  t.same(printed.filter((line) => line.includes('Unhandled error event')), [], 'nothing on stderr')
  t.equal(connectionErrors(logs).length, 1, 'the feed\'s subscriber reported, once')
})

t.test('rateBound: one report per interval, with the number left out since the last', async (t) => {
  let now = 0
  const reports: Array<[string, number]> = []
  const report = rateBound((err, skipped) => reports.push([err.message, skipped]), 10_000, () => now)
  for (const at of [0, 1, 5000, 9999]) {
    now = at
    report(new Error(`at ${at}`))
  }
  t.same(reports, [['at 0', 0]], 'the first at once, the rest left out')
  now = 10_000
  report(new Error('at 10000'))
  now = 10_001
  report(new Error('at 10001'))
  now = 30_000
  report(new Error('at 30000'))
  t.same(reports, [['at 0', 0], ['at 10000', 3], ['at 30000', 1]], 'then one per interval, counting what was left out')
})

t.test('rateBound: several reports per interval, of any value, then one line counting the rest', async (t) => {
  let now = 0
  const reports: Array<[string, number]> = []
  const report = rateBound<string>((line, skipped) => reports.push([line, skipped]), 60_000, () => now, 3)
  for (let i = 0; i < 5; i++) report(`line ${i}`)
  t.same(reports, [['line 0', 0], ['line 1', 0], ['line 2', 0]], 'three, then none')
  now = 59_999
  report('late')
  now = 60_000
  report('next')
  t.same(reports.slice(3), [['next', 3]], 'the window is over: told again, with the 3 left out')
})
