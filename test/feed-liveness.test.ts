// The revocation feed proven end to end by heartbeats, the check-store outage policy, and no store work for sessions known to be over.
import t from 'tap'
import { createServer, connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { MemoryStore, RedisStore, type RevocationFeed, type RevocationListener, type SessionStore } from '../lib/index.js'
import { StoreClock } from '../lib/clock.js'
import { LiveCheck } from '../lib/live-check.js'
import { RevocationList } from '../lib/revocations.js'
import { Heartbeat, type HeartbeatTransport } from '../lib/stores/feed-heartbeat.js'
import { buildApp, LogCapture, login, untilUp } from './helpers/app.js'
import { section } from './helpers/docs.js'
import { startRedis } from './helpers/redis.mjs'
import { SilencingRelay } from './helpers/relay.js'
import { startCluster } from './helpers/topology.js'
import { Cluster, Redis } from 'ioredis'

async function me (app: FastifyInstance, accessToken: string): Promise<{ statusCode: number, code?: string }> {
  const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
  return response.statusCode === 200 ? { statusCode: 200 } : { statusCode: response.statusCode, code: response.json().code }
}

async function logout (app: FastifyInstance, refreshToken: string): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken } })).statusCode
}

/** Polls `check` every 20 ms until it holds; resolves to the ms it took, or undefined after `timeoutMs`. */
async function within (timeoutMs: number, check: () => Promise<boolean>): Promise<number | undefined> {
  const start = performance.now()
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start
    await sleep(20)
  }
  return undefined
}

const silent = { level: 'silent' } as unknown as ConstructorParameters<typeof StoreClock>[1]
for (const level of ['info', 'warn', 'error', 'debug', 'trace', 'fatal', 'child']) (silent as unknown as Record<string, unknown>)[level] = level === 'child' ? () => silent : () => {}

t.test('a subscriber path that goes silent (no FIN, no RST) is found out within the heartbeat\'s bound', async (t) => {
  const redis = await startRedis(t)
  const relay = await SilencingRelay.start(t, redis.port)
  const logs = new LogCapture()
  const b = await buildApp(t, { redis: redis.url })
  const c = await buildApp(t, { redis: relay.url }, { logs })
  t.ok(await untilUp(c, 'revocationFeed'), 'C\'s feed is up through the relay')
  const sessions = await Promise.all(Array.from({ length: 5 }, async (_, n) => await login(b, `silent-${n}`)))
  for (const session of sessions) t.same(await me(c, session.accessToken), { statusCode: 200 })

  relay.silence()
  const silencedAt = performance.now()
  for (const session of sessions) t.equal(await logout(b, session.refreshToken), 204)
  const refused = await within(3000, async () => {
    const answers = await Promise.all(sessions.map(async (session) => await me(c, session.accessToken)))
    return answers.every((answer) => answer.code === 'FTS_SESSION_REVOKED')
  })
  t.ok(refused !== undefined, `every revoked token refused on C within 3 s of the path going silent (${((performance.now() - silencedAt) / 1000).toFixed(2)} s)`)
  const health = await c.tokenSessions.health()
  t.equal(health.revocationFeed, 'down', 'and C reports its feed down')
  t.ok(performance.now() - silencedAt < 3000 + 500, 'within the same bound')
  t.equal(health.ok, true, 'yet C is ready: under check-store it serves correctly through the store')
  t.ok(logs.entries().some((entry) => entry.msg === 'revocation feed down: revocations on other instances may be missed'), 'and logs it')
  const live = await login(b, 'silent-live')
  t.same(await me(c, live.accessToken), { statusCode: 200 }, 'a live session still works on C meanwhile')

  relay.restore()
  t.ok(await untilUp(c, 'revocationFeed', 10_000), 'with the path restored, C\'s feed is up again after its reload')
  for (const session of sessions) t.same(await me(c, session.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' }, 'and the revocations are in its list')
  const after = await login(b, 'silent-after')
  t.equal(await logout(b, after.refreshToken), 204)
  t.ok(await within(1000, async () => (await me(c, after.accessToken)).statusCode === 401), 'and it hears new revocations again')
})

t.test('a store that refuses writes (a primary cut off from its replicas) leaves the feed unproven', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url })
  t.ok(await untilUp(app, 'revocationFeed'))
  // What an old primary does once it has lost its replicas: it refuses every write.
  await inspect.config('SET', 'min-replicas-to-write', '1')
  const down = await within(3000, async () => (await app.tokenSessions.health()).revocationFeed === 'down')
  t.ok(down !== undefined, `the feed counts as down within 3 s (${down?.toFixed(0)} ms): its heartbeat is a write`)
  await inspect.config('SET', 'min-replicas-to-write', '0')
  t.ok(await untilUp(app, 'revocationFeed'), 'and up again once writes succeed, on the same subscription')
})

