import { readFileSync } from 'node:fs'
import { Cluster, Redis, type Result } from 'ioredis'
import type {
  NewSession, Revocation, RevocationListener, RevokeAllOptions, RotateOutcome, RotateRequest, SessionInfo, SessionStore
} from './store.js'

/**
 * A client the store can run its scripts on: a standalone/Sentinel client or a Cluster.
 *
 * @example
 * ```ts
 * const client: RedisClient = new Cluster([{ host: 'redis-1', port: 6379 }])
 * const store = new RedisStore({ client })
 * ```
 */
export type RedisClient = Redis | Cluster

/**
 * Options of {@link RedisStore}: give it a client you own, or a URL for one it owns.
 *
 * @example
 * ```ts
 * new RedisStore({ url: process.env.REDIS_URL, keyPrefix: 'myapp:' })
 * new RedisStore({ client: sentinelClient, waitForReplicas: 1, waitTimeout: 500 })
 * ```
 */
export type RedisStoreOptions = (
  | { client: RedisClient, url?: never }
  | { url: string, client?: never }
) & {
  /** Prefix of every key (default `tsess:`). It must not contain `{` or `}`. */
  keyPrefix?: string
  /** For a client the store creates: how long a command may take, in ms (default 1000). */
  commandTimeout?: number
  /** For a client the store creates: called with each connection error. */
  onClientError?: (error: Error) => void
  /**
   * After each write, wait until this many replicas acknowledge it (Redis `WAIT`), so that
   * a failover cannot lose the latest rotation. Costs a second round trip; a write not
   * acknowledged within `waitTimeout` fails as a 503 (it may still reach the replicas).
   * Default 0. Not with a Cluster client.
   */
  waitForReplicas?: number
  /** How long `waitForReplicas` waits, in ms (default 500). */
  waitTimeout?: number
}

/**
 * The default prefix of every Redis key.
 *
 * @example
 * ```ts
 * await redis.zcard(`${DEFAULT_KEY_PREFIX}{${userId}}:idx`)   // how many sessions a user has
 * ```
 */
export const DEFAULT_KEY_PREFIX = 'tsess:'
/** The default command timeout of a client the store creates, in milliseconds. */
export const DEFAULT_COMMAND_TIMEOUT = 1000
/** How long a write waits for replica acknowledgements by default, in milliseconds. */
export const DEFAULT_WAIT_TIMEOUT = 500
/** On a Cluster, how soon the revocation feed moves to the next node after losing one. */
const CLUSTER_RESUBSCRIBE_DELAY = 100

declare module 'ioredis' {
  interface RedisCommander<Context> {
    tokenSessionsCreate (session: string, index: string, sessionId: string, hash: string, ttlMs: number, maxTtlMs: number, userAgent: string, userAgentRest: string, ip: string, label: string): Result<number, Context>
    tokenSessionsRotate (session: string, index: string, revoked: string, sessionId: string, presented: string, successor: string, ttlMs: number, graceMs: number, channel: string, rememberMs: number): Result<[number, number?], Context>
    tokenSessionsRevoke (session: string, index: string, revoked: string, sessionId: string, channel: string, rememberMs: number): Result<number, Context>
    tokenSessionsRevokeAll (index: string, guard: string, revoked: string, sessionPrefix: string, requireGuard: '0' | '1', except: string, channel: string, rememberMs: number): Result<string[] | -1, Context>
    tokenSessionsList (index: string, sessionPrefix: string): Result<string[][], Context>
  }
}

function read (name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
}

/**
 * A script, with each `--@include <part>` line replaced by that part (now.lua,
 * reindex.lua, announce.lua). A script includes only the parts it uses, where it uses
 * them: a helper defined at the top would be made anew, as a closure, on every call, and
 * rotate, which runs on every refresh, needs its helpers only when it detects theft.
 */
function lua (name: string): string {
  return read(name).replace(/^--@include (\w+)\n/gm, (_line, part: string) => read(part))
}

const SCRIPTS = {
  tokenSessionsCreate: { numberOfKeys: 2, lua: lua('create') },
  tokenSessionsRotate: { numberOfKeys: 3, lua: lua('rotate') },
  tokenSessionsRevoke: { numberOfKeys: 3, lua: lua('revoke') },
  tokenSessionsRevokeAll: { numberOfKeys: 3, lua: lua('revoke-all') },
  tokenSessionsList: { numberOfKeys: 1, lua: lua('list') }
} as const

const ROTATE_STATUS = ['missing', 'rotated', 'replayed', 'reused'] as const

/**
 * A user id inside a hash tag: `{` and `}` would end the tag early (and `%` is escaped
 * so the mapping stays one-to-one), so that all of a user's keys share one Cluster slot.
 */
