// A TypeScript consumer project with nodenext resolution (test/consumers/nodenext/) on the
// packed package: the README's getting started as written, typed claims and errors, strict
// settings without skipLibCheck, run against a private Redis with an ioredis 6 client.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { consumers, run, typecheck } from './helpers/consumers.js'
import { codeBlocks, section } from './helpers/docs.js'
import { startRedis } from './helpers/redis.mjs'

const { project } = consumers(t)

t.test('TypeScript with nodenext: the README\'s getting started, typed claims and errors, an ioredis 6 client', async (t) => {
  const dir = project('nodenext')
  const [quickStart, sessionUser] = codeBlocks(section('README.md', 'Getting started in 10 minutes')).filter((block) => block.language === 'ts').map((block) => block.code)
  t.ok(quickStart?.includes('reply.issueTokens') && sessionUser?.includes('interface SessionUser'), 'the README\'s two blocks')
  writeFileSync(join(dir, 'quick-start.ts'), quickStart as string)
  // A .d.ts of its own, as an adopter would paste it.
  writeFileSync(join(dir, 'session-user.d.ts'), sessionUser as string)
  t.equal(typecheck(dir), '', 'type-checks with strict, exactOptionalPropertyTypes and no skipLibCheck')
  const redis = await startRedis(t)
  t.same(run(dir, 'out/run.js', { REDIS_URL: redis.url }), { login: 200, me: { id: 'u1', username: 'ada' } })
})
