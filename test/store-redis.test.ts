import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { RedisStore } from '../lib/index.js'
import { RevocationBuckets, STANDALONE_BUCKETS } from '../lib/stores/buckets.js'
import { startRedis } from './helpers/redis.mjs'
import { storeContract } from './stores/contract.js'

/** How long revocations are remembered in these tests. */
const REMEMBER = 60_000
/** What a session needs beside its ids and token hash. */
const FIELDS = { maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER }

/** How often each command ran so far, scripts' own calls included (INFO commandstats). */
async function commandCounts (client: Redis): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (const match of (await client.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) counts.set(match[1] as string, Number(match[2]))
  return counts
}

/** The commands `operation` made Redis run (scripts' calls included), by name. */
async function commandsOf (client: Redis, operation: () => Promise<unknown>): Promise<Record<string, number>> {
  const before = await commandCounts(client)
  await operation()
  const after = await commandCounts(client)
  const ran: Record<string, number> = {}
  for (const [name, calls] of after) {
    const delta = calls - (before.get(name) ?? 0)
    if (delta > 0 && name !== 'info') ran[name] = delta
  }
  return ran
}

t.test('RedisStore keeps the store contract', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  storeContract(t, async () => new RedisStore({ client }))
})

t.test('RedisStore owns a client it creates from a URL and closes it', async (t) => {
  const redis = await startRedis(t)
  const store = new RedisStore({ url: redis.url })
  await store.create({ userId: 'u', sessionId: 's', tokenHash: 'h', ttlMs: 1000, ...FIELDS })
  await store.close()
  t.equal(store.client.status, 'end')
})

t.test('RedisStore leaves a client it was given open', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  const store = new RedisStore({ client })
  await store.close()
  t.equal(await client.ping(), 'PONG')
})

t.test('RedisStore rejects a key prefix that would break the hash tag', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  t.throws(() => new RedisStore({ client, keyPrefix: 'a{b' }), /keyPrefix/)
})

t.test('RedisStore closes its own client even when Redis is gone', async (t) => {
  const redis = await startRedis(t)
  const errors: Error[] = []
  const store = new RedisStore({ url: redis.url, commandTimeout: 200, onClientError: (error) => errors.push(error) })
  await store.create({ userId: 'u', sessionId: 's', tokenHash: 'h', ttlMs: 1000, ...FIELDS })
  await redis.stop()
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok(errors.length > 0, 'connection errors reach the handler instead of stderr')
  await store.close()
  const seen = errors.length
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(errors.length, seen, 'no reconnect attempts after close')
})

t.test('RedisStore works through a client that has its own keyPrefix', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  const prefixed = new Redis(redis.port, '127.0.0.1', { keyPrefix: 'app:' })
  t.teardown(async () => { await client.quit(); await prefixed.quit() })
  const store = new RedisStore({ client: prefixed })
  await store.create({ userId: 'u', sessionId: 's1', tokenHash: 'a', ttlMs: 60_000, ...FIELDS })
  await store.create({ userId: 'u', sessionId: 's2', tokenHash: 'b', ttlMs: 60_000, ...FIELDS })
  const bucket = 'app:' + new RevocationBuckets('tsess:', STANDALONE_BUCKETS).of('tsess:{u}')
  t.same((await client.keys('*')).sort(), ['app:tsess:{u}:idx', 'app:tsess:{u}:s:s1', 'app:tsess:{u}:s:s2'])
  t.same((await store.list('u', { limit: 10 })).sessions.map((s) => s.sessionId), ['s2', 's1'])
  t.equal(await store.revoke({ userId: 'u', sessionId: 's1', rememberMs: REMEMBER }), 'revoked')
  t.same((await client.keys('*')).sort(), [bucket, 'app:tsess:{u}:idx', 'app:tsess:{u}:s:s2'].sort(), 'the session key went, prefix and all')
  t.equal((await store.revokeAll('u', { rememberMs: REMEMBER })).status, 'revoked')
  t.same((await client.keys('*')).sort(), [bucket, 'app:tsess:{u}:s:s2', 'app:tsess:{u}:st'].sort(),
    'the index went at once; the stamp and the revocations stay for a while, the session hash until its ttl')
  t.equal((await store.rotate({ userId: 'u', sessionId: 's2', presentedHash: 'b', successorHash: 'c', ttlMs: 60_000, maxTtlMs: 3_600_000, graceMs: 0, rememberMs: REMEMBER })).status, 'missing')
  t.same((await client.keys('*')).sort(), [bucket, 'app:tsess:{u}:st'].sort(), 'a stale session hash is swept when it is presented')
  t.equal(await store.rememberProof('jkt', 'p1', 60_000), true)
  t.equal(await client.exists('app:tsess:{jkt}:dpop:p1'), 1, 'a proof id, under both prefixes')
  t.equal(await store.rememberProof('jkt', 'p1', 60_000), false)
  t.throws(() => new RedisStore({ client: new Redis({ keyPrefix: '{x}', lazyConnect: true }) }), /keyPrefix/)
})

