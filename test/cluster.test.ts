import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { RedisStore, type RevocationListener } from '../lib/index.js'
import { RevocationBuckets, SLOTS } from '../lib/stores/buckets.js'
import { buildApp, login, refresh, untilUp } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startCluster } from './helpers/topology.js'
import { storeContract } from './stores/contract.js'

/** How long a revocation is remembered by default: the access tokens' lifetime (900 s) and the 30 s margin. */
const REMEMBER_MS = 930_000

t.test('Redis Cluster (three primaries)', async (t) => {
  const nodes = await startCluster(t)
  const cluster = (): Cluster => new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), { redisOptions: { commandTimeout: 1000 } })
  const client = cluster()
  t.teardown(() => client.quit())

  t.test('the store contract holds on a Cluster', async (t) => {
    storeContract(t, async () => new RedisStore({ client }))
  })

  t.test('rotation races, reuse and instant revocation, with no CROSSSLOT error', async (t) => {
    const otherClient = cluster()
    t.teardown(() => otherClient.quit())
    const a = await buildApp(t, { redis: client })
    const b = await buildApp(t, { redis: otherClient })
    const users = Array.from({ length: 12 }, (_, i) => `cluster-user-${i}`)
    for (const user of users) {
      const first = await login(a, user)
      const responses = await Promise.all(Array.from({ length: 20 }, async () => await refresh(b, first.refreshToken)))
      t.same(new Set(responses.map((r) => r.statusCode)), new Set([200]), `${user}: 20 racing refreshes succeed`)
      t.equal(new Set(responses.map((r) => payloadOf(r.json().refreshToken).jti)).size, 1, `${user}: one chain`)
    }
    const slots = new Set(await Promise.all(users.map(async (user) => await client.call('CLUSTER', 'KEYSLOT', `tsess:{${user}}:idx`))))
    t.ok(slots.size > 1, `the users' keys spread over ${slots.size} slots`)
    const victim = await login(a, 'cluster-victim')
    t.equal((await b.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${victim.accessToken}` } })).statusCode, 200)
    await a.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${victim.accessToken}` } })
    let status = 200
    for (let i = 0; i < 200 && status === 200; i++) {
      status = (await b.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${victim.accessToken}` } })).statusCode
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 5))
    }
    t.equal(status, 401, 'the other instance sees the revocation through the Cluster\'s pub/sub')
    const late = await buildApp(t, { redis: cluster() })
    t.ok(await untilUp(late, 'revocationFeed'), 'the late instance\'s revocation list loads (its health says so)')
    t.equal((await late.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${victim.accessToken}` } })).statusCode, 401,
      'an instance started later loads the revocation from every primary')
    await late.tokenSessions.store.close()
    ;(late.tokenSessions.store as RedisStore).client.disconnect()
  })

  t.test('when the revocation feed\'s connection moves to another node, the list is reloaded', async (t) => {
    const app = await buildApp(t, { redis: client })
    const victim = await login(app, 'cluster-feed-victim')
    const me = async (): Promise<number> =>
      (await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${victim.accessToken}` } })).statusCode
    t.equal(await me(), 200)
    // A revocation whose announcement this instance missed: in the bucket of the user's slot, never published.
    await client.zadd(new RevocationBuckets('tsess:', SLOTS).of('tsess:{cluster-feed-victim}'), Date.now() + REMEMBER_MS, payloadOf(victim.accessToken).sid as string)
    t.equal(await me(), 200, 'a revocation not announced is not known yet')
    // Drop every subscribed connection: the feed must move (to the next node) and reload.
    for (const node of nodes) {
      const admin = new Redis(node.port, '127.0.0.1')
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
      admin.disconnect()
    }
    let status = 200
    for (let i = 0; i < 200 && status === 200; i++) {
      status = await me()
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 10))
    }
    t.equal(status, 401, 'the reload after the move found the revocation')
  })

  t.test('the feed waits for a Cluster client that knows no node yet, and can stop before it does', async (t) => {
    const listener = (connected: () => void): RevocationListener => ({ revoked: () => {}, connected, disconnected: () => {} })
    const lazy = new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), { lazyConnect: true })
    t.teardown(() => lazy.disconnect())
    let up = (): void => {}
    const connected = new Promise<void>((resolve) => { up = resolve })
    const stop = await new RedisStore({ client: lazy }).revocationFeed.watch(listener(() => up()))
    await connected
    t.equal(lazy.status, 'ready', 'a lazyConnect client is connected by the feed, as by any command')
    await stop()
    const fresh = cluster()
    t.teardown(() => fresh.quit())
    const waiting = fresh.listenerCount('ready')
    const stopEarly = await new RedisStore({ client: fresh }).revocationFeed.watch(listener(() => t.fail('connected after stop')))
    t.equal(fresh.listenerCount('ready'), waiting + 1, 'a client just created knows no node: the feed waits for it')
    await stopEarly()
    t.equal(fresh.listenerCount('ready'), waiting, 'stopped, it waits no more')
    await new Promise((resolve) => fresh.once('ready', resolve))
  })

  t.test('a Cluster client with a keyPrefix, or with waitForReplicas, is refused', async (t) => {
    const prefixed = new Cluster([{ host: '127.0.0.1', port: nodes[0]?.port ?? 0 }], { keyPrefix: 'x:', lazyConnect: true })
    t.teardown(() => prefixed.disconnect())
    t.throws(() => new RedisStore({ client: prefixed }), /keyPrefix/)
    t.throws(() => new RedisStore({ client, waitForReplicas: 1 }), /waitForReplicas/)
  })
})