t.test('CLIENT KILL TYPE pubsub, then a logout on another instance at once: no instance accepts the token (20 trials)', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const a = await buildApp(t, { redis: redis.url })
  const b = await buildApp(t, { redis: redis.url })
  let accepted = 0
  let answers = 0
  for (let trial = 0; trial < 20; trial++) {
    t.ok(await untilUp(a, 'revocationFeed') && await untilUp(b, 'revocationFeed'), `trial ${trial}: both feeds up`)
    const tokens = await login(a, `killed-${trial}`)
    await inspect.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    await logout(b, tokens.refreshToken)
    // Until both feeds are back, and once more after.
    for (let round = 0; round < 500; round++) {
      const up = (await a.tokenSessions.health()).revocationFeed === 'up' && (await b.tokenSessions.health()).revocationFeed === 'up'
      for (const app of [a, b]) {
        answers++
        if ((await me(app, tokens.accessToken)).statusCode === 200) accepted++
      }
      if (up) break
    }
  }
  t.equal(accepted, 0, `no acceptance anywhere (${answers} requests while the feeds reconnected)`)
})

t.test('access tokens keep working while Redis is down (store and feed), and revocation works after', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 300 })
  const tokens = await login(app, 'down-user')
  await redis.stop()
  const statuses: number[] = []
  const slowest = { ms: 0 }
  for (let n = 0; n < 30; n++) {
    const start = performance.now()
    statuses.push((await me(app, tokens.accessToken)).statusCode)
    if (n > 0) slowest.ms = Math.max(slowest.ms, performance.now() - start)
    await sleep(50)
  }
  t.same(new Set(statuses), new Set([200]), 'every request answered 200 while Redis was down')
  t.ok(slowest.ms < 300, `only the first waited for the store's timeout (the slowest after it took ${slowest.ms.toFixed(0)} ms)`)
  t.equal((await app.tokenSessions.health()).ok, false, 'health says the store is down')
  await redis.start()
  t.ok(await untilUp(app, 'revocationFeed'), 'the feed comes back')
  // The restarted Redis kept nothing (no persistence here): a session of its own.
  const after = await login(app, 'down-user')
  t.equal(await logout(app, after.refreshToken), 204)
  t.same(await me(app, after.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' })
})

t.test('an event-loop stall of the instance is not an outage', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url }, { logs })
  t.ok(await untilUp(app, 'revocationFeed'))
  await sleep(600)
  // Blocks this thread for 3 s, from a timer as a long task would: every heartbeat on its
  // way is overdue when it wakes, and its timer is due before its message is read.
  for (let stall = 0; stall < 3; stall++) {
    await new Promise<void>((resolve) => setTimeout(() => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500)
      resolve()
    }, 100 + stall * 170))
  }
  await sleep(300)
  t.notOk(logs.entries().some((entry) => entry.msg === 'revocation feed down: revocations on other instances may be missed'), 'the feed never went down')
  t.equal((await app.tokenSessions.health()).revocationFeed, 'up')
})

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

t.test('RedisStore refuses a heartbeat setting out of range', async (t) => {
  for (const [option, value] of [['heartbeatInterval', 5], ['heartbeatTimeout', 60_001], ['heartbeatInterval', 1.5]] as const) {
    t.throws(() => new RedisStore({ url: 'redis://127.0.0.1:1', [option]: value }), { code: 'FTS_INVALID_OPTION', message: new RegExp(option) }, `${option}: ${value}`)
  }
})

