// The fault-injection harness: `npm run test:faults` (the short, seeded run) or
// `npm run test:faults -- --duration 1800 --seed 7` (a long run: the scenarios again and
// again, each round with the next seed, until the duration is up).
//
// For each scenario (bench/faults/scenarios.mjs) it starts real Redis processes
// (bench/faults/topology.mjs) and 3 app instances (bench/faults/app.mjs), runs simulated
// clients against them (bench/faults/clients.mjs), injects the scenario's faults a few
// seconds in, lets every instance recover, and checks the recorded history
// (bench/faults/checker.mjs). It prints one line per fault, then the total, writes the
// table to bench/FAULTS.md (`--report <file>` elsewhere, `--report none` for no table) and
// exits 1 on any violation.
//
// Options: `--seed <n>` (default 1), `--duration <s>` (a long run), `--only <a,b>` (these
// scenarios), `--plugin <dist/index.js of a build>` (the harness's self-tests run a
// deliberately broken build), `--clients <n>` (default 12), `--histories <dir>` (keep
// each scenario's history as JSON; without it, the history of a scenario with a violation
// is kept in a temporary folder, named on stderr).
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { check, INVARIANTS } from './checker.mjs'
import { runClients } from './clients.mjs'
import { Instances } from './instances.mjs'
import { SCENARIOS } from './scenarios.mjs'
import { startCluster, startSentinel, startStandalone } from './topology.mjs'

/** @typedef {import('./scenarios.mjs').Scenario} Scenario */
/** @typedef {import('./checker.mjs').CheckResult} CheckResult */

/** The server's `reuseGrace` (the default, 10 s). */
const REUSE_GRACE_MS = 10_000
/** Every instance must answer again this long after the last fault (the checker's default). */
const RECOVERY_MS = 10_000

/**
 * @typedef {object} Timing
 * @property {number} warmupMs traffic before the first fault
 * @property {number} tailMs traffic after the last fault ends (at least recoveryMs, and time to show it)
 * @property {number} recoveryMs
 */

/** @type {Timing} */
export const DEFAULT_TIMING = { warmupMs: 3000, tailMs: RECOVERY_MS + 1500, recoveryMs: RECOVERY_MS }

/** @param {Scenario['topology']} kind */
async function startTopology (kind) {
  if (kind === 'sentinel') {
    const topology = await startSentinel()
    return { topology, redis: { kind: 'sentinel', sentinels: topology.sentinels, name: topology.name } }
  }
  if (kind === 'cluster') {
    const topology = await startCluster()
    return { topology, redis: { kind: 'cluster', nodes: topology.nodes } }
  }
  const topology = await startStandalone({ aof: kind === 'standalone' })
  return { topology, redis: { kind: 'standalone', ...topology.connection } }
}

/**
 * @typedef {object} ScenarioResult
 * @property {string} name
 * @property {number} operations
 * @property {CheckResult} result
 * @property {import('./history.mjs').History} history
 */

/**
 * Runs one scenario from start to check.
 * @param {Scenario} scenario
 * @param {{ seed: number, plugin?: string, clients: number, timing: Timing }} plan
 * @returns {Promise<ScenarioResult>}
 */
