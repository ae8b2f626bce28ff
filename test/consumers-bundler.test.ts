// A TypeScript consumer project with bundler resolution (test/consumers/bundler/) on the
// packed package: @fastify/jwt registered beside the plugin, before it and after it, with
// ioredis 5 clients, run against a private Redis and a private Cluster.
import t from 'tap'
import { consumers, run, typecheck } from './helpers/consumers.js'
import { startRedis } from './helpers/redis.mjs'
import { startCluster } from './helpers/topology.js'

const { project } = consumers(t)

t.test('TypeScript with bundler resolution: @fastify/jwt beside the plugin in both orders, ioredis 5 clients', async (t) => {
  const dir = project('bundler', 'ioredis5')
  t.equal(typecheck(dir), '', 'type-checks, @fastify/jwt\'s own types included')
  const redis = await startRedis(t)
  const nodes = await startCluster(t)
  const results = run(dir, 'out/run.js', { REDIS_URL: redis.url, REDIS_CLUSTER: nodes.map((node) => node.port).join(',') }) as Record<string, unknown>
  for (const name of ['standalone', 'cluster']) {
    for (const order of ['jwt first', 'plugin first']) {
      t.same(results[`${name}, ${order}`], {
        service: { svc: 'billing' },
        logins: [200, 200, 200, 200, 200, 200],
        me: { id: 'u1', plan: 'pro' },
        refresh: 200
      }, `${name}, ${order}`)
    }
  }
})