t.test('RedisStore\'s heartbeat settings are the ones it beats with', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const beats: number[] = []
  const listener = redis.client()
  t.teardown(() => listener.quit())
  await listener.psubscribe('tsess:heartbeat:*')
  listener.on('pmessage', () => beats.push(performance.now()))
  const store = new RedisStore({ url: redis.url, heartbeatInterval: 20, heartbeatTimeout: 4321 })
  t.teardown(async () => await store.close())
  const app = await buildApp(t, { store })
  t.ok(await untilUp(app, 'revocationFeed'))
  const [key] = (await inspect.scan('0', 'MATCH', '*heartbeat*', 'COUNT', 1000))[1]
  const ttl = await inspect.pttl(key ?? '')
  t.ok(ttl > 1000 && ttl <= 4321, `the heartbeat key lives heartbeatTimeout, not the default (${ttl} ms)`)
  const from = beats.length
  await sleep(1000)
  // The default interval (500 ms) would send 2 or 3 in this second; 20 ms sends some 50.
  t.ok(beats.length - from >= 10, `a heartbeat every heartbeatInterval (${beats.length - from} in 1 s)`)
})

t.test('the heartbeat', async (t) => {
  /** A transport whose heartbeats arrive, or not, as the test says. */
  function transport (deliver: (beat: number) => boolean, write = true): HeartbeatTransport & { events: string[], beat?: Heartbeat } {
    const events: string[] = []
    const result: HeartbeatTransport & { events: string[], beat?: Heartbeat } = {
      events,
      send: async (beat) => {
        if (!write) throw new Error('READONLY')
        if (deliver(beat)) setTimeout(() => result.beat?.received(beat, 1_000_000 + beat), 5)
      },
      proven: () => events.push('proven'),
      late: (since, silent) => events.push(`late since ${since} ${silent ? 'silent' : 'write failed'}`)
    }
    return result
  }

  t.test('proves the feed with a heartbeat sent after the subscription, and finds a silent path within interval and timeout', async (t) => {
    let delivering = true
    const feed = transport(() => delivering)
    const heartbeat = feed.beat = new Heartbeat(feed, () => 50, 100)
    t.teardown(() => heartbeat.stop())
    heartbeat.received(0, 1)
    t.same(feed.events, [], 'nothing proven before the subscription')
    heartbeat.subscribed()
    await sleep(30)
    t.same(feed.events, ['proven'])
    t.equal(heartbeat.proven, true)
    await sleep(120)
    delivering = false
    const silentAt = performance.now()
    while (feed.events.length < 2 && performance.now() - silentAt < 1000) await sleep(5)
    t.ok(performance.now() - silentAt <= 50 + 100 + 40, `late within the interval and the timeout (${(performance.now() - silentAt).toFixed(0)} ms)`)
    t.match(feed.events[1], /^late since 10000\d\d? silent$/, 'silent, and since the last proof')
    t.equal(heartbeat.proven, false)
    await sleep(300)
    t.equal(feed.events.length, 2, 'a silent path stops the heartbeats until the next subscription')
  })

  t.test('a heartbeat whose write fails is late but not silent, and the next one that arrives proves the feed again', async (t) => {
    const feed = transport(() => true, false)
    const heartbeat = feed.beat = new Heartbeat(feed, () => 40, 60)
    t.teardown(() => heartbeat.stop())
    heartbeat.subscribed()
    await sleep(90)
    t.same(feed.events.slice(0, 1), ['late since undefined write failed'])
    heartbeat.stop()
  })

  t.test('a stall between a heartbeat\'s write and its arrival is not a late heartbeat', async (t) => {
    // The heartbeat travels over a real loopback socket, as the subscriber's messages do;
    // right after the write this thread stalls past the timeout, so when it wakes the
    // heartbeat's deadline is due and its message waits, unread, in the socket.
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => server.close())
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
    const writer = connect((server.address() as { port: number }).port, '127.0.0.1')
    await new Promise((resolve) => writer.once('connect', resolve))
    const reader = await accepted
    t.teardown(() => { writer.destroy(); reader.destroy() })
    const events: string[] = []
    let stalls = 0
    const heartbeat = new Heartbeat({
      send: async (beat) => {
        writer.write(`${beat}\n`)
        if (stalls++ < 2) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300)
      },
      proven: () => events.push('proven'),
      late: () => events.push('late')
    }, () => 150, 100)
    t.teardown(() => heartbeat.stop())
    reader.on('data', (chunk: Buffer) => {
      for (const beat of chunk.toString().split('\n').filter(Boolean)) heartbeat.received(Number(beat), Date.now())
    })
    heartbeat.subscribed()
    await sleep(600)
    t.same(events, ['proven'], 'proven, and never late')
  })

  t.test('a subscription lost stops the heartbeats; one still on its way proves nothing', async (t) => {
    const feed = transport(() => true)
    const heartbeat = feed.beat = new Heartbeat(feed, () => 1000, 100)
    heartbeat.subscribed()
    heartbeat.unsubscribed()
    await sleep(150)
    t.same(feed.events, [])
    t.equal(heartbeat.since, undefined)
  })
})

