// What an instance asks the store while its revocation feed is down: the check-store policy
// (one lookup per session in flight, a cap, the known-alive memory, the store unreachable;
// accept and reject beside it) and LiveCheck's bounds; and no store work at all for
// sessions this instance already knows are over.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { MemoryStore, type SessionStore } from '../lib/index.js'
import { LiveCheck } from '../lib/live-check.js'
import { buildApp, LogCapture, login } from './helpers/app.js'
import { logout, me, silent } from './helpers/feed.js'
import { startRedis } from './helpers/redis.mjs'

t.test('logouts and revocations of sessions this instance knows are over cost no store script', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url })
  const tokens = await login(app, 'dead-user')
  t.equal(await logout(app, tokens.refreshToken), 204)
  const monitor = await inspect.monitor()
  const scripts: string[][] = []
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source !== 'lua' && /^eval/i.test(String(args[0])) && !String(args[3]).endsWith(':heartbeat')) scripts.push(args)
  })
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const answers = new Map<string, number>()
  const count = (key: string): void => { answers.set(key, (answers.get(key) ?? 0) + 1) }
  for (let n = 0; n < 150; n++) {
    count(`logout by refresh token: ${(await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })).statusCode}`)
    count(`logout by access token: ${(await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${tokens.accessToken}` } })).statusCode}`)
    count(`revoke a refresh token: ${(await app.inject({ method: 'POST', url: '/auth/revoke', headers: form, payload: `token=${tokens.refreshToken}` })).statusCode}`)
    count(`revoke an access token: ${(await app.inject({ method: 'POST', url: '/auth/revoke', headers: form, payload: `token=${tokens.accessToken}&token_type_hint=access_token` })).statusCode}`)
  }
  await inspect.ping()
  await sleep(100)
  monitor.disconnect()
  t.same(Object.fromEntries(answers), {
    'logout by refresh token: 204': 150, 'logout by access token: 204': 150, 'revoke a refresh token: 200': 150, 'revoke an access token: 200': 150
  }, '600 requests answered as for any ended session')
  t.equal(scripts.length, 0, 'and no store script beyond the heartbeat\'s ran')
})

/** A store whose revocation feed never connects: the list stays down, as in an outage of the feed alone. */
function feedlessStore (store: SessionStore, isLive: (userId: string, sessionId: string) => Promise<boolean>, ping?: () => Promise<void>): SessionStore {
  return {
    create: async (session) => await store.create(session),
    rotate: async (request) => await store.rotate(request),
    stepUp: async (request) => await store.stepUp(request),
    revoke: async (request) => await store.revoke(request),
    revokeAll: async (userId, options) => await store.revokeAll(userId, options),
    list: async (userId, page) => await store.list(userId, page),
    isLive,
    time: async () => await store.time(),
    ping: ping ?? (async () => { await store.ping() }),
    close: async () => {},
    revocationFeed: { revocations: async () => [], watch: async () => async () => {} }
  }
}

t.test('check-store: one lookup per session in flight, a cap, the known-alive memory, and the store unreachable', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())

  t.test('concurrent requests for one session share one lookup; a revoked session is refused', async (t) => {
    let lookups = 0
    const store = feedlessStore(memory, async (userId, sessionId) => {
      lookups++
      await sleep(50)
      return await memory.isLive(userId, sessionId)
    })
    const app = await buildApp(t, { store })
    const tokens = await login(app, 'shared-lookup')
    const answers = await Promise.all(Array.from({ length: 10 }, async () => await me(app, tokens.accessToken)))
    t.same(answers, Array.from({ length: 10 }, () => ({ statusCode: 200 })))
    t.equal(lookups, 1, 'ten requests, one lookup')
    const health = await app.tokenSessions.health()
    t.same({ ok: health.ok, revocationFeed: health.revocationFeed }, { ok: true, revocationFeed: 'down' }, 'ready while the feed is down: the store answers')
    await memory.revoke({ userId: 'shared-lookup', sessionId: (await memory.list('shared-lookup', { limit: 1 })).sessions[0]?.sessionId as string, rememberMs: 1000 })
    t.same(await me(app, tokens.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' }, 'a session the store no longer has is refused (no feed told this instance)')
  })

  t.test('past maxLookups in flight: 503 with Retry-After', async (t) => {
    const store = feedlessStore(memory, async (userId, sessionId) => {
      await sleep(100)
      return await memory.isLive(userId, sessionId)
    })
    const app = await buildApp(t, { store, revocationFeed: { maxLookups: 2 } })
    const users = await Promise.all(Array.from({ length: 5 }, async (_, n) => await login(app, `capped-${n}`)))
    const responses = await Promise.all(users.map(async (tokens) => await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })))
    t.same(responses.map((response) => response.statusCode), [200, 200, 503, 503, 503])
    t.equal(responses[2]?.headers['retry-after'], '1')
    t.equal(responses[2]?.json().code, 'FTS_STORE_UNAVAILABLE')
  })

  t.test('knownAlive: a session found live is not asked about again for that long', async (t) => {
    for (const knownAlive of [0, 300]) {
      let lookups = 0
      const store = feedlessStore(memory, async (userId, sessionId) => { lookups++; return await memory.isLive(userId, sessionId) })
      const app = await buildApp(t, { store, revocationFeed: { knownAlive } })
      const tokens = await login(app, `known-${knownAlive}`)
      await me(app, tokens.accessToken)
      await me(app, tokens.accessToken)
      t.equal(lookups, knownAlive === 0 ? 2 : 1, `knownAlive ${knownAlive}: ${lookups} lookups for two requests`)
      await sleep(350)
      await me(app, tokens.accessToken)
      t.equal(lookups, knownAlive === 0 ? 3 : 2, `knownAlive ${knownAlive}: asked again once it ran out`)
    }
  })

  t.test('the store unreachable: accepted without waiting, probed once a Retry-After, and asked again once it answers', async (t) => {
    let reachable = true
    let lookups = 0
    let probes = 0
    const logs = new LogCapture()
    const store = feedlessStore(memory, async (userId, sessionId) => {
      lookups++
      if (!reachable) throw new Error('connection refused')
      return await memory.isLive(userId, sessionId)
    }, async () => {
      probes++
      if (!reachable) throw new Error('connection refused')
    })
    const app = await buildApp(t, { store }, { logs })
    const tokens = await login(app, 'unreachable')
    reachable = false
    t.same(await me(app, tokens.accessToken), { statusCode: 200 }, 'accepted: nothing can be revoked without the store')
    t.same(await me(app, tokens.accessToken), { statusCode: 200 })
    t.equal(lookups, 1, 'one failed lookup, then no more while the store counts as unreachable')
    t.ok(logs.entries().some((entry) => entry.level === 40 && String(entry.msg).startsWith('session store unreachable while the revocation feed is down')), 'logged')
    await sleep(1050)
    t.same(await me(app, tokens.accessToken), { statusCode: 200 })
    await sleep(20)
    t.equal(probes, 1, 'a probe after Retry-After, not awaited by the request')
    t.equal(lookups, 1)
    t.same(await me(app, tokens.accessToken), { statusCode: 200 }, 'the probe failed: still accepted without a lookup')
    t.equal(lookups, 1)
    reachable = true
    await sleep(1050)
    await me(app, tokens.accessToken)
    await sleep(20)
    t.equal(probes, 2, 'the next probe finds the store answering')
    await me(app, tokens.accessToken)
    t.equal(lookups, 2, 'and lookups resume')
  })

  t.test('accept and reject keep their meaning; health is not ok under them while the feed is down', async (t) => {
    for (const onOutage of ['accept', 'reject'] as const) {
      let lookups = 0
      const store = feedlessStore(memory, async () => { lookups++; return false })
      const app = await buildApp(t, { store, revocationFeed: { onOutage, maxOutage: 0 } })
      const tokens = await login(app, `policy-${onOutage}`)
      await sleep(5)
      t.equal((await me(app, tokens.accessToken)).statusCode, onOutage === 'accept' ? 200 : 503, `${onOutage}`)
      t.equal(lookups, 0, `${onOutage}: the store is not asked`)
      t.equal((await app.tokenSessions.health()).ok, false, `${onOutage}: not ok`)
    }
  })
})

t.test('LiveCheck: its memory of sessions found live is bounded, and an outage is logged once', async (t) => {
  const lookups: string[] = []
  let reachable = true
  const warnings: string[] = []
  const log = { ...(silent as unknown as Record<string, unknown>), warn: (_fields: unknown, message: string) => { warnings.push(message) } } as unknown as ConstructorParameters<typeof LiveCheck>[2]
  const check = new LiveCheck({
    isLive: async (_userId, sessionId) => {
      lookups.push(sessionId)
      if (!reachable) throw new Error('down')
      return true
    },
    storeAnswers: async () => reachable
  }, { knownAliveMs: 60_000, maxLookups: 10, retryMs: 60_000, maxKnownAlive: 2 }, log)
  for (const id of ['s1', 's2', 's1', 's2']) await check.confirm('u', id)
  t.same(lookups, ['s1', 's2'], 'two sessions remembered as live')
  await check.confirm('u', 's3')
  await check.confirm('u', 's1')
  t.same(lookups, ['s1', 's2', 's3', 's1'], 'a third: the memory starts again, bounded')
  reachable = false
  check.confirm('u', 's4').catch(() => {})
  await check.confirm('u', 's5')
  await sleep(10)
  t.equal(warnings.length, 1, 'two failed lookups at once: logged once')
})
