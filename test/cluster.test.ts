import t from 'tap'
import { Cluster } from 'ioredis'
import { RedisStore } from '../lib/index.js'
import { buildApp, login, refresh } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startCluster } from './helpers/topology.js'
import { storeContract } from './stores/contract.js'

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
    t.equal((await late.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${victim.accessToken}` } })).statusCode, 401,
      'an instance started later loads the revocation from every primary')
    await late.tokenSessions.store.close()
    ;(late.tokenSessions.store as RedisStore).client.disconnect()
  })

  t.test('a Cluster client with a keyPrefix, or with waitForReplicas, is refused', async (t) => {
    const prefixed = new Cluster([{ host: '127.0.0.1', port: nodes[0]?.port ?? 0 }], { keyPrefix: 'x:', lazyConnect: true })
    t.teardown(() => prefixed.disconnect())
    t.throws(() => new RedisStore({ client: prefixed }), /keyPrefix/)
    t.throws(() => new RedisStore({ client, waitForReplicas: 1 }), /waitForReplicas/)
  })
})
