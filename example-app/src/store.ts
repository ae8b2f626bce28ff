import type { FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'
import { MemoryStore, type TokenSessionsOptions } from 'fastify-token-sessions'
import type { Config } from './config.js'

/** How long start-up waits for Redis to be ready before deciding it is not there. */
const REDIS_CONNECT_TIMEOUT_MS = 2000
/** How long one Redis command may take: a stalled Redis becomes a fast 503, not a hang. */
const REDIS_COMMAND_TIMEOUT_MS = 1000

/** Start-up cannot go on (e.g. no Redis in production). The message says why and what to fix. */
export class StartupError extends Error {
  override name = 'StartupError'
}

export type StoreOptions = Pick<TokenSessionsOptions, 'redis' | 'store'>

/** Where sessions, users and the limits' counts live. */
export type StorageKind = 'redis' | 'memory'

/** Where sessions live, and how to release it when the app closes. */
export interface StoreChoice {
  /** Redis, or this process's memory (development only: lost on restart, not shared). */
  kind: StorageKind
  options: StoreOptions
  /** Our Redis client when sessions live in Redis: the rate limits count there too. */
  redis: Redis | undefined
  close: () => Promise<void>
}

/**
 * Redis when it answers within {@link REDIS_CONNECT_TIMEOUT_MS}. Otherwise, outside
 * production, an in-memory store (sessions die with the process); in production, a
 * {@link StartupError}: several instances on private memory would each reject the
 * others' refresh tokens.
 *
 * We pass the plugin our connected client rather than the URL: we have connected it
 * anyway to learn whether Redis is there, and a URL would make the plugin open a second
 * connection. A client passed in stays ours, so we quit it on close.
 */
export async function chooseStore (config: Config, log: FastifyBaseLogger): Promise<StoreChoice> {
  const client = await connectRedis(config.redisUrl, log)
  if (client !== undefined) {
    log.info({ redis: hostOf(config.redisUrl) }, `sessions are stored in Redis at ${hostOf(config.redisUrl)}`)
    return { kind: 'redis', options: { redis: client }, redis: client, close: async () => { await client.quit().catch(() => client.disconnect()) } }
  }
  if (config.production) {
    throw new StartupError(`Redis at ${hostOf(config.redisUrl)} (REDIS_URL) is not reachable; refusing to start in production without a shared session store`)
  }
  log.warn({ redis: hostOf(config.redisUrl) },
    '!!! Redis is not reachable: sessions are kept IN MEMORY, lost on restart and not shared between instances. Development only !!!')
  const store = new MemoryStore()
  return { kind: 'memory', options: { store }, redis: undefined, close: async () => { await store.close() } }
}

/** A ready client, or undefined (and nothing left running) when Redis does not answer in time. */
async function connectRedis (url: string, log: FastifyBaseLogger): Promise<Redis | undefined> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    // A command waits through one reconnect attempt at most: an outage gives fast 503s.
    maxRetriesPerRequest: 1
  })
  watchConnection(client, log, hostOf(url))
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), REDIS_CONNECT_TIMEOUT_MS)
  })
  try {
    await Promise.race([client.connect(), deadline])
    return client
  } catch {
    // Stops ioredis from reconnecting in the background.
    client.disconnect()
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Logs when the connection drops and when it comes back, not every failed reconnect
 * (ioredis retries forever, up to every 2 s, which would flood the log during an outage).
 */
function watchConnection (client: Redis, log: FastifyBaseLogger, host: string): void {
  let down = false
  client.on('error', (err: Error & { code?: string }) => {
    if (down) return
    down = true
    log.warn({ redis: host, code: err.code, reason: err.message }, 'redis connection error')
  })
  client.on('ready', () => {
    if (down) log.info({ redis: host }, 'redis connection restored')
    down = false
  })
}

/** host:port of a Redis URL, for logs and messages: the URL itself may hold a password. */
function hostOf (url: string): string {
  try {
    return new URL(url).host
  } catch {
    return '(unparsable REDIS_URL)'
  }
}