function tagOf (userId: string): string {
  return '{' + userId.replace(/[%{}]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase()) + '}'
}

/**
 * Sessions in Redis. Each user's keys share the hash tag `{userId}`, so every operation,
 * one Lua script in one round trip, touches a single Cluster slot:
 *
 * - `<prefix>{<userId>}:s:<sessionId>`: a hash with the current and previous refresh-token
 *   id hashes (`c`, `p`), when it last rotated (`r`), was created (`t`), last used (`u`)
 *   and must end (`x`), and the client's user agent (`a` and `b`, 64 bytes each), IP (`i`)
 *   and label (`l`).
 * - `<prefix>{<userId>}:idx`: a sorted set of the user's session ids scored by expiry.
 *
 * - `<prefix>revoked`: a sorted set of revoked session ids scored by when their access
 *   tokens may last live, and the channel of the same name on which each revocation is
 *   published, so that every app instance rejects those access tokens at once.
 *
 * Every key expires with the tokens it serves.
 *
 * @example
 * ```ts
 * import { Redis } from 'ioredis'
 * import tokenSessions, { RedisStore } from 'fastify-token-sessions'
 * const redis = new Redis({ commandTimeout: 1000 })
 * await app.register(tokenSessions, { secret, store: new RedisStore({ client: redis }) })
 * ```
 */
export class RedisStore implements SessionStore {
  /** The client the scripts run on. */
  readonly client: RedisClient
  readonly #prefix: string
  readonly #owned: boolean
  /** The client's own keyPrefix, which ioredis adds to KEYS but not to ARGV. */
  readonly #clientPrefix: string
  /** The sorted set of revocations; also the name of the channel that announces them. */
  readonly #cluster: boolean
  readonly #channel: string
  readonly #replicas: number
  readonly #waitTimeout: number

  constructor (options: RedisStoreOptions) {
    this.#prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX
    if (/[{}]/.test(this.#prefix)) {
      throw new TypeError('RedisStore: keyPrefix must not contain "{" or "}" (they would break the per-user hash tag)')
    }
    if (options.client !== undefined) {
      this.client = options.client
      this.#owned = false
    } else {
      this.client = ownClient(options.url, options.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT, options.onClientError)
      this.#owned = true
    }
    this.#cluster = this.client instanceof Cluster
    this.#clientPrefix = (this.client.options as { keyPrefix?: string }).keyPrefix ?? ''
    if (this.#cluster && this.#clientPrefix !== '') {
      throw new TypeError('RedisStore: give a Cluster client no keyPrefix; use the store\'s keyPrefix option')
    }
    // ioredis prefixes keys, not channels: the channel carries the whole name.
    this.#channel = `${this.#clientPrefix}${this.#prefix}revoked`
    this.#replicas = options.waitForReplicas ?? 0
    this.#waitTimeout = options.waitTimeout ?? DEFAULT_WAIT_TIMEOUT
    if (!Number.isInteger(this.#replicas) || this.#replicas < 0 || (this.#cluster && this.#replicas > 0)) {
      throw new TypeError('RedisStore: waitForReplicas must be a whole number ≥ 0, and 0 with a Cluster client')
    }
    if (/[{}]/.test(this.#clientPrefix)) {
      throw new TypeError('RedisStore: the client\'s keyPrefix must not contain "{" or "}" (they would break the per-user hash tag)')
    }
    for (const [name, definition] of Object.entries(SCRIPTS)) this.client.defineCommand(name, definition)
  }

  /** The key of one session. */
  sessionKey (userId: string, sessionId: string): string {
    return `${this.#userPrefix(userId)}:s:${sessionId}`
  }

  /**
   * The sorted set of revocations. One set for the whole store, except on a Cluster, where
   * a script may touch one slot only: there each user has a set under the user's hash tag.
   */
  revokedKey (userId: string): string {
    return this.#revokedKeyOf(this.#userPrefix(userId))
  }

  /** The key of a user's session index. */
  indexKey (userId: string): string {
    return `${this.#userPrefix(userId)}:idx`
  }

  /** The prefix of every key of the user: computed once per operation, not once per key. */
  #userPrefix (userId: string): string {
    return this.#prefix + tagOf(userId)
  }

  #revokedKeyOf (userPrefix: string): string {
    return this.#cluster ? `${userPrefix}:rv` : `${this.#prefix}revoked`
  }

  async create (session: NewSession): Promise<number> {
    const { userId, sessionId, client } = session
    // Redis keeps a small hash as a compact listpack only while every value fits in
    // hash-max-listpack-value (64 bytes by default); one longer value would turn the
    // session into a hashtable of three times the memory. So the user agent (ASCII, at
    // most 128 characters) is stored in two halves.
    const userAgent = client.userAgent ?? ''
    const ttlMs = await this.client.tokenSessionsCreate(
      this.sessionKey(userId, sessionId), this.indexKey(userId), sessionId, session.tokenHash, session.ttlMs, session.maxTtlMs,
      userAgent.slice(0, 64), userAgent.slice(64, 128), client.ip ?? '', client.label ?? ''
    )
    await this.#acknowledged()
    return ttlMs
  }

  async rotate (request: RotateRequest): Promise<RotateOutcome> {
    const { sessionId } = request
    const user = this.#userPrefix(request.userId)
    const [code, ttlMs] = await this.client.tokenSessionsRotate(
      `${user}:s:${sessionId}`, `${user}:idx`, this.#revokedKeyOf(user), sessionId,
      request.presentedHash, request.successorHash, request.ttlMs, request.graceMs, this.#channel, request.rememberMs
    )
    const status = ROTATE_STATUS[code as 0 | 1 | 2 | 3]
    await this.#acknowledged()
    return status === 'rotated' || status === 'replayed' ? { status, ttlMs: ttlMs as number } : { status }
  }

  async revoke (userId: string, sessionId: string, rememberMs: number): Promise<boolean> {
    const existed = await this.client.tokenSessionsRevoke(
      this.sessionKey(userId, sessionId), this.indexKey(userId), this.revokedKey(userId), sessionId, this.#channel, rememberMs
    )
    await this.#acknowledged()
    return existed === 1
  }

  async revokeAll (userId: string, options: RevokeAllOptions): Promise<string[] | null> {
    const guard = options.ifLive === undefined ? this.indexKey(userId) : this.sessionKey(userId, options.ifLive)
    const revoked = await this.client.tokenSessionsRevokeAll(
      this.indexKey(userId), guard, this.revokedKey(userId), this.#sessionPrefix(userId), options.ifLive === undefined ? '0' : '1',
      options.except ?? '', this.#channel, options.rememberMs
    )
    await this.#acknowledged()
    return revoked === -1 ? null : revoked
  }

  /** Answers whether Redis answers. */
  async ping (): Promise<void> {
    await this.client.ping()
  }

  /** Redis's `maxmemory-policy` (rejects where `CONFIG` is not allowed, as on some hosted Redis). */
  async evictionPolicy (): Promise<string | undefined> {
    const reply = await this.client.call('CONFIG', 'GET', 'maxmemory-policy') as string[]
    return reply[1]
  }

  /**
   * With `waitForReplicas`, the replicas' acknowledgement of the write; without, nothing
   * to wait for: undefined, not an async call's promise, on every operation.
   */
  #acknowledged (): Promise<void> | undefined {
    return this.#replicas === 0 ? undefined : this.#waitForReplicas()
  }

