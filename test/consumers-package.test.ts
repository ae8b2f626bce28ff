// The package as adopters get it (`npm pack` of this checkout, which `npm test` builds
// first): what the tarball holds, and publint and are-the-types-wrong on it. The consumer
// projects that install it are in the other consumers-*.test.ts files (test/consumers/).
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { consumers, MODULES } from './helpers/consumers.js'

const { tarball, files } = consumers(t)

t.test('the tarball holds the build, the sources its maps point to, and the licence', async (t) => {
  for (const expected of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/index.d.ts.map', 'lib/index.ts', 'dist/stores/lua/rotate.lua',
    'dist/client/index.js', 'dist/client/index.d.ts', 'dist/client/index.d.ts.map', 'client/index.ts']) {
    t.ok(files.includes(expected), expected)
  }
  t.notOk(files.some((file) => file.startsWith('test/') || file.startsWith('example-app/') || file.startsWith('bench/')), 'no tests, example or bench')
})

t.test('publint and are-the-types-wrong find nothing', async (t) => {
  const publint = spawnSync(process.execPath, [join(MODULES, 'publint', 'src', 'cli.js'), '--strict', tarball], { encoding: 'utf8' })
  t.equal(publint.status, 0, `publint: ${publint.stdout}${publint.stderr}`)
  // ESM only: CommonJS apps load it through require() of ES modules (Node 20.19+).
  const attw = spawnSync(process.execPath, [join(MODULES, '@arethetypeswrong', 'cli', 'dist', 'index.js'), tarball, '--profile', 'esm-only', '--format', 'ascii'], { encoding: 'utf8' })
  t.equal(attw.status, 0, `are-the-types-wrong: ${attw.stdout}${attw.stderr}`)
})