t.test('after a short outage the list reloads only what it may have missed', async (t) => {
  const froms: Array<number | undefined> = []
  const listeners: RevocationListener[] = []
  const feed: RevocationFeed = {
    watch: async (listener) => { listeners.push(listener); return async () => {} },
    revocations: async (from?: number) => { froms.push(from); return [] }
  }
  const list = new RevocationList(feed, new StoreClock(async () => Date.now(), silent), { maxOutageMs: 0, onOutage: 'check-store', rememberMs: 60_000 }, silent)
  const started = list.start(1000)
  listeners[0]?.connected()
  await started
  t.same(froms, [undefined], 'the first load reads everything')
  listeners[0]?.disconnected(1_000_000)
  listeners[0]?.disconnected(1_500_000)
  t.equal(list.checkFeed(), true, 'down: the store is asked')
  listeners[0]?.connected()
  await sleep(20)
  t.same(froms, [undefined, 1_000_000 + 60_000 - 5000], 'from the first miss on, less the clock tolerance')
  t.equal(list.checkFeed(), false, 'up again')
  listeners[0]?.disconnected()
  listeners[0]?.connected()
  await sleep(20)
  t.same(froms.at(-1), undefined, 'a feed that cannot say since when: everything')
  await list.close()
})

/** The ACL rules docs/operations.md gives for the plugin's user: its code spans' words. */
function documentedAcl (): string[] {
  const rules = [...section('docs/operations.md', 'Redis ACL').matchAll(/`([^`]+)`/g)].flatMap((match) => (match[1] as string).split(/\s+/))
  return [...new Set(rules.filter((rule) => /^[~&+]/.test(rule)))]
}

t.test('the Redis ACL docs/operations.md states is enough for the plugin and its feed', async (t) => {
  const acl = documentedAcl()
  t.same(acl, ['~tsess:*', '&tsess:revoked', '&tsess:heartbeat:*', '+@read', '+@write', '+@pubsub', '+@scripting', '+@connection', '+time', '+wait', '+info'],
    'the rules, as the page gives them')
  const redis = await startRedis(t)
  const admin = redis.client()
  t.teardown(() => admin.quit())
  // `+wait` is only for waitForReplicas, which this test does not use: the rest must do.
  await admin.call('ACL', 'SETUSER', 'sessions', 'on', '>pw', 'resetkeys', 'resetchannels', '-@all', ...acl.filter((rule) => rule !== '+wait'))
  const url = `redis://sessions:pw@127.0.0.1:${redis.port}`
  const a = await buildApp(t, { redis: url })
  const b = await buildApp(t, { redis: url })
  t.ok(await untilUp(a, 'revocationFeed') && await untilUp(b, 'revocationFeed'), 'both feeds are proven by their heartbeats')
  const tokens = await login(a, 'acl-user')
  t.equal((await a.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: tokens.refreshToken } })).statusCode, 200)
  const again = await login(a, 'acl-user')
  t.equal((await a.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${again.accessToken}` } })).statusCode, 204)
  t.ok(await within(1000, async () => (await me(b, again.accessToken)).statusCode === 401), 'a revocation reaches the other instance')
  t.equal((await b.tokenSessions.health()).ok, true)
})

t.test('on a Cluster the heartbeat takes every primary in turn', async (t) => {
  const nodes = await startCluster(t)
  const client = new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), { redisOptions: { commandTimeout: 1000 } })
  t.teardown(() => client.quit())
  const app = await buildApp(t, { store: new RedisStore({ client }) })
  t.ok(await untilUp(app, 'revocationFeed'))
  for (const node of nodes) {
    const direct = new Redis(node.port, '127.0.0.1')
    const found = await within(3000, async () => (await direct.scan('0', 'MATCH', '*:heartbeat', 'COUNT', 1000))[1].length > 0)
    t.ok(found !== undefined, `primary on port ${node.port} took a heartbeat`)
    await direct.quit()
  }
})
