import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { MemoryStore, type SessionStore, type SessionUser } from '../lib/index.js'
import { LogCapture, buildApp, login, refresh } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

/** How long revocations are remembered in these tests. */
const REMEMBER = 60_000

function assertUnavailable (t: Test, response: LightMyRequestResponse, what: string): void {
  t.equal(response.statusCode, 503, `${what}: 503`)
  t.equal(response.headers['retry-after'], '1', `${what}: Retry-After`)
  t.equal(response.json().code, 'FTS_STORE_UNAVAILABLE', `${what}: stable code`)
  t.notMatch(response.body, /ECONNREFUSED|Connection|ioredis|stack|timeout/i, `${what}: no internal message`)
}

async function timed<T> (operation: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now()
  const result = await operation()
  return [result, performance.now() - start]
}

t.test('Redis killed mid-test: 503 with Retry-After, and recovery after a restart without restarting the app', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 500 }, { logs })
  const tokens = await login(app, 'outage')

  await redis.stop()
  const [loginResponse, loginMs] = await timed(async () => await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'outage' } }))
  assertUnavailable(t, loginResponse, 'login')
  t.ok(loginMs < 1500, `answered in ${Math.round(loginMs)} ms, not hung`)
  assertUnavailable(t, await refresh(app, tokens.refreshToken), 'refresh')
  assertUnavailable(t, await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } }), 'logout')
  assertUnavailable(t, await app.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: tokens.refreshToken } }), 'logout-all')
  assertUnavailable(t, await app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${tokens.accessToken}` } }), 'session list')
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })
  t.equal(me.statusCode, 200, 'access tokens keep working: they are stateless')
  const errors = logs.entries().filter((entry) => entry.level === 50)
  t.equal(errors.length, 5, 'each of the five 503s is logged once, by the error handler')
  t.ok(errors.every((entry) => (entry.err as { code?: unknown }).code === 'FTS_STORE_UNAVAILABLE' && typeof (entry.err as { message?: unknown }).message === 'string'),
    'with its cause, for operators')
  t.equal(new Set(errors.map((entry) => entry.reqId)).size, 5, 'one line per request')

  await redis.start()
  let recovered: LightMyRequestResponse | undefined
  for (let attempt = 0; attempt < 50; attempt++) {
    recovered = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'outage' } })
    if (recovered.statusCode === 200) break
    await sleep(100)
  }
  t.equal(recovered?.statusCode, 200, 'login works again once Redis is back')
  const fresh = await login(app, 'outage')
  t.equal((await refresh(app, fresh.refreshToken)).statusCode, 200, 'and so does refresh')
})

t.test("the app's own routes that call the store answer 503 with Retry-After too", async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 500 }, {
    setup: (app) => {
      // A password change, an admin's "end that session", a devices page: app code calling the API.
      app.post('/password', { onRequest: app.authenticate }, async (request, reply) => {
        const user = request.user as SessionUser
        await app.tokenSessions.revokeAllSessions(user.id, { except: user.sessionId, reason: 'password-change', request })
        return await reply.code(204).send()
      })
      app.delete('/sessions/current', { onRequest: app.authenticate }, async (request, reply) => {
        const user = request.user as SessionUser
        await app.tokenSessions.revokeSession(user.id, user.sessionId, { request })
        return await reply.code(204).send()
      })
      app.get('/devices', { onRequest: app.authenticate }, async (request) => await app.tokenSessions.listSessions((request.user as SessionUser).id))
    }
  })
  const tokens = await login(app, 'app-routes')
  const headers = { authorization: `Bearer ${tokens.accessToken}` }
  await redis.stop()
  assertUnavailable(t, await app.inject({ method: 'POST', url: '/password', headers }), 'revokeAllSessions')
  assertUnavailable(t, await app.inject({ method: 'DELETE', url: '/sessions/current', headers }), 'revokeSession')
  assertUnavailable(t, await app.inject({ method: 'GET', url: '/devices', headers }), 'listSessions')
})

t.test('a store that finds a rotation late (past storeTimeout by its clock) answers 503, and the retry rotates', async (t) => {
  let ahead = 0
  const store = new MemoryStore({ now: () => Date.now() + ahead })
  t.teardown(() => store.close())
  const app = await buildApp(t, { store, storeTimeout: 500 })
  const tokens = await login(app, 'late')
  // The store's clock jumps past the request's deadline after the plugin measured it.
  ahead = 600
  assertUnavailable(t, await refresh(app, tokens.refreshToken), 'refresh')
  ahead = 0
  t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200, 'nothing had changed: the same token rotates')
})

t.test('an injected client without timeouts still cannot hang a request', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const app = await buildApp(t, { redis: client, storeTimeout: 300 })
  await login(app, 'patient')
  await client.call('CLIENT', 'PAUSE', '2000', 'ALL')
  const [response, ms] = await timed(async () => await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'patient' } }))
  assertUnavailable(t, response, 'login during CLIENT PAUSE')
  t.ok(ms < 1000, `answered in ${Math.round(ms)} ms`)
  await sleep(2000)
  t.equal((await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'patient' } })).statusCode, 200)
})

t.test('a store that never answers, or throws, is a 503 too', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  const hanging: SessionStore = {
    create: async () => await new Promise<never>(() => {}),
    rotate: async (request) => await memory.rotate(request),
    stepUp: async (request) => await memory.stepUp(request),
    revoke: () => { throw new Error('synchronous bug in a custom store') },
    revokeAll: async (userId) => await memory.revokeAll(userId, { rememberMs: REMEMBER }),
    list: async (userId, page) => await memory.list(userId, page),
    isLive: async (userId, sessionId) => await memory.isLive(userId, sessionId),
    revocationFeed: memory.revocationFeed,
    time: async () => await memory.time(),
    ping: async () => await new Promise<void>(() => {}),
    close: async () => {}
  }
  const app = await buildApp(t, { store: hanging, storeTimeout: 200 })
  assertUnavailable(t, await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'h' } }), 'hanging create')
  const token = (await app.tokenSessions.issue('h', { transport: 'body' }).catch(() => undefined))
  t.equal(token, undefined, 'the API rejects as well')
  await t.rejects(app.tokenSessions.revokeSession('h', 'AAAAAAAAAAAAAAAAAAAAAA'), { code: 'FTS_STORE_UNAVAILABLE' })
  t.match(await app.tokenSessions.health(), { ok: false, store: 'down', revocationFeed: 'up' }, 'a store that does not answer is down')
})

t.test('overlapping store calls each get their whole storeTimeout, whatever the others do', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  // list hangs; everything else works, so the app starts and its feed is up.
  const store: SessionStore = {
    create: async (session) => await memory.create(session),
    rotate: async (request) => await memory.rotate(request),
    stepUp: async (request) => await memory.stepUp(request),
    revoke: async (request) => await memory.revoke(request),
    revokeAll: async (userId, options) => await memory.revokeAll(userId, options),
    list: async () => await new Promise<never>(() => {}),
    isLive: async (userId, sessionId) => await memory.isLive(userId, sessionId),
    revocationFeed: memory.revocationFeed,
    time: async () => await memory.time(),
    ping: async () => {},
    close: async () => {}
  }
  const timeout = 300
  const app = await buildApp(t, { store, storeTimeout: timeout })
  const failedAfter = async (): Promise<number> => {
    const started = Date.now()
    await t.rejects(app.tokenSessions.listSessions('overlap'), { code: 'FTS_STORE_UNAVAILABLE' })
    return Date.now() - started
  }
  const first = failedAfter()
  await sleep(timeout / 2)
  const second = failedAfter()
  // A call started while another waits must not be failed with the earlier one.
  t.ok(await first >= timeout - 5, `the first call failed after ${await first} ms (≥ ${timeout})`)
  t.ok(await second >= timeout - 5, `the second call, started ${timeout / 2} ms later, failed after ${await second} ms (≥ ${timeout})`)
  t.ok(await second < timeout * 3, 'and not much later than its own deadline')
  // Nothing pending: a call now gets a fresh timer of its own.
  t.ok(await failedAfter() >= timeout - 5, 'a later call after the timer went idle gets its whole timeout too')
})

t.test('start-up with the store down ends within one storeTimeout, whatever waits on the store', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  const never = async (): Promise<never> => await new Promise<never>(() => {})
  // Every step of start-up waits on this store: its setup check, its clock, its feed.
  const silent: SessionStore = {
    ...bound(memory),
    checkSetup: never,
    time: never,
    revocationFeed: { revocations: async () => [], watch: never }
  }
  const timeout = 1000
  const [, ms] = await timed(async () => await buildApp(t, { store: silent, storeTimeout: timeout }))
  t.ok(ms >= timeout - 5, `start-up waited ${Math.round(ms)} ms, its deadline`)
  // Steps that each waited a whole storeTimeout took 3000 ms here.
  t.ok(ms < timeout * 1.5, `and not much longer (${Math.round(ms)} ms < ${timeout * 1.5} ms)`)
})

t.test('a store\'s setup check that fails, fails registration with its error', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  const refusing: SessionStore = { ...bound(memory), revocationFeed: memory.revocationFeed, checkSetup: async () => { throw new Error('misconfigured') } }
  await t.rejects(buildApp(t, { store: refusing }), { message: 'misconfigured' })
})

/** The methods of a MemoryStore, bound, as a plain object to change some of. */
function bound (memory: MemoryStore): SessionStore {
  return {
    create: async (session) => await memory.create(session),
    rotate: async (request) => await memory.rotate(request),
    stepUp: async (request) => await memory.stepUp(request),
    revoke: async (request) => await memory.revoke(request),
    revokeAll: async (userId, options) => await memory.revokeAll(userId, options),
    list: async (userId, page) => await memory.list(userId, page),
    isLive: async (userId, sessionId) => await memory.isLive(userId, sessionId),
    revocationFeed: memory.revocationFeed,
    time: async () => await memory.time(),
    ping: async () => await memory.ping(),
    close: async () => {}
  }
}
