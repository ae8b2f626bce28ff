// The heartbeat that proves the revocation feed end to end: the Heartbeat itself (proof
// after the subscription, a silent path, a failed write, a stall, a lost subscription),
// RedisStore's heartbeat settings, the heartbeat on every primary of a Cluster, and the
// Redis ACL that docs/operations.md gives for the plugin and its feed.
import { createServer, connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cluster, Redis } from 'ioredis'
import t from 'tap'
import { RedisStore } from '../lib/index.js'
import { Heartbeat, type HeartbeatTransport } from '../lib/stores/feed-heartbeat.js'
import { buildApp, login, untilUp } from './helpers/app.js'
import { section } from './helpers/docs.js'
import { me, within } from './helpers/feed.js'
import { startRedis } from './helpers/redis.mjs'
import { startCluster } from './helpers/topology.js'

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
  function transport (deliver: (beat: number) => boolean, write = true): HeartbeatTransport & { events: string[], arrivals: number[], beat?: Heartbeat } {
    const events: string[] = []
    const arrivals: number[] = []
    const result: HeartbeatTransport & { events: string[], arrivals: number[], beat?: Heartbeat } = {
      events,
      arrivals,
      send: async (beat) => {
        if (!write) throw new Error('READONLY')
        if (deliver(beat)) setTimeout(() => result.beat?.received(beat, 1_000_000 + beat), 5)
      },
      proven: () => events.push('proven'),
      alive: (at) => { arrivals.push(at) },
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
    t.ok(feed.arrivals.length >= 2 && feed.arrivals.every((at, i) => at === 1_000_000 + i), `each heartbeat in time is told with its store time, not one from before the subscription (${feed.arrivals.join(', ')})`)
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
      alive: () => {},
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
