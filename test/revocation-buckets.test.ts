import t from 'tap'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis } from 'ioredis'
import { RedisStore, type Revocation } from '../lib/index.js'
import { RevocationBuckets, SLOTS, STANDALONE_BUCKETS } from '../lib/stores/buckets.js'
import { startRedis } from './helpers/redis.mjs'
import { startCluster } from './helpers/topology.js'
import { reloadAll } from './stores/contract.js'

const REMEMBER = 60_000
const FIELDS = { tokenHash: 'h', ttlMs: 60_000, maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: REMEMBER }
const clusterBuckets = new RevocationBuckets('tsess:', SLOTS)
const buckets = new RevocationBuckets('tsess:', STANDALONE_BUCKETS)

/** How often each session's revocation was reloaded, by session id. */
function counts (revocations: Revocation[]): Map<string, number> {
  const seen = new Map<string, number>()
  for (const revocation of revocations) if ('sessionId' in revocation) seen.set(revocation.sessionId, (seen.get(revocation.sessionId) ?? 0) + 1)
  return seen
}

t.test('on a Cluster one bucket per hash slot, and a user\'s revocations in the bucket of the user\'s slot', async (t) => {
  t.equal(new Set(clusterBuckets.all).size, 16384, 'a bucket of its own for every slot')
  t.same(clusterBuckets.all.map((bucket) => calculateSlot(bucket)), Array.from({ length: 16384 }, (_, slot) => slot), 'in slot order')
  t.same(new RevocationBuckets('tsess:', SLOTS).all, clusterBuckets.all, 'the same in every process')
  const store = new RedisStore({ client: new Redis({ lazyConnect: true }) })
  const users = ['u1', 'alice@example.com', 'a{b}c', '{x}', '%7B', 'ünïcødé:user', ...Array.from({ length: 500 }, (_, n) => `user-${n * 7919}`)]
  const strays = users.filter((user) => calculateSlot(clusterBuckets.of(store.indexKey(user))) !== calculateSlot(store.indexKey(user)))
  t.same(strays, [], `${users.length} users, braces and all: each bucket is in its user's slot`)
  t.equal(buckets.all.length, 1024, 'on one server, 1,024 buckets')
  t.same(buckets.all, clusterBuckets.all.slice(0, 1024), 'the first slots\' buckets')
  t.ok(users.every((user) => buckets.of(store.indexKey(user)) === buckets.all[calculateSlot(store.indexKey(user)) % 1024]), 'a user\'s by the user\'s slot')
})

