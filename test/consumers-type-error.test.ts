// The consumer projects' type-check can fail: the nodenext project (test/consumers/nodenext/)
// with a type error added is refused by tsc, so that a clean check in consumers-nodenext,
// consumers-bundler and consumers-browser means something.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { consumers, typecheck } from './helpers/consumers.js'

const { project } = consumers(t)

t.test('a type error in a consumer is caught (the check above can fail)', async (t) => {
  const dir = project('nodenext', 'ioredis', 'nodenext-broken')
  writeFileSync(join(dir, 'broken.ts'), "import { tokenResponse } from 'fastify-token-sessions'\nexport const wrong: number = tokenResponse\n")
  t.match(typecheck(dir), /broken\.ts.*TS2322/)
})