  async #waitForReplicas (): Promise<void> {
    const acknowledged = await (this.client as Redis).wait(this.#replicas, this.#waitTimeout)
    if (acknowledged < this.#replicas) {
      throw new Error(`${acknowledged} of ${this.#replicas} replicas acknowledged the write within ${this.#waitTimeout} ms`)
    }
  }

  async isLive (userId: string, sessionId: string): Promise<boolean> {
    return await this.client.exists(this.sessionKey(userId, sessionId)) === 1
  }

  async revocations (): Promise<Revocation[]> {
    if (!this.#cluster) return pairs(await this.client.zrange(this.revokedKey(''), '0', '-1', 'WITHSCORES'))
    // On a Cluster the revocations are spread over the users' slots: scan every primary.
    const revocations: Revocation[] = []
    for (const node of (this.client as Cluster).nodes('master')) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${this.#prefix}{*}:rv`, 'COUNT', 1000)
        cursor = next
        for (const key of keys) revocations.push(...pairs(await node.zrange(key, '0', '-1', 'WITHSCORES')))
      } while (cursor !== '0')
    }
    return revocations
  }

  /**
   * Watches the revocation channel on a connection of its own (a subscribed connection
   * can do nothing else). After every (re)connect it subscribes again and waits for Redis
   * to confirm before it reports `connected`, so a reload that follows misses nothing.
   */
  async watchRevocations (listener: RevocationListener): Promise<() => Promise<void>> {
    const channel = this.#channel
    const watch = (subscriber: Redis): Redis => {
      subscriber.on('error', () => {})
      subscriber.on('close', () => listener.disconnected())
      subscriber.on('message', (from: string, message: string) => {
        if (from === channel) listener.revoked(parseAnnouncement(message))
      })
      subscriber.on('ready', () => { void subscribe(subscriber) })
      // A copy of a lazyConnect client is lazy too, and nothing else would make it connect.
      if (subscriber.status === 'wait') subscriber.connect().catch(() => {})
      return subscriber
    }
    const subscribe = async (subscriber: Redis): Promise<void> => {
      try {
        await subscriber.subscribe(channel)
        listener.connected()
      /* c8 ignore start -- only when the connection drops between 'ready' and the reply to
         SUBSCRIBE, which no test can time; 'close', then 'ready' (subscribing again), follow. */
      } catch {}
      /* c8 ignore stop */
    }
    if (!this.#cluster) {
      const subscriber = watch((this.client as Redis).duplicate())
      return async () => {
        subscriber.removeAllListeners('close')
        subscriber.disconnect()
      }
    }
    return this.#watchCluster(watch)
  }

