// A browser consumer project (test/consumers/browser/) on the packed package: the client
// (fastify-token-sessions/client) type-checked with the DOM's types alone, and bundled for
// the browser by esbuild with nothing of Node in the bundle.
import { join } from 'node:path'
import { build } from 'esbuild'
import t from 'tap'
import { consumers, typecheck } from './helpers/consumers.js'

const { project } = consumers(t)

t.test('a browser project: the client type-checks with the DOM\'s types alone, and bundles for the browser', async (t) => {
  const dir = project('browser')
  t.equal(typecheck(dir), '', 'type-checks (lib DOM, no Node types, no skipLibCheck)')
  const bundle = await build({ entryPoints: [join(dir, 'app.ts')], absWorkingDir: dir, bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' })
  const code = bundle.outputFiles[0]?.text ?? ''
  t.match(code, /navigator/, 'the client is in the bundle')
  t.notMatch(code, /from "node:|require\(/, 'and nothing of Node')
})
