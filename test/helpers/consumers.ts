// The consumer projects of test/consumers/ as the consumers-*.test.ts files use them: this
// checkout's package packed once per file, each project copied beside the tarball with the
// package installed in its node_modules, type-checked by its own settings and run.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { installPacked, pack } from './packed.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** This checkout's node_modules, where the tools the tests run (tsc, publint, attw) are. */
export const MODULES = join(ROOT, 'node_modules')
const TSC = join(MODULES, 'typescript', 'bin', 'tsc')
const FIXTURES = join(ROOT, 'test', 'consumers')

export interface Consumers {
  /** The packed package (`npm test` builds before it runs the tests: this checkout's code). */
  tarball: string
  /** The files the tarball holds. */
  files: string[]
  /**
   * A consumer project in a directory of its own (`copy`, the project's name unless told):
   * its files, and the package installed with `ioredis` as the project's ioredis.
   */
  project: (name: string, ioredis?: 'ioredis' | 'ioredis5', copy?: string) => string
}

/**
 * Packs the package into a temporary directory, removed at teardown unless KEEP_CONSUMERS
 * is set (to look at a failing project afterwards).
 */
export function consumers (t: { teardown: (fn: () => unknown) => void }): Consumers {
  const work = mkdtempSync(join(tmpdir(), 'fts-consumers-'))
  if (process.env.KEEP_CONSUMERS === undefined) t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const { tarball, files } = pack(work)
  return {
    tarball,
    files,
    project: (name, ioredis = 'ioredis', copy = name) => {
      const dir = join(work, copy)
      cpSync(join(FIXTURES, name), dir, { recursive: true })
      installPacked(dir, tarball, ioredis)
      return dir
    }
  }
}

/** tsc's verdict on a project: its output, empty when it type-checks. */
export function typecheck (dir: string): string {
  const result = spawnSync(process.execPath, [TSC, '-p', dir], { encoding: 'utf8' })
  return `${result.stdout}${result.stderr}`.trim()
}

/** Runs a script of a project with `env`; its last line of output, parsed. */
export function run (dir: string, script: string, env: Record<string, string>): unknown {
  const result = spawnSync(process.execPath, [join(dir, script)], { cwd: dir, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 })
  if (result.status !== 0) throw new Error(`${script} failed (${String(result.status)}): ${result.stderr}`)
  return JSON.parse(result.stdout.trim().split('\n').at(-1) as string)
}
