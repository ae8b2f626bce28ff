// `npm start` builds only when the build is not current, judged by the content of what the
// build reads (scripts/build-stamp.mjs), not by file times.
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { BUILD_OUTPUTS, STAMP, buildIsCurrent, inputsDigest, writeStamp } from '../scripts/build-stamp.mjs'
import { ROOT } from './helpers/docs.js'
import { freePort } from './helpers/redis.mjs'

/** A folder of its own, removed after the test. */
function folder (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fts-start-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function put (root: string, file: string, content: string): void {
  mkdirSync(dirname(join(root, file)), { recursive: true })
  writeFileSync(join(root, file), content)
}

t.test('the digest follows content, not file times', async (t) => {
  const root = folder(t)
  put(root, 'lib/index.ts', 'export const a = 1\n')
  put(root, 'example-app/src/server.ts', 'console.log(1)\n')
  put(root, 'package.json', '{}\n')
  put(root, 'README.md', 'not an input\n')
  const first = inputsDigest(root)
  t.match(first, /^[0-9a-f]{64}$/)
  const later = new Date(Date.now() + 3_600_000)
  utimesSync(join(root, 'lib/index.ts'), later, later)
  t.equal(inputsDigest(root), first, 'a newer file time alone changes nothing')
  put(root, 'README.md', 'edited\n')
  t.equal(inputsDigest(root), first, 'nor does a file the build does not read')
  put(root, 'lib/index.ts', 'export const a = 2\n')
  t.not(inputsDigest(root), first, 'one byte of a source, the same length and time, does')
  put(root, 'lib/index.ts', 'export const a = 1\n')
  t.equal(inputsDigest(root), first, 'and putting it back restores the digest')
  put(root, 'lib/more.ts', '')
  t.not(inputsDigest(root), first, 'a new file, even empty, changes it')
})

t.test('the build is current only with every output and a stamp of the inputs as they are', async (t) => {
  const root = folder(t)
  put(root, 'lib/index.ts', 'export const a = 1\n')
  t.equal(buildIsCurrent(root), false, 'nothing built')
  for (const output of BUILD_OUTPUTS as string[]) put(root, output, '')
  t.equal(buildIsCurrent(root), false, 'outputs without a stamp (a build that failed after cleaning)')
  writeStamp(root)
  t.equal(buildIsCurrent(root), true, 'the stamp a finished build writes')
  put(root, 'lib/index.ts', 'export const a = 3\n')
  t.equal(buildIsCurrent(root), false, 'a source changed since')
  writeStamp(root)
  rmSync(join(root, 'example-app/dist/server.js'))
  t.equal(buildIsCurrent(root), false, 'an output gone')
  t.match(STAMP, /^example-app\/dist\//, 'the stamp is not packed with the plugin (its dist/ is)')
})

t.test('the build\'s first step removes the stamp: a build that fails after it leaves none', async (t) => {
  const root = folder(t)
  cpSync(join(ROOT, 'scripts'), join(root, 'scripts'), { recursive: true })
  for (const output of BUILD_OUTPUTS as string[]) put(root, output, '')
  writeStamp(root)
  t.equal(buildIsCurrent(root), true)
  execFileSync(process.execPath, [join(root, 'scripts/clean.mjs')], { env: { ...process.env, NODE_OPTIONS: '' } })
  t.notOk(existsSync(join(root, STAMP as string)), 'the stamp is gone')
  t.notOk(existsSync(join(root, 'dist')), 'with the package\'s dist/')
  put(root, 'dist/index.js', '')
  put(root, 'dist/client/index.js', '')
  t.equal(buildIsCurrent(root), false, 'outputs made again, but no stamp until the build ends')
})

/** `npm start` in a copy of the project; resolves with its output once the server listens, then stops it. */
async function start (t: Test, root: string): Promise<{ output: string, closed: boolean }> {
  const port = await freePort()
  const closed = await freePort()
  const child = spawn('npm', ['start'], {
    cwd: root,
    env: { ...process.env, NODE_OPTIONS: '', PORT: String(port), REDIS_URL: `redis://127.0.0.1:${closed}`, LOG_LEVEL: 'info', NODE_ENV: 'development' },
    detached: true
  })
  t.teardown(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  const deadline = Date.now() + 150_000
  while (!output.includes('Server listening') && Date.now() < deadline && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 100))
  if (!output.includes('Server listening')) throw new Error(`npm start did not listen:\n${output}`)
  const answer = await fetch(`http://127.0.0.1:${port}/health`)
  t.equal(answer.status, 200, 'the app answers')
  process.kill(-(child.pid as number), 'SIGTERM')
  await exited
  return { output, closed: output.includes('"msg":"closed"') }
}

t.test('npm start builds a fresh checkout, then starts without building while nothing changed', async (t) => {
  const root = folder(t)
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.client.json', 'lib', 'client', 'scripts', 'example-app']) {
    cpSync(join(ROOT, entry), join(root, entry), { recursive: true, filter: (source) => !source.includes(`${join('example-app', 'dist')}`) })
  }
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'), 'dir')
  const first = await start(t, root)
  t.match(first.output, /^building /m, 'nothing built: it builds')
  t.equal(first.closed, true, 'SIGTERM reaches the server, which closes cleanly')
  t.equal(buildIsCurrent(root), true, 'the build left its stamp')
  const second = await start(t, root)
  t.notMatch(second.output, /^building |> tsc/m, 'built and unchanged: it starts at once')
  t.equal(second.closed, true)
  const source = join(root, 'lib/index.ts')
  const later = new Date(Date.now() + 3_600_000)
  utimesSync(source, later, later)
  t.equal(buildIsCurrent(root), true, 'a touched source is still current')
  writeFileSync(source, readFileSync(source, 'utf8') + '\n')
  t.equal(buildIsCurrent(root), false, 'an edited one is not: the next start builds')
})