t.test('standalone Redis', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  t.teardown(() => client.quit())
  const store = new RedisStore({ client })

  t.test('a bucket larger than a page is read whole, once, whatever scores its entries share', async (t) => {
    const bucket = buckets.of(store.indexKey('paged'))
    const later = Date.now() + 600_000
    const members: Array<string | number> = []
    // 400 scores of their own, 1,300 sharing one (across the first page's end), 100 more,
    // then 2,100 sharing another (more than two pages of one score), then 50.
    for (let n = 0; n < 400; n++) members.push(later + n, `a${n}`)
    for (let n = 0; n < 1300; n++) members.push(later + 500, `b${n}`)
    for (let n = 0; n < 100; n++) members.push(later + 600 + n, `c${n}`)
    for (let n = 0; n < 2100; n++) members.push(later + 800, `d${n}`)
    for (let n = 0; n < 50; n++) members.push(later + 900 + n, `e${n}`)
    // And 700 users' stamps sharing a score (a bucket holds one per user).
    for (let n = 0; n < 700; n++) members.push(later + 1000, `u:${later - 1000}::user ${n}`)
    await client.zadd(bucket, ...members)
    const reloaded = await reloadAll(store.revocationFeed)
    const seen = counts(reloaded)
    t.equal(seen.size, 3950, 'every entry')
    t.same([...seen.values()].filter((count) => count !== 1), [], 'none twice')
    const stamps = reloaded.flatMap((r) => 'userId' in r && r.userId.startsWith('user ') ? [r.userId] : [])
    t.equal(stamps.length, 700, 'every stamp, once')
    t.equal(new Set(stamps).size, 700)
    t.equal((await reloadAll(store.revocationFeed)).find((r) => 'sessionId' in r && r.sessionId === 'd7')?.until, later + 800, 'with its score')
    await client.del(bucket)
  })

  t.test('an entry that goes while its bucket is being read makes the reload skip no other', async (t) => {
    const bucket = buckets.of(store.indexKey('shifting'))
    const later = Date.now() + 600_000
    const members: Array<string | number> = []
    for (let n = 0; n < 400; n++) members.push(later + n, `a${n}`)
    for (let n = 0; n < 300; n++) members.push(later + 500, `b${String(n).padStart(3, '0')}`)
    await client.zadd(bucket, ...members)
    // Between the first page (400 + 100 of the 300 sharing a score) and the next read,
    // one entry already read goes, as a replaced stamp does.
    // (The client's own method is also what its pipelines call, with the pipeline as this.)
    type Read = (this: unknown, ...args: unknown[]) => unknown
    const reader = client as unknown as { tokenSessionsRevocationsBuffer: Read }
    const read = reader.tokenSessionsRevocationsBuffer
    let removed = false
    reader.tokenSessionsRevocationsBuffer = function (this: unknown, ...args: unknown[]) {
      if (this !== client || removed) return read.apply(this, args)
      removed = true
      return client.zrem(bucket, 'b000').then(() => read.apply(this, args))
    }
    t.teardown(() => { reader.tokenSessionsRevocationsBuffer = read })
    const seen = counts(await reloadAll(store.revocationFeed))
    t.ok(removed, 'it went after the first page')
    t.same(members.filter((_, i) => i % 2 === 1).filter((id) => seen.get(id as string) !== 1), [], 'every entry once, the one that went included (read before it went)')
    await client.del(bucket)
  })

  t.test('a write forgets at most a hundred expired entries of its bucket, never a live one', async (t) => {
    const user = 'forgetful'
    const bucket = buckets.of(store.indexKey(user))
    const past = Date.now() - 1000
    await client.zadd(bucket, ...Array.from({ length: 250 }, (_, n) => [past - n, `old${n}`]).flat())
    await client.zadd(bucket, Date.now() + 600_000, 'live-one')
    const sizes: number[] = []
    for (let n = 0; n < 4; n++) {
      await store.create({ userId: user, sessionId: `s${n}`, ...FIELDS })
      await store.revoke({ userId: user, sessionId: `s${n}`, rememberMs: REMEMBER })
      sizes.push(await client.zcard(bucket))
    }
    t.same(sizes, [152, 53, 4, 5], '250 expired: 100, 100, then the last 50 go; each revocation stays')
    t.equal(await client.zscore(bucket, 'live-one') !== null, true, 'the live entry stays')
    const pttl = await client.pttl(bucket)
    t.ok(pttl > REMEMBER - 1000 && pttl <= REMEMBER, `the bucket lives as long as its newest revocation (${pttl} ms)`)
  })

  t.test('a bucket that cannot be read fails the reload whole, rather than loading part of it', async (t) => {
    const bucket = buckets.all[7] as string
    await client.set(bucket, 'not a sorted set')
    await t.rejects(reloadAll(store.revocationFeed), /WRONGTYPE/)
    await client.del(bucket)
    t.resolves(reloadAll(store.revocationFeed), 'readable again')
  })

  t.test('sessions the cap ends at once are one announcement, each id in it heard', async (t) => {
    const heard: Revocation[] = []
    const stop = await store.revocationFeed.watch({ revoked: (revocations) => heard.push(...revocations), connected: () => {}, disconnected: () => {} })
    t.teardown(stop)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const ids = ['capped-aaaaaaaaaaaaaaaa', 'capped-bbbbbbbbbbbbbbbb', 'capped-cccccccccccccccc']
    for (const sessionId of ids) await store.create({ userId: 'capped', sessionId, ...FIELDS })
    const published: string[] = []
    const monitor = redis.client()
    t.teardown(() => monitor.quit())
    await monitor.subscribe('tsess:revoked')
    monitor.on('message', (_channel: string, message: string) => published.push(message))
    await store.create({ userId: 'capped', sessionId: 'capped-new', ...FIELDS, maxSessions: 1 })
    for (let n = 0; n < 100 && heard.length < 3; n++) await new Promise((resolve) => setTimeout(resolve, 10))
    t.equal(published.length, 1, 'one message')
    t.equal(published[0]?.split(' ').length, 4, 'an until and three ids')
    t.same(heard.map((r) => 'sessionId' in r ? r.sessionId : '').sort(), ids, 'each id heard')
  })

  t.test('revocations of many users, a stamp among them, reload from their buckets', async (t) => {
    const users = Array.from({ length: 300 }, (_, n) => `many-${n}`)
    await Promise.all(users.map(async (user) => {
      await store.create({ userId: user, sessionId: `${user}-s`, ...FIELDS })
      await store.revoke({ userId: user, sessionId: `${user}-s`, rememberMs: REMEMBER })
    }))
    await store.revokeAll('ünïcødé:stamped', { rememberMs: REMEMBER })
    const reloaded = await reloadAll(store.revocationFeed)
    const seen = counts(reloaded)
    t.same(users.filter((user) => seen.get(`${user}-s`) !== 1), [], 'each once')
    t.ok(reloaded.some((r) => 'userId' in r && r.userId === 'ünïcødé:stamped'), 'the stamp, its user id whole')
  })
})

t.test('a 3-primary Cluster: the scripts write the bucket of the user\'s slot, and a reload reads every primary', async (t) => {
  const nodes = await startCluster(t)
  const client = new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), { redisOptions: { commandTimeout: 1000 } })
  t.teardown(() => client.quit())
  const store = new RedisStore({ client })
  const users = Array.from({ length: 300 }, (_, n) => `cluster-many-${n}`)
  // Each revocation is one script touching the session, the index and the bucket: on a
  // Cluster it runs only if all three are in one slot (else CROSSSLOT), so the session's
  // end and its revocation are written together or not at all.
  await Promise.all(users.map(async (user) => {
    await store.create({ userId: user, sessionId: `${user}-s`, ...FIELDS })
    t.equal(await store.revoke({ userId: user, sessionId: `${user}-s`, rememberMs: REMEMBER }), 'revoked')
  }))
  await store.revokeAll('cluster-stamped', { rememberMs: REMEMBER })
  for (const user of users.slice(0, 20)) {
    t.equal(await client.call('CLUSTER', 'KEYSLOT', clusterBuckets.of(store.indexKey(user))), await client.call('CLUSTER', 'KEYSLOT', store.indexKey(user)), `${user}: Redis puts the bucket in the user's slot`)
  }
  const primaries = new Set(await Promise.all(users.map(async (user) => {
    const slot = calculateSlot(store.indexKey(user))
    return client.slots[slot]?.[0]
  })))
  t.equal(primaries.size, 3, 'the users are spread over the three primaries')
  const seen = counts(await reloadAll(store.revocationFeed))
  t.same(users.filter((user) => seen.get(`${user}-s`) !== 1), [], 'a reload finds each revocation once')
  t.ok((await reloadAll(store.revocationFeed)).some((r) => 'userId' in r && r.userId === 'cluster-stamped'), 'and the stamp')
})
