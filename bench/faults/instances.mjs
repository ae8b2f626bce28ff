// The app instances of a fault-injection run (bench/faults/app.mjs), each a process the
// harness can kill and restart on the same port, with its event-loop lag collected into
// the run's history.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { freePort, killProcess } from '../../test/helpers/redis.mjs'

/** @typedef {import('node:child_process').ChildProcess} ChildProcess */
/** @typedef {import('./history.mjs').LagSample} LagSample */

const APP = fileURLToPath(new URL('./app.mjs', import.meta.url))
const CLOCK_OFFSET = fileURLToPath(new URL('./clock-offset.mjs', import.meta.url))
const START_TIMEOUT_MS = 20_000

/**
 * @typedef {object} InstanceSpec
 * @property {string} name
 * @property {number} [clockOffsetMs] shifts the instance's wall clock
 */

export class Instances {
  /** @type {Map<string, { spec: InstanceSpec, port: number, child: ChildProcess | undefined }>} */
  #instances = new Map()
  /** @type {Record<string, string>} */
  #env
  /** @type {(epochMs: number) => number} */
  #toRunClock
  /** @type {LagSample[]} */
  lags = []
  /** The last lines each instance wrote on stderr, for a report. @type {Map<string, string[]>} */
  errors = new Map()

  /**
   * @param {Record<string, string>} env FAULTS_REDIS, FAULTS_PLUGIN, FAULTS_OPTIONS for every instance
   * @param {(epochMs: number) => number} toRunClock
   */
  constructor (env, toRunClock) {
    this.#env = env
    this.#toRunClock = toRunClock
  }

  /** @returns {{ name: string, port: number }[]} */
  get addresses () {
    return [...this.#instances.values()].map(({ spec, port }) => ({ name: spec.name, port }))
  }

  /**
   * Starts every instance (in parallel) and resolves once each is listening.
   * @param {InstanceSpec[]} specs
   */
  async start (specs) {
    for (const spec of specs) this.#instances.set(spec.name, { spec, port: await freePort(), child: undefined })
    await Promise.all(specs.map((spec) => this.#spawn(spec.name)))
  }

  /** @param {string} name */
  async #spawn (name) {
    const entry = this.#instances.get(name)
    if (entry === undefined) throw new Error(`no instance ${name}`)
    const offset = entry.spec.clockOffsetMs
    const args = offset === undefined ? [APP] : ['--import', CLOCK_OFFSET, APP]
    const env = { ...process.env, ...this.#env, FAULTS_INSTANCE: name, FAULTS_PORT: String(entry.port), FAULTS_CLOCK_OFFSET_MS: String(offset ?? 0) }
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    entry.child = child
    const tail = this.errors.get(name) ?? []
    this.errors.set(name, tail)
    createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stderr) }).on('line', (line) => {
      tail.push(line)
      if (tail.length > 20) tail.shift()
    })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`instance ${name} did not start within ${START_TIMEOUT_MS} ms: ${tail.join('\n')}`)), START_TIMEOUT_MS)
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`instance ${name} exited (code ${code}) before it was ready: ${tail.join('\n')}`)) })
      createInterface({ input: /** @type {import('node:stream').Readable} */ (child.stdout) }).on('line', (line) => {
        const [word, a, b] = line.split(' ')
        if (word === 'ready') { clearTimeout(timer); resolve(undefined) }
        if (word === 'lag') this.lags.push({ instance: name, at: this.#toRunClock(Number(a)), lagMs: Number(b) })
      })
    })
  }

  /**
   * SIGKILL: the instance dies mid-request, as a crashed process or a lost machine.
   * @param {string} name
   */
  async kill (name) {
    const entry = this.#instances.get(name)
    const child = entry?.child
    if (entry !== undefined) entry.child = undefined
    child?.removeAllListeners('exit')
    await killProcess(child)
  }

  /** Starts a killed instance again on its port. @param {string} name */
  async restart (name) {
    await this.#spawn(name)
  }

  /** Stops every instance (SIGTERM, then SIGKILL if it has not exited within 3 s). */
  async close () {
    await Promise.all([...this.#instances.values()].map(async (entry) => {
      const child = entry.child
      entry.child = undefined
      if (child === undefined || child.exitCode !== null) return
      child.removeAllListeners('exit')
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(timer)
    }))
  }
}
