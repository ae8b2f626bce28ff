// A TCP proxy that holds every chunk it forwards for a fixed delay in each direction: Redis
// as if across a network, without traffic control. Run in a process of its own (started by
// `startDelayProxy`), so that neither the load generator nor the server delays its timers.
//
// Each direction keeps its chunks in arrival order with the time each is due, and one timer
// writes out whatever is due; chunks are never merged, reordered or dropped. Timers fire on
// whole milliseconds at best, so the delay is a floor: the round trip the proxy adds is
// measured (see `addedRoundTrip`), never assumed.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const SELF = fileURLToPath(import.meta.url)

/**
 * Starts the proxy in a child process, forwarding `127.0.0.1:<listen port>` to `target`
 * with `delayMs` each way. Resolves once it listens.
 * @param {{ host: string, port: number }} target
 * @param {number} delayMs
 */
export async function startDelayProxy (target, delayMs) {
  const child = fork(SELF, [], {
    env: { ...process.env, PROXY_TARGET_HOST: target.host, PROXY_TARGET_PORT: String(target.port), PROXY_DELAY_MS: String(delayMs) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const [message] = await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => { throw new Error(`the delay proxy exited during start-up (code ${code})`) })
  ])
  return {
    port: message.port,
    url: `redis://127.0.0.1:${message.port}`,
    delayMs,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
  }
}

/**
 * The round trip the proxy adds, in ms: the median of `count` PINGs, one at a time,
 * through it (`proxied`) less the median straight to Redis (`direct`), both ioredis
 * clients. Also returns both medians.
 */
export async function addedRoundTrip (direct, proxied, count = 300) {
  const timed = async (client) => {
    const samples = []
    for (let i = 0; i < count; i++) {
      const start = performance.now()
      await client.ping()
      samples.push(performance.now() - start)
    }
    samples.sort((a, b) => a - b)
    return samples[Math.floor(samples.length / 2)]
  }
  // A warm-up of each, so that neither pays for its connection's first use.
  await direct.ping()
  await proxied.ping()
  const directMs = await timed(direct)
  const proxiedMs = await timed(proxied)
  return { addedMs: proxiedMs - directMs, directMs, proxiedMs }
}

/** Forwards what `from` sends to `to`, each chunk `delayMs` later, in order. */
function delayed (from, to, delayMs) {
  const queue = []
  let head = 0
  let timer = null
  let ended = false
  const flush = () => {
    timer = null
    const now = performance.now()
    while (head < queue.length && queue[head].due <= now) to.write(queue[head++].chunk)
    if (head === queue.length) {
      queue.length = 0
      head = 0
      if (ended) to.end()
    } else {
      timer = setTimeout(flush, queue[head].due - now)
    }
  }
  from.on('data', (chunk) => {
    queue.push({ due: performance.now() + delayMs, chunk })
    timer ??= setTimeout(flush, delayMs)
  })
  from.on('end', () => {
    ended = true
    if (timer === null && head === queue.length) to.end()
  })
}

function serve () {
  const target = { host: process.env.PROXY_TARGET_HOST, port: Number(process.env.PROXY_TARGET_PORT) }
  const delayMs = Number(process.env.PROXY_DELAY_MS)
  const sockets = new Set()
  const server = net.createServer((client) => {
    const upstream = net.connect(target)
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true)
      sockets.add(socket)
      // A peer going away ends both sides; the error itself is of no interest here.
      socket.on('error', () => { client.destroy(); upstream.destroy() })
      socket.on('close', () => { sockets.delete(socket); client.destroy(); upstream.destroy() })
    }
    delayed(client, upstream, delayMs)
    delayed(upstream, client, delayMs)
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
  const stop = () => {
    server.close()
    for (const socket of sockets) socket.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('disconnect', stop)
}

if (process.argv[1] === SELF && process.send !== undefined) serve()