t.test('RedisStore accepts a Cluster client, whose options may carry no keyPrefix', async (t) => {
  const cluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true })
  t.teardown(() => cluster.disconnect())
  const store = new RedisStore({ client: cluster })
  t.equal(store.sessionKey('u', 's'), 'tsess:{u}:s:s')
  t.equal(typeof (cluster as unknown as Record<string, unknown>).tokenSessionsRotate, 'function', 'the scripts are defined on the cluster')
})

t.test('the revocation feed connects even through a lazyConnect client', async (t) => {
  const redis = await startRedis(t)
  const lazy = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
  t.teardown(() => lazy.disconnect())
  const store = new RedisStore({ client: lazy })
  const feed = { connected: false }
  const stop = await store.revocationFeed.watch({ revoked: () => {}, connected: () => { feed.connected = true }, disconnected: () => {} })
  t.teardown(stop)
  for (let i = 0; i < 100 && !feed.connected; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.ok(feed.connected, 'subscribed')
})

t.test('no script walks all of a user\'s sessions: listing, logout-all and the cap stay bounded with 3,000 of them', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  const store = new RedisStore({ client })
  const many = { ...FIELDS, maxSessions: 10_000 }
  for (let n = 0; n < 3000; n += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, i) => store.create({ userId: 'big', sessionId: `s${n + i}`, tokenHash: 'h', ttlMs: 60_000, ...many })))
  }
  const listing = await commandsOf(client, async () => await store.list('big', { limit: 100 }))
  t.ok((listing.hmget ?? 0) <= 100 && (listing.pttl ?? 0) <= 100, `a page reads at most its size: ${JSON.stringify(listing)}`)
  const capped = await commandsOf(client, async () => await store.create({ userId: 'big', sessionId: 'newest', tokenHash: 'h', ttlMs: 60_000, ...FIELDS }))
  t.ok((capped.del ?? 0) <= 100, `a login over a lowered cap ends at most a hundred: ${JSON.stringify(capped)}`)
  const revokeAll = await commandsOf(client, async () => await store.revokeAll('big', { rememberMs: REMEMBER }))
  t.same(Object.keys(revokeAll).filter((name) => ['del', 'zrem', 'hmget', 'exists'].includes(name)), [], `logout-all touches no session one by one: ${JSON.stringify(revokeAll)}`)
  t.equal(revokeAll.unlink, 1)
  t.same(await store.list('big', { limit: 100 }), { sessions: [] })
})

t.test('a spared session keeps its place and life in the new index', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  const store = new RedisStore({ client })
  await store.create({ userId: 'u', sessionId: 'keep', tokenHash: 'k', ttlMs: 30_000, ...FIELDS })
  await store.create({ userId: 'u', sessionId: 'drop', tokenHash: 'd', ttlMs: 60_000, ...FIELDS })
  const before = (await store.list('u', { limit: 10 })).sessions.find((s) => s.sessionId === 'keep')
  await store.revokeAll('u', { rememberMs: REMEMBER, except: 'keep' })
  const after = (await store.list('u', { limit: 10 })).sessions
  t.same(after.map((s) => s.sessionId), ['keep'])
  t.equal(after[0]?.createdAt, before?.createdAt, 'the same start')
  const ttl = await client.pttl(store.indexKey('u'))
  t.ok(ttl > 25_000 && ttl <= 30_000, 'the index lives as long as the spared session')
})

t.test('closing a store whose server dies before it answers QUIT still closes it, without an error', async (t) => {
  const redis = await startRedis(t)
  const admin = redis.client()
  const store = new RedisStore({ url: redis.url })
  await (store.client as Redis).ping()
  await admin.call('CLIENT', 'PAUSE', '5000', 'ALL')
  admin.disconnect()
  const closing = store.close()
  await new Promise((resolve) => setTimeout(resolve, 50))
  await redis.stop()
  await t.resolves(closing, 'close resolves')
  t.equal(store.client.status, 'end')
})
