// Starts bench/server.mjs in a child process and talks to it over IPC.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const SERVER = fileURLToPath(new URL('../server.mjs', import.meta.url))
/** Where `BENCH_PROFILE=1` puts the server's CPU profiles (open them in Chrome DevTools). */
export const PROFILE_DIR = fileURLToPath(new URL('../profiles/', import.meta.url))

/**
 * @param {string} redisUrl
 * @param {{ name?: string, execArgv?: string[], env?: Record<string, string> }} [options] `name`
 *   names the CPU profile (with BENCH_PROFILE=1); `execArgv` are Node options of the server
 *   process; `env`, variables added to its environment
 */
export async function startServer (redisUrl, options = {}) {
  const execArgv = [...options.execArgv ?? []]
  if (process.env.BENCH_PROFILE === '1') {
    mkdirSync(PROFILE_DIR, { recursive: true })
    execArgv.push('--cpu-prof', '--cpu-prof-dir', PROFILE_DIR, '--cpu-prof-name', `${options.name ?? 'server'}-${Date.now()}.cpuprofile`)
  }
  const child = fork(SERVER, [], { env: { ...process.env, ...options.env, REDIS_URL: redisUrl }, execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const samples = []
  const waiters = new Map()
  child.on('message', (message) => {
    if (message.type === 'memory') samples.push(message)
    waiters.get(message.type)?.(message)
    waiters.delete(message.type)
  })
  const ask = (type) => {
    const reading = new Promise((resolve) => waiters.set(type, resolve))
    child.send({ type })
    return reading
  }
  const [message] = await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => { throw new Error(`bench/server.mjs exited during start-up (code ${code})`) })
  ])
  if (message.type !== 'listening') throw new Error(`unexpected message from bench/server.mjs: ${JSON.stringify(message)}`)
  const port = message.port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    /** With BENCH_APP=example: the `@fastify/jwt` baseline's own server. */
    secondUrl: message.secondPort === undefined ? undefined : `http://127.0.0.1:${message.secondPort}`,
    pid: child.pid,
    /** Every memory sample received so far. */
    samples,
    /** Asks for memory samples every `everyMs`, each after a full GC if `collect` (needs --expose-gc). */
    sample (everyMs, collect = false) { child.send({ type: 'sample', everyMs, collect }) },
    /** One memory reading now (process.memoryUsage()). */
    memory: () => ask('memory'),
    /** The CPU time the server has used so far (process.cpuUsage(), in µs). */
    cpu: () => ask('cpu'),
    /** Closes the app and waits for the process to end. */
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.send({ type: 'close' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}
