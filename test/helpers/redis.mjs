// Private redis-server processes for the tests, the benchmark and the load test, which
// share this one way to start one. Plain JavaScript (with JSDoc types, which TypeScript
// reads) so that Node runs it as it is, under the test runner or without it.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

/** @typedef {import('node:child_process').ChildProcess} ChildProcess */
/** @typedef {{ teardown: (fn: () => unknown) => void }} Teardown */

const INSTALL_HINT = 'redis-server is not on PATH. The tests run against real Redis processes they start themselves.\n' +
  'Install it: Debian/Ubuntu `apt-get install -y redis-server`, Fedora `dnf install redis`, macOS `brew install redis`.'

/** Fails loudly, never skips, when the tests cannot run real Redis. */
export function assertRedisInstalled () {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined || probe.status !== 0) throw new Error(INSTALL_HINT)
}

/**
 * A free loopback port (the kernel picks one; there is a small window before Redis binds it).
 * @returns {Promise<number>}
 */
export async function freePort () {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

/**
 * Resolves when something on the port answers PING with PONG; rejects after `ms`.
 * @param {number} port
 * @param {number} ms
 * @returns {Promise<void>}
 */
export async function waitForPong (port, ms) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    /** @type {boolean} */
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.setTimeout(500)
      socket.once('connect', () => socket.write('PING\r\n'))
      socket.once('data', (data) => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
      socket.once('error', () => resolve(false))
      socket.once('timeout', () => { socket.destroy(); resolve(false) })
    })
    if (ok) return
    await sleep(25)
  }
  throw new Error(`redis-server on port ${port} did not answer within ${ms} ms`)
}

/**
 * Starts `redis-server` with `args` and resolves once it answers PING on `port`.
 * @param {number} port
 * @param {string[]} args
 * @returns {Promise<ChildProcess>}
 */
export async function spawnRedis (port, args) {
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  /** @type {Promise<never>} */
  const exited = new Promise((_resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`redis-server exited early (code ${code})`)))
  })
  await Promise.race([waitForPong(port, 10_000), exited])
  return child
}

/**
 * SIGKILL and wait for the exit: a crash, not a shutdown. Nothing to do if already gone.
 * @param {ChildProcess | undefined} child
 * @returns {Promise<void>}
 */
export async function killProcess (child) {
  if (child === undefined || child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

/**
 * The arguments of one primary of a test Cluster, without persistence, its state in `dir`.
 * @param {number} port
 * @param {string} dir
 * @returns {string[]}
 */
export function clusterNodeArgs (port, dir) {
  return [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'
  ]
}

/**
 * Joins running cluster-enabled servers as primaries (`redis-cli --cluster create`) and
 * waits until each reports the Cluster ok.
 * @param {number[]} ports
 * @returns {Promise<void>}
 */
export async function joinCluster (ports) {
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' })
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
  for (const port of ports) {
    const client = new Redis(port, '127.0.0.1')
    for (let i = 0; i < 100 && !/cluster_state:ok/.test(/** @type {string} */ (await client.call('CLUSTER', 'INFO'))); i++) await sleep(100)
    client.disconnect()
  }
}

/**
 * A private `redis-server` on a free loopback port, with no persistence. It can be
 * stopped and started again on the same port, to test outages and recovery.
 */
export class RedisServer {
  /** @type {string} */
  #dir
  /** @type {string[]} */
  #extraArgs
  /** @type {ChildProcess | undefined} */
  #process

  /**
   * Use {@link RedisServer.start}.
   * @param {number} port
   * @param {string[]} extraArgs
   */
  constructor (port, extraArgs) {
    /** @readonly */
    this.port = port
    this.#extraArgs = extraArgs
    this.#dir = mkdtempSync(join(tmpdir(), 'fts-redis-'))
  }

  /**
   * Starts a server; retries on another port if the chosen one was taken meanwhile.
   * @param {string[]} [extraArgs]
   * @returns {Promise<RedisServer>}
   */
  static async start (extraArgs = []) {
    assertRedisInstalled()
    /** @type {unknown} */
    let lastError
    for (let attempt = 0; attempt < 5; attempt++) {
      const server = new RedisServer(await freePort(), extraArgs)
      try {
        await server.start()
        return server
      } catch (error) {
        lastError = error
        await server.stop()
      }
    }
    throw lastError
  }

  /** @returns {string} */
  get url () {
    return `redis://127.0.0.1:${this.port}`
  }

  /** @returns {Promise<void>} */
  async start () {
    this.#process = await spawnRedis(this.port, [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.#dir, '--daemonize', 'no', '--loglevel', 'warning', ...this.#extraArgs
    ])
  }

  /**
   * Kills the server at once (SIGKILL): an outage, not a shutdown.
   * @returns {Promise<void>}
   */
  async stop () {
    const child = this.#process
    this.#process = undefined
    await killProcess(child)
  }

  /**
   * Stops the server and removes its folder.
   * @returns {Promise<void>}
   */
  async destroy () {
    await this.stop()
    rmSync(this.#dir, { recursive: true, force: true })
  }

  /**
   * A client for the test's own inspection; the caller quits it.
   * @returns {Redis}
   */
  client () {
    return new Redis(this.port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 })
  }
}

/**
 * Starts a private Redis for one test file and stops it when the test ends.
 * @param {Teardown} t
 * @param {string[]} [extraArgs]
 * @returns {Promise<RedisServer>}
 */
export async function startRedis (t, extraArgs = []) {
  const server = await RedisServer.start(extraArgs)
  t.teardown(() => server.destroy())
  return server
}