export async function runScenario (scenario, plan) {
  const t0 = performance.now()
  const now = () => performance.now() - t0
  const epoch0 = performance.timeOrigin + t0
  const { topology, redis } = await startTopology(scenario.topology)
  /** @type {Record<string, string>} */
  const env = { FAULTS_REDIS: JSON.stringify(redis) }
  if (plan.plugin !== undefined) env.FAULTS_PLUGIN = plan.plugin
  const instances = new Instances(env, (epochMs) => epochMs - epoch0)
  try {
    await instances.start([{ name: 'a' }, { name: 'b' }, { name: 'c', clockOffsetMs: scenario.clockOffsetMs }])
    /** @type {import('./history.mjs').Operation[]} */
    const operations = []
    /** @type {import('./history.mjs').FaultEvent[]} */
    const faults = []
    /** @type {import('./checker.mjs').ExcusedLoss[]} */
    const excusedLosses = []
    let deadline = Infinity
    const clientsStart = now()
    if (scenario.clockOffsetMs !== undefined) faults.push({ kind: 'clock-offset', start: clientsStart, end: clientsStart })
    const clients = runClients({ now, operations, instances: instances.addresses }, { count: plan.clients, seed: plan.seed, deadline: () => deadline, maxOperations: 20_000 })
    const injected = (async () => {
      await new Promise((resolve) => setTimeout(resolve, plan.timing.warmupMs))
      const start = now()
      await scenario.inject?.({ topology, instances, now, excusedLosses })
      if (scenario.inject !== undefined) faults.push({ kind: scenario.name, start, end: now() })
      deadline = now() + plan.timing.tailMs
    })()
    // A fault that throws must still stop the clients.
    await injected.catch((error) => { deadline = 0; throw error })
    await clients
    const history = { operations, faults, lags: instances.lags, instances: instances.addresses.map((i) => i.name) }
    const result = check(history, { revocationBoundMs: scenario.revocationBoundMs, reuseGraceMs: REUSE_GRACE_MS, recoveryMs: plan.timing.recoveryMs, excusedLosses })
    return { name: scenario.name, operations: operations.length, result, history }
  } finally {
    await instances.close()
    await topology.close()
  }
}

/**
 * One line of an operation for the report: what was asked, where, when, and the answer.
 * @param {import('./history.mjs').Operation} op
 */
function describe (op) {
  const answer = 'status' in op.answer ? `${op.answer.status}${op.answer.code === undefined ? '' : ' ' + op.answer.code}` : op.answer.error
  const facts = Object.entries(op.request).map(([k, v]) => `${k}=${v}`).join(' ')
  return `\`${op.id}\` ${op.kind} on ${op.instance}, ${op.start.toFixed(0)}–${op.end.toFixed(0)} ms, ${facts} → ${answer}`
}

/**
 * The table (faults × invariants) with up to 3 examples of each fault's findings.
 * @param {Map<string, { runs: number, operations: number, results: ScenarioResult[] }>} byFault
 * @param {{ seed: number, duration?: number, started: string, seconds: number }} meta
 */
function report (byFault, meta) {
  const lines = [
    '# Fault-injection results',
    '',
    `Written by \`npm run test:faults\`${meta.duration === undefined ? '' : ` (\`--duration ${meta.duration}\`)`}, seed ${meta.seed}, ${meta.started}, ${Math.round(meta.seconds)} s. ` +
    'Each cell: violations (and losses excused because Redis itself lost acknowledged writes). ' +
    'The invariants are those of bench/faults/checker.mjs; the bounds those of docs/sessions.md.',
    '',
    `| fault | runs | operations | ${INVARIANTS.join(' | ')} |`,
    `| --- | ---: | ---: | ${INVARIANTS.map(() => '---:').join(' | ')} |`
  ]
  for (const [fault, entry] of byFault) {
    const cells = INVARIANTS.map((invariant) => {
      const v = entry.results.reduce((n, r) => n + r.result.counts[invariant].violations, 0)
      const e = entry.results.reduce((n, r) => n + r.result.counts[invariant].excused, 0)
      return e === 0 ? String(v) : `${v} (${e} excused)`
    })
    lines.push(`| ${fault} | ${entry.runs} | ${entry.operations} | ${cells.join(' | ')} |`)
  }
  for (const [fault, entry] of byFault) {
    const findings = entry.results.flatMap((r) => [...r.result.violations, ...r.result.excused].map((f) => ({ f, r })))
    if (findings.length === 0) continue
    lines.push('', `## ${fault}`, '')
    for (const invariant of INVARIANTS) {
      for (const { f, r } of findings.filter(({ f }) => f.invariant === invariant).slice(0, 3)) {
        lines.push(`- **${invariant}**${f.why === undefined ? '' : ` (excused: ${f.why})`}: ${f.message}`)
        const ops = new Map(r.history.operations.map((op) => [op.id, op]))
        for (const id of f.operations.slice(0, 4)) {
          const op = ops.get(id)
          if (op !== undefined) lines.push(`  - ${describe(op)}`)
        }
      }
    }
  }
  return lines.join('\n') + '\n'
}

