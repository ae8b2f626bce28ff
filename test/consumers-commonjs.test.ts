// A plain CommonJS consumer project (test/consumers/commonjs/) that require()s the packed
// package, run against a private Redis.
import t from 'tap'
import { consumers, run } from './helpers/consumers.js'
import { startRedis } from './helpers/redis.mjs'

const { project } = consumers(t)

t.test('CommonJS: require() of the package', async (t) => {
  const dir = project('commonjs')
  const redis = await startRedis(t)
  t.same(run(dir, 'run.js', { REDIS_URL: redis.url }), { me: { id: 'u1' }, refresh: 200, missing: 'FTS_TOKEN_MISSING', known: true })
})
