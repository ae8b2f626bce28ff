// The package as adopters get it: `npm pack`, unpacked into the node_modules of small
// consumer projects (test/consumers/), type-checked by their own settings and run against
// real Redis; then publint and are-the-types-wrong on the same tarball. `npm test` builds
// before it runs the tests, so the tarball holds this checkout's code.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import t from 'tap'
import { codeBlocks, section } from './helpers/docs.js'
import { installPacked, pack } from './helpers/packed.js'
import { startRedis } from './helpers/redis.mjs'
import { startCluster } from './helpers/topology.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MODULES = join(ROOT, 'node_modules')
const TSC = join(MODULES, 'typescript', 'bin', 'tsc')
const FIXTURES = join(ROOT, 'test', 'consumers')

const work = mkdtempSync(join(tmpdir(), 'fts-consumers-'))
if (process.env.KEEP_CONSUMERS === undefined) t.teardown(() => rmSync(work, { recursive: true, force: true }))

const { tarball, files } = pack(work)

/** A consumer project in a directory of its own: its files, and the package installed. */
function project (name: string, ioredis: 'ioredis' | 'ioredis5' = 'ioredis', copy = name): string {
  const dir = join(work, copy)
  cpSync(join(FIXTURES, name), dir, { recursive: true })
  installPacked(dir, tarball, ioredis)
  return dir
}

/** tsc's verdict on a project: its output, empty when it type-checks. */
function typecheck (dir: string): string {
  const result = spawnSync(process.execPath, [TSC, '-p', dir], { encoding: 'utf8' })
  return `${result.stdout}${result.stderr}`.trim()
}

/** Runs a script of a project with `env`; its last line of output, parsed. */
function run (dir: string, script: string, env: Record<string, string>): unknown {
  const result = spawnSync(process.execPath, [join(dir, script)], { cwd: dir, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 })
  if (result.status !== 0) throw new Error(`${script} failed (${String(result.status)}): ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').at(-1) as string)
}

t.test('the tarball holds the build, the sources its maps point to, and the licence', async (t) => {
  for (const expected of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/index.d.ts.map', 'lib/index.ts', 'dist/stores/lua/rotate.lua',
    'dist/client/index.js', 'dist/client/index.d.ts', 'dist/client/index.d.ts.map', 'client/index.ts']) {
    t.ok(files.includes(expected), expected)
  }
  t.notOk(files.some((file) => file.startsWith('test/') || file.startsWith('example-app/') || file.startsWith('bench/')), 'no tests, example or bench')
})

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

t.test('CommonJS: require() of the package', async (t) => {
  const dir = project('commonjs')
  const redis = await startRedis(t)
  t.same(run(dir, 'run.js', { REDIS_URL: redis.url }), { me: { id: 'u1' }, refresh: 200, missing: 'FTS_TOKEN_MISSING', known: true })
})

t.test('a browser project: the client type-checks with the DOM\'s types alone, and bundles for the browser', async (t) => {
  const dir = project('browser')
  t.equal(typecheck(dir), '', 'type-checks (lib DOM, no Node types, no skipLibCheck)')
  const bundle = await build({ entryPoints: [join(dir, 'app.ts')], absWorkingDir: dir, bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' })
  const code = bundle.outputFiles[0]?.text ?? ''
  t.match(code, /navigator/, 'the client is in the bundle')
  t.notMatch(code, /from "node:|require\(/, 'and nothing of Node')
})

t.test('a type error in a consumer is caught (the check above can fail)', async (t) => {
  const dir = project('nodenext', 'ioredis', 'nodenext-broken')
  writeFileSync(join(dir, 'broken.ts'), "import { tokenResponse } from 'fastify-token-sessions'\nexport const wrong: number = tokenResponse\n")
  t.match(typecheck(dir), /broken\.ts.*TS2322/)
})

t.test('publint and are-the-types-wrong find nothing', async (t) => {
  const publint = spawnSync(process.execPath, [join(MODULES, 'publint', 'src', 'cli.js'), '--strict', tarball], { encoding: 'utf8' })
  t.equal(publint.status, 0, `publint: ${publint.stdout}${publint.stderr}`)
  // ESM only: CommonJS apps load it through require() of ES modules (Node 20.19+).
  const attw = spawnSync(process.execPath, [join(MODULES, '@arethetypeswrong', 'cli', 'dist', 'index.js'), tarball, '--profile', 'esm-only', '--format', 'ascii'], { encoding: 'utf8' })
  t.equal(attw.status, 0, `are-the-types-wrong: ${attw.stdout}${attw.stderr}`)
})