/** @type {string | undefined} */
let kept
/** A folder of its own for the histories of findings, made on first use. */
function keptDir () {
  kept ??= mkdtempSync(join(tmpdir(), 'fts-faults-'))
  return kept
}

async function main () {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      duration: { type: 'string' },
      only: { type: 'string' },
      plugin: { type: 'string' },
      clients: { type: 'string', default: '12' },
      report: { type: 'string', default: join('bench', 'FAULTS.md') },
      histories: { type: 'string' }
    }
  })
  const seed = Number(values.seed)
  const duration = values.duration === undefined ? undefined : Number(values.duration)
  const only = values.only?.split(',')
  const scenarios = only === undefined ? SCENARIOS : SCENARIOS.filter((s) => only.includes(s.name))
  if (scenarios.length === 0 || !Number.isSafeInteger(seed) || (duration !== undefined && !(duration > 0))) {
    console.error(`usage: run.mjs [--seed n] [--duration seconds] [--only ${SCENARIOS.map((s) => s.name).join(',')}]`)
    process.exit(2)
  }
  if (values.histories !== undefined) mkdirSync(values.histories, { recursive: true })
  const started = new Date()
  const t0 = performance.now()
  /** @type {Map<string, { runs: number, operations: number, results: ScenarioResult[] }>} */
  const byFault = new Map()
  const rounds = duration === undefined ? 1 : 1000
  for (let round = 0; round < rounds; round++) {
    for (const scenario of scenarios) {
      if (duration !== undefined && round > 0 && performance.now() - t0 > duration * 1000) break
      const result = await runScenario(scenario, { seed: seed + round, plugin: values.plugin, clients: Number(values.clients), timing: DEFAULT_TIMING })
      const entry = byFault.get(scenario.name) ?? { runs: 0, operations: 0, results: [] }
      entry.runs++
      entry.operations += result.operations
      // Keep what the report shows, not every clean history of a long run.
      if (result.result.violations.length + result.result.excused.length > 0) entry.results.push(result)
      else entry.results.push({ ...result, history: { ...result.history, operations: [] } })
      byFault.set(scenario.name, entry)
      // A finding's history is kept whatever was asked: a long run's rare one must be explainable.
      const keep = values.histories ?? (result.result.violations.length > 0 ? keptDir() : undefined)
      if (keep !== undefined) {
        const file = join(keep, `${scenario.name}-${seed + round}.json`)
        writeFileSync(file, JSON.stringify(result.history))
        if (values.histories === undefined) process.stderr.write(`history of ${scenario.name} (seed ${seed + round}) kept in ${file}\n`)
      }
      process.stderr.write(`[${Math.round((performance.now() - t0) / 1000)} s] ${scenario.name} (seed ${seed + round}): ${result.operations} operations\n`)
    }
    if (duration !== undefined && performance.now() - t0 > duration * 1000) break
  }
  let total = 0
  for (const [fault, entry] of byFault) {
    const found = entry.results.reduce((n, r) => n + r.result.violations.length, 0)
    const excused = entry.results.reduce((n, r) => n + r.result.excused.length, 0)
    total += found
    console.log(`${fault}: ${entry.operations} operations, ${found} violations${excused === 0 ? '' : ` (${excused} losses excused: Redis lost acknowledged writes)`}`)
  }
  console.log(`total: ${total} violations`)
  const written = report(byFault, { seed, duration, started: started.toISOString().slice(0, 10), seconds: (performance.now() - t0) / 1000 })
  if (values.report !== 'none') writeFileSync(values.report, written)
  // A run that fails says why where it ran (a CI log keeps no report file).
  if (total > 0) console.log(`\n${written}`)
  process.exitCode = total === 0 ? 0 : 1
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
