import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { RedisStore } from '../lib/index.js'
import { startRedis } from './helpers/redis.js'
import { storeContract } from './stores/contract.js'

/** How long revocations are remembered in these tests. */
const REMEMBER = 60_000

t.test('RedisStore keeps the store contract', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  storeContract(t, async () => new RedisStore({ client }))
})

t.test('RedisStore owns a client it creates from a URL and closes it', async (t) => {
  const redis = await startRedis(t)
  const store = new RedisStore({ url: redis.url })
  await store.create({ userId: 'u', sessionId: 's', tokenHash: 'h', ttlMs: 1000, maxTtlMs: 3_600_000, client: {} })
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
  await store.create({ userId: 'u', sessionId: 's', tokenHash: 'h', ttlMs: 1000, maxTtlMs: 3_600_000, client: {} })
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
  await store.create({ userId: 'u', sessionId: 's1', tokenHash: 'a', ttlMs: 60_000, maxTtlMs: 3_600_000, client: {} })
  await store.create({ userId: 'u', sessionId: 's2', tokenHash: 'b', ttlMs: 60_000, maxTtlMs: 3_600_000, client: {} })
  t.same((await client.keys('*')).sort(), ['app:tsess:{u}:idx', 'app:tsess:{u}:s:s1', 'app:tsess:{u}:s:s2'])
  t.same((await store.revokeAll('u', { rememberMs: REMEMBER }))?.sort(), ['s1', 's2'])
  t.same(await client.keys('*'), ['app:tsess:revoked'], 'every session key went, prefix and all; the revocations stay for a while')
  t.throws(() => new RedisStore({ client: new Redis({ keyPrefix: '{x}', lazyConnect: true }) }), /keyPrefix/)
})

t.test('RedisStore accepts a Cluster client, whose options may carry no keyPrefix', async (t) => {
  const cluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true })
  t.teardown(() => cluster.disconnect())
  const store = new RedisStore({ client: cluster })
  t.equal(store.sessionKey('u', 's'), 'tsess:{u}:s:s')
  t.equal(typeof cluster.tokenSessionsRotate, 'function', 'the scripts are defined on the cluster')
})

t.test('the revocation feed connects even through a lazyConnect client', async (t) => {
  const redis = await startRedis(t)
  const lazy = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
  t.teardown(() => lazy.disconnect())
  const store = new RedisStore({ client: lazy })
  let connected = false
  const stop = await store.watchRevocations({ revoked: () => {}, connected: () => { connected = true }, disconnected: () => {} })
  t.teardown(stop)
  for (let i = 0; i < 100 && !connected; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.ok(connected, 'subscribed')
})
