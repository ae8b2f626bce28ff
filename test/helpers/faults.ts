// The fault harness's self-tests: a deliberately broken copy of the build, and one scenario
// of the harness run against it, so that a test can show the checker reports the break.
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { runScenario, type Timing } from '../../bench/faults/run.mjs'
import { SCENARIOS } from '../../bench/faults/scenarios.mjs'

type Teardown = { teardown: (fn: () => unknown) => void }

const ROOT = resolve(import.meta.dirname, '..', '..')

/** Short: enough traffic for the break to show, and for recovery to be judged. */
export const SELF_TEST_TIMING: Timing = { warmupMs: 1500, tailMs: 4500, recoveryMs: 3000 }

/**
 * A copy of `dist/` with `file`'s text `from` replaced by `to` (which must occur once),
 * beside a link to the project's packages; returns the copy's entry point.
 */
export function brokenBuild (t: Teardown, file: string, from: string, to: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'fts-broken-build-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true })
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  const path = join(dir, 'dist', file)
  const text = readFileSync(path, 'utf8')
  if (text.split(from).length !== 2) throw new Error(`${file} does not hold ${JSON.stringify(from)} exactly once: the break no longer applies to this build`)
  writeFileSync(path, text.replace(from, to))
  return join(dir, 'dist', 'index.js')
}

/** Runs the named scenario of the harness, with 8 clients, against `plugin` (the build when undefined). */
export async function runFaultScenario (name: string, plugin?: string) {
  const scenario = SCENARIOS.find((s) => s.name === name)
  if (scenario === undefined) throw new Error(`no scenario ${name}`)
  return await runScenario(scenario, { seed: 1, clients: 8, timing: SELF_TEST_TIMING, ...(plugin === undefined ? {} : { plugin }) })
}