  /**
   * On a Cluster, a message published on any node reaches every node, so one connection
   * to any node serves. It is the store's own, not the Cluster client's subscriber: that
   * one moves to another node by itself when its node goes away, and resubscribes, but
   * tells no one, and what was published meanwhile would be missed without a reload.
   * Here each move is a new connection, whose 'close' and 'ready' reach the listener as a
   * standalone client's do: down, then up and reloaded. Nodes are taken in turn, so a
   * dead one is not picked twice in a row.
   */
  #watchCluster (watch: (subscriber: Redis) => Redis): () => Promise<void> {
    const cluster = this.client as Cluster
    let subscriber: Redis | undefined
    let retry: NodeJS.Timeout | undefined
    let turn = 0
    const next = (): void => {
      const nodes = cluster.nodes('all')
      // Before the client has learnt its nodes: wait until it has. A lazyConnect client
      // connects on its first command; this watch is one.
      if (nodes.length === 0) {
        cluster.once('ready', next)
        if (cluster.status === 'wait') cluster.connect().catch(() => {})
        return
      }
      subscriber = watch((nodes[turn++ % nodes.length] as Redis).duplicate())
      subscriber.once('end', () => { retry = setTimeout(next, CLUSTER_RESUBSCRIBE_DELAY) })
    }
    next()
    return async () => {
      cluster.off('ready', next)
      clearTimeout(retry)
      if (subscriber === undefined) return
      subscriber.removeAllListeners('close')
      subscriber.removeAllListeners('end')
      subscriber.disconnect()
    }
  }

  async list (userId: string): Promise<SessionInfo[]> {
    const rows = await this.client.tokenSessionsList(this.indexKey(userId), this.#sessionPrefix(userId))
    return rows.map(([sessionId, created, lastUsed, expires, userAgent, ip, label]) => ({
      sessionId: sessionId as string,
      createdAt: Number(created),
      lastUsedAt: Number(lastUsed),
      expiresAt: Number(expires),
      ...(userAgent === '' ? {} : { userAgent }),
      ...(ip === '' ? {} : { ip }),
      ...(label === '' ? {} : { label })
    })).sort((a, b) => a.createdAt - b.createdAt)
  }

  /** Where a script finds the user's session keys; ioredis prefixes KEYS, not ARGV. */
  #sessionPrefix (userId: string): string {
    return this.#clientPrefix + this.sessionKey(userId, '')
  }

  /** Quits the client only if this store created it: a client passed in stays the caller's. */
  async close (): Promise<void> {
    if (!this.#owned) return
    if (this.client.status !== 'ready') {
      // Not connected: stop the reconnect loop; there is nothing to flush.
      this.client.disconnect()
      return
    }
    const ended = new Promise((resolve) => this.client.once('end', resolve))
    await this.client.quit()
    await ended
  }
}

/** A ZRANGE WITHSCORES reply as revocations. */
function pairs (flat: string[]): Revocation[] {
  const revocations: Revocation[] = []
  for (let i = 0; i < flat.length; i += 2) revocations.push({ sessionId: flat[i] as string, until: Number(flat[i + 1]) })
  return revocations
}

/** "<until> <id> <id> ..." as the scripts publish it. */
function parseAnnouncement (message: string): Revocation[] {
  const [until, ...sessionIds] = message.split(' ')
  return sessionIds.map((sessionId) => ({ sessionId, until: Number(until) }))
}

function ownClient (url: string, commandTimeout: number, onError: ((error: Error) => void) | undefined): Redis {
  const client = new Redis(url, {
    commandTimeout,
    connectTimeout: Math.max(commandTimeout, 1000),
    // Commands wait in the offline queue only through one reconnect attempt, and never
    // longer than commandTimeout: an outage becomes a fast 503, not a pile of requests.
    maxRetriesPerRequest: 1
  })
  // Without a listener ioredis prints every reconnect failure to stderr.
  client.on('error', onError ?? (() => {}))
  return client
}
