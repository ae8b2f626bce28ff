import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import Fastify from 'fastify'
import { MemoryStore, RedisStore, type Revocation, type RevocationFeed, type RevocationListener, type SessionStore } from '../lib/index.js'
import { StoreClock } from '../lib/clock.js'
import { RevocationList } from '../lib/revocations.js'
import { LogCapture, buildApp, login, refresh, untilUp } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

const silent = Fastify({ logger: false }).log

/** The clock of a store, as the plugin keeps it. */
function clockOf (store: SessionStore): StoreClock {
  return new StoreClock(async () => await store.time(), silent)
}

async function me (app: FastifyInstance, accessToken: string): Promise<{ statusCode: number, code: string | undefined }> {
  const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
  return { statusCode: response.statusCode, code: response.statusCode === 200 ? undefined : response.json().code }
}

/** Polls instance B until it rejects the token; returns the milliseconds it took, or Infinity. */
async function rejectionLatency (app: FastifyInstance, accessToken: string, since: number, limitMs = 1000): Promise<number> {
  while (performance.now() - since < limitMs) {
    if ((await me(app, accessToken)).statusCode === 401) return performance.now() - since
    await sleep(1)
  }
  return Infinity
}

t.test('two instances on one Redis: a revocation on A is seen by B at once, with no Redis read per request', async (t) => {
  const redis = await startRedis(t)
  const a = await buildApp(t, { redis: redis.url })
  const b = await buildApp(t, { redis: redis.url })
  const latencies: number[] = []

  t.test('logout', async (t) => {
    const tokens = await login(a, 'rv-logout')
    t.equal((await me(b, tokens.accessToken)).statusCode, 200, 'B trusts the token before')
    const start = performance.now()
    await a.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })
    const latency = await rejectionLatency(b, tokens.accessToken, start)
    latencies.push(latency)
    t.ok(latency < 1000, `B rejects within 1 s of the logout response (${latency.toFixed(1)} ms)`)
    t.same(await me(b, tokens.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' })
    t.same(await me(a, tokens.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' }, 'and so does A')
  })

  t.test('reuse detection', async (t) => {
    const tokens = await login(a, 'rv-reuse')
    await refresh(a, tokens.refreshToken)
    await sleep(0)
    const rotated = (await refresh(a, tokens.refreshToken))
    t.equal(rotated.statusCode, 200, 'within the grace window nothing is revoked')
    const strict = await buildApp(t, { redis: redis.url, reuseGrace: 0 })
    const victim = await login(strict, 'rv-reuse-strict')
    const next = (await refresh(strict, victim.refreshToken)).json()
    const start = performance.now()
    await refresh(strict, victim.refreshToken)
    const latency = await rejectionLatency(b, next.accessToken, start)
    latencies.push(latency)
    t.ok(latency < 1000, `B rejects the thief's and the owner's access tokens (${latency.toFixed(1)} ms)`)
    t.equal((await me(b, victim.accessToken)).statusCode, 401)
  })

  t.test('logout-all and app-code revocations', async (t) => {
    const one = await login(a, 'rv-all')
    const two = await login(a, 'rv-all')
    const start = performance.now()
    await a.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${one.accessToken}` } })
    latencies.push(await rejectionLatency(b, two.accessToken, start))
    t.equal((await me(b, one.accessToken)).statusCode, 401)
    t.equal((await me(b, two.accessToken)).statusCode, 401)
    const three = await login(b, 'rv-api')
    const sessionId = b.tokenSessions.verifyAccessToken(three.accessToken).sessionId
    const apiStart = performance.now()
    await b.tokenSessions.revokeSession('rv-api', sessionId)
    latencies.push(await rejectionLatency(a, three.accessToken, apiStart))
    t.equal((await me(a, three.accessToken)).statusCode, 401, 'from B to A as well')
  })

  t.test('latency', async (t) => {
    t.ok(latencies.every((ms) => ms < 1000), `observed: ${latencies.map((ms) => `${ms.toFixed(1)} ms`).join(', ')}`)
  })

  t.test('an instance that starts after a revocation loads it', async (t) => {
    const tokens = await login(a, 'rv-late')
    await a.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })
    const late = await buildApp(t, { redis: redis.url })
    t.ok(await untilUp(late, 'revocationFeed'), 'its revocation list loads (its health says so)')
    t.same(await me(late, tokens.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' })
  })
})

/**
 * A Redis store whose feed says it is connected, reloads as usual, and then never delivers
 * an announcement: what an instance knows after start comes from itself alone.
 */
function deafStore (store: RedisStore): SessionStore {
  const methods = ['create', 'rotate', 'stepUp', 'revoke', 'revokeAll', 'list', 'isLive', 'time', 'ping', 'close'] as const
  const revocationFeed: RevocationFeed = {
    revocations: () => store.revocationFeed.revocations(),
    watch: async (listener) => {
      listener.connected()
      return async () => {}
    }
  }
  return { ...Object.fromEntries(methods.map((name) => [name, store[name].bind(store)])), revocationFeed } as unknown as SessionStore
}

t.test('an instance rejects the access token of a session it ended itself at once, without waiting for the feed', async (t) => {
  const redis = await startRedis(t)
  const logoutThenMe = async (t: Test, app: FastifyInstance, userId: string): Promise<void> => {
    const tokens = await login(app, userId)
    t.equal((await me(app, tokens.accessToken)).statusCode, 200, 'trusted before')
    const logout = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })
    t.equal(logout.statusCode, 204, 'logged out')
    t.same(await me(app, tokens.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' }, 'the very next request with the access token is refused')
  }

  t.test('on a Redis store', async (t) => {
    await logoutThenMe(t, await buildApp(t, { redis: redis.url }), 'own-redis')
  })

  t.test('when the feed delivers nothing: only the instance\'s own list can refuse it', async (t) => {
    const client = redis.client()
    t.teardown(() => client.quit())
    const store = new RedisStore({ client })
    t.teardown(() => store.close())
    await logoutThenMe(t, await buildApp(t, { store: deafStore(store) }), 'own-deaf')
  })
})

t.test('a revocation missed while the feed was down is reloaded on resubscribe', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const logs = new LogCapture()
  const a = await buildApp(t, { redis: redis.url })
  const b = await buildApp(t, { redis: redis.url, revocationFeed: { onOutage: 'accept' } }, { logs })
  const tokens = await login(a, 'rv-missed')
  // Cut every subscriber off and keep it off: no new connection is accepted.
  const clients = Number(/connected_clients:(\d+)/.exec(await inspect.info('clients'))?.[1])
  await inspect.config('SET', 'maxclients', String(clients - 2))
  await inspect.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await a.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })
  await sleep(200)
  t.equal((await me(b, tokens.accessToken)).statusCode, 200, 'B missed the message: its feed is down (the accept policy)')
  t.ok(logs.entries().some((entry) => entry.msg === 'revocation feed down: revocations on other instances may be missed' && entry.level === 40))
  await inspect.config('SET', 'maxclients', '10000')
  const start = performance.now()
  const latency = await rejectionLatency(b, tokens.accessToken, start, 5000)
  t.ok(latency < 5000, `after reconnecting, B reloaded the revocation (${latency.toFixed(0)} ms after Redis accepted clients again)`)
  t.ok(logs.entries().some((entry) => entry.msg === 'revocation feed up'))
})

t.test('outage policy', async (t) => {
  const redis = await startRedis(t)

  t.test('reject: 503 once the feed has been down longer than maxOutage, and back after', async (t) => {
    const app = await buildApp(t, { redis: redis.url, revocationFeed: { maxOutage: 0, onOutage: 'reject' } })
    const tokens = await login(app, 'rv-reject')
    t.equal((await me(app, tokens.accessToken)).statusCode, 200)
    await redis.stop()
    await sleep(100)
    const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })
    t.equal(response.statusCode, 503)
    t.equal(response.headers['retry-after'], '1')
    t.equal(response.json().code, 'FTS_STORE_UNAVAILABLE')
    await redis.start()
    let status = 0
    for (let i = 0; i < 100 && status !== 200; i++) {
      await sleep(100)
      status = (await me(app, tokens.accessToken)).statusCode
    }
    t.equal(status, 200, 'the feed is back, and so is the route')
  })

  t.test('accept: tokens keep working while the feed is down', async (t) => {
    const app = await buildApp(t, { redis: redis.url, revocationFeed: { maxOutage: 0 } })
    const tokens = await login(app, 'rv-accept')
    await redis.stop()
    await sleep(100)
    t.equal((await me(app, tokens.accessToken)).statusCode, 200)
    await redis.start()
  })

  t.test('an app whose Redis is down at start-up still starts, within the store timeout', async (t) => {
    await redis.stop()
    t.teardown(() => redis.start())
    const start = performance.now()
    const app = await buildApp(t, { redis: redis.url, storeTimeout: 300, revocationFeed: { onOutage: 'reject', maxOutage: 0 } })
    t.ok(performance.now() - start < 2000, 'ready() did not hang')
    await t.rejects(app.tokenSessions.issue('x'), { code: 'FTS_STORE_UNAVAILABLE' }, 'and answers 503 until Redis is back')
  })
})

t.test('authenticateStrict asks the store', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 300 }, {
    setup: (app) => app.get('/sensitive', { onRequest: app.authenticateStrict }, async (request) => request.user)
  })
  const tokens = await login(app, 'strict')
  const sensitive = async (): Promise<{ statusCode: number, json: () => any }> => await app.inject({ method: 'GET', url: '/sensitive', headers: { authorization: `Bearer ${tokens.accessToken}` } })
  t.equal((await sensitive()).statusCode, 200)
  // The session disappears without any announcement (evicted, or expired): only the store knows.
  for (const key of await inspect.keys('*{strict}:s:*')) await inspect.del(key)
  t.equal((await me(app, tokens.accessToken)).statusCode, 200, 'authenticate trusts the token until it expires')
  const strict = await sensitive()
  t.equal(strict.statusCode, 401)
  t.equal(strict.json().code, 'FTS_SESSION_REVOKED')
  await redis.stop()
  t.equal((await sensitive()).statusCode, 503, 'with the store down, the strict check cannot answer')
})

t.test('the revocation list', async (t) => {
  t.test('forgets a revocation once its access tokens have expired', async (t) => {
    const store = new MemoryStore()
    t.teardown(() => store.close())
    const list = new RevocationList(store.revocationFeed, clockOf(store), { maxOutageMs: 0, onOutage: 'accept', rememberMs: 50 }, silent)
    await list.start(1000)
    t.teardown(() => list.close())
    t.ok(list.live)
    const fields = { tokenHash: 'h', ttlMs: 60_000, maxTtlMs: 60_000, client: {}, maxSessions: 100, rememberMs: 60_000 }
    await store.create({ userId: 'u', sessionId: 'short-lived-session-id', ...fields })
    await store.create({ userId: 'u', sessionId: 'other-session-id-00000', ...fields })
    await store.revoke({ userId: 'u', sessionId: 'short-lived-session-id', rememberMs: 50 })
    t.ok(list.isRevoked('u', 'short-lived-session-id', 0))
    t.notOk(list.isRevoked('u', 'never-revoked', 0))
    await sleep(1100)
    t.notOk(list.isRevoked('u', 'short-lived-session-id', 0), 'forgotten after its time (kept in whole seconds, rounded up)')
    await store.revoke({ userId: 'u', sessionId: 'other-session-id-00000', rememberMs: 50 })
    await store.revokeAll('w', { rememberMs: 50 })
    await sleep(1100)
    await store.create({ userId: 'v', sessionId: 'third-session-id-00000', ...fields })
    await store.revoke({ userId: 'v', sessionId: 'third-session-id-00000', rememberMs: 60_000 })
    t.ok(list.isRevoked('v', 'third-session-id-00000', 0))
    t.equal(list.size, 1, 'expired entries, sessions and stamps, are swept (at most once a second) as new ones arrive')
    t.notOk(list.isRevoked('u', 'other-session-id-00000', 0))
  })

  t.test('a user\'s stamp covers the sessions that started before it but the spared one, until it expires', async (t) => {
    const listeners: RevocationListener[] = []
    const feed: RevocationFeed = { watch: async (listener: RevocationListener) => { listeners.push(listener); return async () => {} }, revocations: async () => [] }
    const list = new RevocationList(feed, new StoreClock(async () => Date.now(), silent), { maxOutageMs: 0, onOutage: 'accept', rememberMs: 200 }, silent)
    await list.start(10)
    const now = Date.now()
    listeners[0]?.revoked([{ userId: 'u', startedBefore: now - 100, except: 'spared', until: now + 60_000 }])
    t.ok(list.isRevoked('u', 'older', now - 101), 'started before the stamp')
    t.notOk(list.isRevoked('u', 'newer', now - 100), 'started at the stamp: a login right after it')
    t.notOk(list.isRevoked('u', 'spared', now - 1000), 'the spared session')
    t.notOk(list.isRevoked('other-user', 'older', now - 101), 'another user')
    listeners[0]?.revoked([{ userId: 'u', startedBefore: now - 150, until: now + 60_000 }])
    t.notOk(list.isRevoked('u', 'spared', now - 1000), 'an older stamp arriving late changes nothing')
    listeners[0]?.revoked([{ userId: 'u', startedBefore: now - 50, until: now + 60_000 }])
    t.ok(list.isRevoked('u', 'spared', now - 1000), 'a later stamp replaces it, and spares nothing')
    listeners[0]?.revoked([{ userId: 'gone', startedBefore: now - 300, until: now + 60_000 }])
    t.equal(list.size, 1, 'a stamp already past this instance\'s memory is not kept')
    await sleep(250)
    t.notOk(list.isRevoked('u', 'older', now - 101), 'forgotten once this instance\'s access tokens from before it have expired, whatever until the stamp names')
    t.equal(list.size, 0)
  })

  t.test('keeps the later of two expiries for one session', async (t) => {
    const listeners: RevocationListener[] = []
    const feed: RevocationFeed = { watch: async (listener: RevocationListener) => { listeners.push(listener); return async () => {} }, revocations: async () => [] }
    const list = new RevocationList(feed, new StoreClock(async () => Date.now(), silent), { maxOutageMs: 0, onOutage: 'accept', rememberMs: 60_000 }, silent)
    await list.start(10)
    const now = Date.now()
    listeners[0]?.revoked([{ sessionId: 's', until: now + 60_000 }])
    listeners[0]?.revoked([{ sessionId: 's', until: now + 10 }])
    await sleep(50)
    t.ok(list.isRevoked('u', 's', 0), 'an older, shorter announcement does not shorten it')
  })

  t.test('retries a reload that failed, while the feed stays connected', async (t) => {
    const listeners: RevocationListener[] = []
    let attempts = 0
    const revocations = async (): Promise<Revocation[]> => {
      attempts++
      if (attempts === 1) throw new Error('store hiccup')
      return [{ sessionId: 'missed', until: Date.now() + 60_000 }]
    }
    const feed: RevocationFeed = { watch: async (listener: RevocationListener) => { listeners.push(listener); return async () => {} }, revocations }
    const logs = new LogCapture()
    const log = Fastify({ logger: { level: 'info', stream: logs } }).log
    const list = new RevocationList(feed, new StoreClock(async () => Date.now(), log), { maxOutageMs: 0, onOutage: 'reject', rememberMs: 60_000 }, log)
    await list.start(10)
    t.teardown(() => list.close())
    t.throws(() => list.checkFeed(), { code: 'FTS_STORE_UNAVAILABLE' }, 'not loaded yet: down')
    listeners[0]?.connected()
    await sleep(1500)
    t.equal(attempts, 2)
    t.ok(list.isRevoked('u', 'missed', 0))
    t.doesNotThrow(() => list.checkFeed(), 'loaded: up')
    t.ok(logs.entries().some((entry) => entry.msg === 'revocation list reload failed; retrying'))
    listeners[0]?.disconnected()
    listeners[0]?.disconnected()
    t.equal(logs.entries().filter((entry) => entry.msg?.toString().startsWith('revocation feed down')).length, 1, 'one warning per outage')
    t.notOk(list.live)
  })

  /** A feed the test drives: its listener, and a reload it gives as `reload` says. */
  const drivenFeed = (reload: () => Promise<Revocation[]> | AsyncIterable<Revocation[]>): { feed: RevocationFeed, listeners: RevocationListener[] } => {
    const listeners: RevocationListener[] = []
    return { listeners, feed: { watch: async (listener: RevocationListener) => { listeners.push(listener); return async () => {} }, revocations: reload } }
  }
  const listOf = (feed: RevocationFeed): RevocationList =>
    new RevocationList(feed, new StoreClock(async () => Date.now(), silent), { maxOutageMs: 0, onOutage: 'reject', rememberMs: 60_000 }, silent)

  t.test('reloads a feed that gives its revocations in chunks, handing the event loop back between them', async (t) => {
    let turns = 0
    const timer = setInterval(() => { turns++ }, 0)
    t.teardown(() => clearInterval(timer))
    let failFirst = true
    const { feed, listeners } = drivenFeed(async function * () {
      for (let chunk = 0; chunk < 5; chunk++) {
        await sleep(2)
        if (chunk === 3 && failFirst) {
          failFirst = false
          throw new Error('connection lost mid-reload')
        }
        yield Array.from({ length: 1000 }, (_, n) => ({ sessionId: `c${chunk}-${n}`, until: Date.now() + 60_000 }))
      }
    })
    const list = listOf(feed)
    await list.start(10)
    t.teardown(() => list.close())
    listeners[0]?.connected()
    await sleep(100)
    t.notOk(list.live, 'a reload that failed midway leaves the feed down')
    await sleep(1200)
    t.ok(list.live, 'retried, and whole')
    t.equal(list.size, 5000)
    t.ok(list.isRevoked('u', 'c4-999', 0))
    t.ok(turns > 5, `timers ran during the reloads (${turns} turns)`)
  })

  t.test('connects that come during a reload make one more reload, not one each', async (t) => {
    let reloads = 0
    const { feed, listeners } = drivenFeed(async () => {
      reloads++
      await sleep(50)
      return [{ sessionId: `r${reloads}`, until: Date.now() + 60_000 }]
    })
    const list = listOf(feed)
    await list.start(10)
    t.teardown(() => list.close())
    for (let n = 0; n < 4; n++) listeners[0]?.connected()
    await sleep(20)
    listeners[0]?.connected()
    await sleep(250)
    t.equal(reloads, 2, 'the first, and one after it for the connects meanwhile')
    t.ok(list.live)
    t.ok(list.isRevoked('u', 'r2', 0), 'the later reload counted')
  })

  t.test('a reload that ends after the feed went down again does not make the list live', async (t) => {
    let reloads = 0
    const { feed, listeners } = drivenFeed(async () => {
      reloads++
      await sleep(50)
      return []
    })
    const list = listOf(feed)
    await list.start(10)
    t.teardown(() => list.close())
    listeners[0]?.connected()
    await sleep(20)
    listeners[0]?.disconnected()
    await sleep(100)
    t.equal(reloads, 1)
    t.notOk(list.live, 'still down: announcements are missed until the feed is back')
    t.throws(() => list.checkFeed(), { code: 'FTS_STORE_UNAVAILABLE' }, 'and the reject policy applies')
    listeners[0]?.connected()
    await sleep(100)
    t.ok(list.live, 'back, and reloaded')
  })

  t.test('two stamps of one user with the same time end what either ends', async (t) => {
    const { feed, listeners } = drivenFeed(async () => [])
    const list = listOf(feed)
    await list.start(10)
    t.teardown(() => list.close())
    const at = Date.now()
    const stamp = (userId: string, except?: string): Revocation => except === undefined ? { userId, startedBefore: at, until: at + 60_000 } : { userId, startedBefore: at, except, until: at + 60_000 }
    listeners[0]?.revoked([stamp('u', 'a')])
    listeners[0]?.revoked([stamp('u', 'a')])
    t.notOk(list.isRevoked('u', 'a', at - 1), 'the same stamp again spares the same session')
    listeners[0]?.revoked([stamp('u')])
    t.ok(list.isRevoked('u', 'a', at - 1), 'one that spares nothing ends it')
    listeners[0]?.revoked([stamp('v')])
    listeners[0]?.revoked([stamp('v', 'b')])
    t.ok(list.isRevoked('v', 'b', at - 1), 'in either order')
  })

  t.test('sweeps a bounded batch at a time, from where the last sweep stopped, until every expired entry is gone', async (t) => {
    const { feed, listeners } = drivenFeed(async () => [])
    const list = listOf(feed)
    await list.start(10)
    t.teardown(() => list.close())
    const soon = Date.now() + 300
    listeners[0]?.revoked(Array.from({ length: 20_000 }, (_, n) => ({ sessionId: `soon-${n}`, until: soon })))
    listeners[0]?.revoked([{ userId: 'stamped', startedBefore: Date.now() - 59_500, until: soon }])
    const live = (n: number): Revocation => ({ sessionId: `live-${n}`, until: Date.now() + 60_000 })
    const sizes: number[] = []
    for (let n = 0; n < 4; n++) {
      await sleep(1100)
      listeners[0]?.revoked([live(n)])
      sizes.push(list.size)
    }
    // Each sweep looks at 8,192 sessions; the expired ones among them go, and the stamp
    // (expired by this instance's memory) goes with the first sweep of the users.
    t.same(sizes, [20_001 - 8192 + 1 - 1, 20_001 - 16_384 + 2 - 1, 2 + 1, 4], 'the expired go a batch per sweep; the live stay')
    t.ok(list.isRevoked('u', 'live-0', 0))
    t.notOk(list.isRevoked('u', 'soon-19999', 0))
  })
})
