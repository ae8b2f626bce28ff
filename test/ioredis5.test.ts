// Most apps run ioredis 5: its clients (standalone, Cluster, Sentinel) must work with the
// plugin as this package's own ioredis 6 does, in the types (this file typechecks with
// them passed straight in) and at run time (a Cluster client of another copy of ioredis is
// still a Cluster: no CROSSSLOT).
import t from 'tap'
import { Cluster, Redis } from 'ioredis5'
import { RedisStore } from '../lib/index.js'
import { buildApp, login, refresh } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'
import { startCluster, startSentinel } from './helpers/topology.js'
import { storeContract } from './stores/contract.js'

t.test('a standalone ioredis 5 client', async (t) => {
  const redis = await startRedis(t)
  const client = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => client.quit())

  t.test('keeps the store contract', async (t) => {
    storeContract(t, async () => new RedisStore({ client }))
  })

  t.test('serves the plugin passed as `redis`, and stays the app\'s', async (t) => {
    const app = await buildApp(t, { redis: client })
    const tokens = await login(app, 'five')
    t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200)
    await app.close()
    t.equal(await client.ping(), 'PONG', 'not closed by the plugin')
  })

  t.test('its database is checked at start-up as an ioredis 6 client\'s is, and one switched with select() is left there', async (t) => {
    const missing = new Redis(redis.port, '127.0.0.1', { db: 2147483648 })
    missing.on('error', () => {})
    t.teardown(() => missing.disconnect())
    await t.rejects(new RedisStore({ client: missing }).checkSetup(), { code: 'FTS_INVALID_OPTION', message: /^Invalid option client: names database 2147483648/ })
    const switched = new Redis(redis.port, '127.0.0.1', { db: 2 })
    t.teardown(() => switched.quit())
    await switched.select(5)
    await new RedisStore({ client: switched }).checkSetup()
    t.match(String(await switched.call('CLIENT', 'INFO')), / db=5 /, 'still on database 5')
  })
})

t.test('an ioredis 5 Cluster client is recognised as a Cluster', async (t) => {
  const nodes = await startCluster(t)
  const client = new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })))
  t.teardown(() => client.quit())

  t.test('keeps the store contract', async (t) => {
    storeContract(t, async () => new RedisStore({ client }))
  })

  t.test('many users over many slots: no CROSSSLOT, and a revocation reaches another instance', async (t) => {
    const store = new RedisStore({ client })
    t.equal(store.client.isCluster, true)
    const a = await buildApp(t, { redis: client })
    const other = new Cluster(nodes.map((node) => ({ host: '127.0.0.1', port: node.port })))
    t.teardown(() => other.quit())
    const b = await buildApp(t, { redis: other })
    for (let i = 0; i < 8; i++) {
      const tokens = await login(a, `five-cluster-${i}`)
      t.equal((await refresh(b, tokens.refreshToken)).statusCode, 200, `user ${i}`)
    }
    const victim = await login(a, 'five-cluster-victim')
    await a.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: victim.refreshToken } })
    let status = 200
    for (let i = 0; i < 200 && status === 200; i++) {
      status = (await b.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${victim.accessToken}` } })).statusCode
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 5))
    }
    t.equal(status, 401, 'the other instance heard of the logout')
  })
})

t.test('an ioredis 5 Sentinel client', async (t) => {
  const { sentinels } = await startSentinel(t)
  const client = new Redis({ sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: 'primary' })
  t.teardown(() => client.quit())
  const app = await buildApp(t, { redis: client })
  const tokens = await login(app, 'five-sentinel')
  const rotated = await refresh(app, tokens.refreshToken)
  t.equal(rotated.statusCode, 200)
  t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200, 'a replay within the grace window')
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: rotated.json().refreshToken } })).statusCode, 204)
})
