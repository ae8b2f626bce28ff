import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { fail } from '../invalid-option.js'
import { RevocationBuckets, SLOTS, STANDALONE_BUCKETS } from './buckets.js'
import { DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT } from './feed-heartbeat.js'
import { RedisRevocationFeed } from './redis-feed.js'
import { MAX_USER_AGENT } from './store.js'
import type {
  CreateOutcome, Deadline, NewSession, PageRequest, RevocationFeed, RevokeAllOptions, RevokeAllOutcome, RevokeRequest, RotateOutcome,
  RotateRequest, SessionPage, SessionStore, StepUpOutcome, StepUpRequest
} from './store.js'

/**
 * An ioredis client, version 5 or 6: a standalone or Sentinel client (`Redis`) or a
 * `Cluster`. Described by what the store relies on rather than by one copy's class, so
 * that an app's own ioredis, whatever its version, fits.
 *
 * @example
 * ```ts
 * import { Cluster } from 'ioredis'           // 5.x or 6.x
 * const store = new RedisStore({ client: new Cluster([{ host: 'redis-1', port: 6379 }]) })
 * ```
 */
export interface RedisClient {
  /** True on a Cluster client (ioredis sets it on both kinds). */
  readonly isCluster: boolean
  readonly status: string
  defineCommand (name: string, definition: { lua: string, numberOfKeys?: number }): void
  disconnect (): void
}

/** The rest of a client's API that the store calls: the same in ioredis 5 and 6. */
interface Connection extends RedisClient {
  readonly options: { keyPrefix?: string | undefined }
  ping (): Promise<unknown>
  time (): Promise<Array<string | number>>
  wait (replicas: number, timeout: number): Promise<number>
  call (command: string, ...args: string[]): Promise<unknown>
  quit (): Promise<unknown>
  once (event: 'end', listener: () => void): unknown
  on (event: 'error', listener: (error: Error) => void): unknown
  off (event: 'error', listener: (error: Error) => void): unknown
  listenerCount (event: 'error'): number
}

/** The scripts, as commands once defined on a client (see {@link SCRIPTS}). */
interface Scripts {
  tokenSessionsCreate (
    session: string, index: string, stamp: string, revoked: string, sessionId: string, hash: string, ttlMs: number, maxTtlMs: number,
    userAgent: string, userAgentRest: string, ip: string, label: string, agent: string, authenticatedAt: number | '', maxSessions: number,
    sessionPrefix: string, channel: string, rememberMs: number, boundKey: string, deadline: number | '', browserSession: '1' | ''
  ): Promise<Array<number | string>>
  tokenSessionsRotate (
    session: string, index: string, revoked: string, proofKey: string, first: string, sessionId: string, presented: string, successor: string, ttlMs: number, graceMs: number,
    channel: string, rememberMs: number, agent: string, maxTtlMs: number, proofJkt: string, proofTtlMs: number | '', deadline: number | '', writeId: string
  ): Promise<[number, number?, number?]>
  tokenSessionsStepUp (
    session: string, index: string, sessionId: string, successor: string, ttlMs: number, maxTtlMs: number, deadline: number | '', writeId: string,
    browserMaxTtlMs: number
  ): Promise<[number, number?, number?, number?]>
  tokenSessionsRevoke (
    session: string, index: string, revoked: string, first: string, sessionId: string, channel: string, rememberMs: number, presented: string, graceMs: number,
    agent: string, proofJkt: string, deadline: number | '', writeId: string
  ): Promise<number>
  tokenSessionsRevokeAll (
    index: string, guard: string, spared: string, stamp: string, revoked: string, first: string, userId: string, guardId: string, sparedId: string,
    channel: string, rememberMs: number, presented: string, graceMs: number, agent: string, proofJkt: string, deadline: number | '', writeId: string
  ): Promise<[number, string] | -1 | -2 | -3>
  tokenSessionsList (index: string, sessionPrefix: string, cursor: number | '', limit: number): Promise<[string, ...string[][]]>
  tokenSessionsLive (session: string, index: string, sessionId: string): Promise<number>
}

/** The script the revocation feed proves its path with (see feed-heartbeat.ts). */
export interface HeartbeatWriter {
  tokenSessionsHeartbeat (key: string, channel: string, beat: number, ttlMs: number): Promise<number>
}

/** The script the revocation feed reads the buckets with (see redis-feed.ts), as bytes. */
export interface BucketReader {
  tokenSessionsRevocationsBuffer (bucket: string, min: string, max: string, offset: number, count: number): Promise<Buffer>
}

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
  /**
   * Called with each connection error: of a client the store creates, of the connections
   * its revocation feed opens, and of a client passed in that has no `'error'` listener of
   * its own (the store adds one, and removes it in `close`). Without it a client passed in
   * is left alone: give it a listener (ioredis prints an error it has no listener for).
   */
  onClientError?: (error: Error) => void
  /**
   * After each write to a session, wait until this many replicas acknowledge it (Redis
   * `WAIT`), so that a failover cannot lose the latest rotation. Costs a second round trip;
   * a write not acknowledged within `waitTimeout` fails as a 503 (it may still reach the
   * replicas). Default 0. Not with a Cluster client.
   */
  waitForReplicas?: number
  /** How long `waitForReplicas` waits, in ms (default 500). */
  waitTimeout?: number
  /**
   * How often each instance proves its revocation feed with a heartbeat, in ms (default
   * 500): a write that Redis publishes back to the instance alone. On a Cluster each
   * primary takes its turn, each once an interval.
   */
  heartbeatInterval?: number
  /**
   * How long a heartbeat may take from its write to its arrival before the feed counts as
   * down, in ms (default 1000). A path that goes silent is known within the interval and
   * this timeout (1.5 s by default).
   */
  heartbeatTimeout?: number
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
/**
 * The option a store's URL or client came from, as its errors name it: `url` or `client`,
 * or the plugin's `redis` for a store the plugin opens. Internal: not part of the options.
 */
export const SOURCE_OPTION: unique symbol = Symbol('fastify-token-sessions source option')
/** Redis keeps a hash compact while every value fits in this many bytes (`hash-max-listpack-value`'s default). */
const LISTPACK_VALUE = 64

function read (name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
}

/** A script as Redis runs it: its `--@include` lines replaced by their parts (see {@link inlineIncludes}). */
function lua (name: string): string {
  return inlineIncludes(read(name), read)
}

/**
 * A script's source with each `--@include <part>` line replaced by that part (now.lua,
 * started.lua, ordered.lua, prune.lua, judge.lua, announce.lua, resend.lua, extend.lua). A script includes only the parts it uses, where it
 * uses them: a helper defined at the top would be made anew, as a closure, on every call,
 * and rotate, which runs on every refresh, needs its helpers only when it detects a replay
 * or theft. Line ends may be CRLF (a checkout on Windows); the line may be indented.
 */
export function inlineIncludes (source: string, part: (name: string) => string): string {
  return source.replace(/^[ \t]*--@include (\w+)\r?$/gm, (_line, name: string) => part(name))
}

const SCRIPTS = {
  tokenSessionsCreate: { numberOfKeys: 4, lua: lua('create') },
  tokenSessionsRotate: { numberOfKeys: 5, lua: lua('rotate') },
  tokenSessionsStepUp: { numberOfKeys: 2, lua: lua('step-up') },
  tokenSessionsRevoke: { numberOfKeys: 4, lua: lua('revoke') },
  tokenSessionsRevokeAll: { numberOfKeys: 6, lua: lua('revoke-all') },
  tokenSessionsList: { numberOfKeys: 1, lua: lua('list') },
  tokenSessionsLive: { numberOfKeys: 2, lua: lua('live') },
  tokenSessionsRevocations: { numberOfKeys: 1, lua: lua('revocations') },
  tokenSessionsHeartbeat: { numberOfKeys: 1, lua: lua('heartbeat') }
} as const

const ROTATE_STATUS = ['missing', 'rotated', 'replayed', 'reused', 'unbound', 'wrong-key', 'proof-replayed', 'late'] as const
const REVOKE_STATUS = ['missing', 'revoked', 'reused', 'late'] as const

/**
 * A user id inside a hash tag: `{` and `}` would end the tag early (and `%` is escaped
 * so the mapping stays one-to-one), so that all of a user's keys share one Cluster slot.
 */
function tagOf (userId: string): string {
  return '{' + userId.replace(/[%{}]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase()) + '}'
}

/**
 * Where a write keeps its outcome for a resent delivery of it (see
 * {@link Deadline.writeId}), under the user's hash tag; without a write id, a key the
 * script never touches.
 */
function writeKey (keys: UserKeys, write: Deadline): string {
  return write.writeId === undefined ? keys.index : `${keys.user}:w:${write.writeId}`
}

/** Every key one operation on a user may touch, built from one user prefix. */
interface UserKeys {
  /** The prefix of every key of the user, hash tag included. */
  user: string
  session: string
  index: string
  stamp: string
  revoked: string
  /** What the scripts append a session id to; ioredis prefixes KEYS, not ARGV. */
  sessionPrefix: string
}

/**
 * Sessions in Redis. Each user's keys share the hash tag `{userId}`, so every operation,
 * one Lua script in one round trip, touches a single Cluster slot:
 *
 * - `<prefix>{<userId>}:s:<sessionId>`: a hash with the current and previous refresh-token
 *   id hashes (`c`, `p`), when it last rotated (`r`), the client's user agent (`a` and `b`,
 *   64 bytes each), IP (`i`) and label (`l`), and the tag of the agent that last rotated
 *   it (`g`, only when replays are checked by agent), and the thumbprint of the DPoP key it
 *   is bound to (`j`, only for a bound session). Its absolute end is its start (in
 *   the index) plus the maximum lifetime each rotation passes: not stored.
 * - `<prefix>{<userId>}:idx`: a sorted set holding each live session twice: its id scored
 *   by when it expires (for pruning and the per-user cap) and `.` and its id scored by
 *   minus when it started (for listing, newest first). One key, not two: a key costs more
 *   than the entries of a user's few sessions. A session is live while its hash and its
 *   start entry both exist.
 * - `<prefix>{<userId>}:dp:<hash>`: a DPoP proof's id, seen by a refresh, until the proof
 *   goes stale.
 * - `<prefix>{<thumbprint>}:dpop:<hash>`: a DPoP proof's id, seen by `authenticate` (with
 *   `dpop.sharedReplayCheck`), under its key's thumbprint, until the proof goes stale.
 * - `<prefix>{<userId>}:st`: the user's latest revocation of all sessions (the stamp),
 *   `u:<time>:<spared session id>:<user id>`: every session that started before it is over.
 * - `<prefix>{<tag>}:revoked`: the revocation buckets, sorted sets of revoked session ids,
 *   and of stamps, scored by when access tokens they cover may last live: on a Cluster one
 *   per hash slot (its tag hashes to that slot), on one server 1,024. A user's revocations
 *   go to the user's bucket (on a Cluster, in the user's slot), written by the same script
 *   as the session change they record. Each revocation is
 *   also published on the channel `<prefix>revoked`, so that every app instance rejects
 *   those access tokens at once.
 *
 * Every key expires with the tokens it serves. No script walks all of a user's sessions:
 * revoking them all drops the index in one step, and pruning, listing and the cap each
 * read at most a hundred.
 *
 * @example
 * ```ts
 * import { Redis } from 'ioredis'
 * import tokenSessions, { RedisStore, loggable } from 'fastify-token-sessions'
 * const redis = new Redis({ commandTimeout: 1000 })
 * // ioredis reports every reconnect attempt of an outage (to stderr, without a listener): one line per 10 s.
 * let quietUntil = 0
 * const onClientError = (err: Error): void => {
 *   if (Date.now() < quietUntil) return
 *   quietUntil = Date.now() + 10_000
 *   app.log.warn({ err: loggable(err) }, 'Redis connection error (others within 10 s not logged)')
 * }
 * await app.register(tokenSessions, { secret, store: new RedisStore({ client: redis, onClientError }) })
 * ```
 */
export class RedisStore implements SessionStore {
  /** The client the scripts run on. */
  readonly client: RedisClient
  /** The same client, typed with what the store calls on it and with the scripts defined. */
  readonly #redis: Connection & Scripts
  /** Revocations announced on the store's channel, and reloaded from its sorted sets. */
  readonly revocationFeed: RevocationFeed
  readonly #prefix: string
  readonly #owned: boolean
  /** The client's own keyPrefix, which ioredis adds to KEYS but not to ARGV. */
  readonly #clientPrefix: string
  readonly #cluster: boolean
  /** The channel that announces revocations (named as the store-wide sorted set is). */
  readonly #channel: string
  readonly #replicas: number
  readonly #waitTimeout: number
  readonly #buckets: RevocationBuckets
  /** The option the client or URL came from, named by errors about them. */
  readonly #source: string
  /** The error listener the store added to a client passed in without one (removed in `close`). */
  readonly #addedListener: ((error: Error) => void) | undefined

  constructor (options: RedisStoreOptions) {
    this.#prefix = checkedKeyPrefix(options.keyPrefix ?? DEFAULT_KEY_PREFIX, 'keyPrefix')
    this.#source = (options as { [SOURCE_OPTION]?: string })[SOURCE_OPTION] ?? (options.client === undefined ? 'url' : 'client')
    // Checked before a client is opened: a refused store leaves nothing connecting.
    const heartbeatInterval = checkedMs(options.heartbeatInterval, 'heartbeatInterval', DEFAULT_HEARTBEAT_INTERVAL)
    const heartbeatTimeout = checkedMs(options.heartbeatTimeout, 'heartbeatTimeout', DEFAULT_HEARTBEAT_TIMEOUT)
    const onError = options.onClientError
    if (options.client !== undefined) {
      this.client = options.client
      this.#owned = false
      // A client without an 'error' listener has ioredis print each error to stderr (every
      // reconnect attempt of an outage); one with a listener is the app's to report.
      const given = options.client as Connection
      this.#addedListener = onError !== undefined && given.listenerCount('error') === 0 ? onError : undefined
      if (this.#addedListener !== undefined) given.on('error', this.#addedListener)
    } else {
      this.client = ownClient(checkedUrl(options.url, this.#source), options.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT, onError)
      this.#owned = true
      this.#addedListener = undefined
    }
    // Not `instanceof`: the app's client may come from another copy of ioredis.
    this.#cluster = this.client.isCluster
    this.#redis = this.client as Connection & Scripts
    this.#clientPrefix = this.#redis.options.keyPrefix ?? ''
    if (this.#cluster && this.#clientPrefix !== '') {
      fail('the client\'s keyPrefix', 'must be unset on a Cluster client: give the store\'s keyPrefix option instead')
    }
    // ioredis prefixes keys, not channels: the channel carries the whole name.
    this.#channel = `${this.#clientPrefix}${this.#prefix}revoked`
    this.#replicas = options.waitForReplicas ?? 0
    this.#waitTimeout = options.waitTimeout ?? DEFAULT_WAIT_TIMEOUT
    if (!Number.isInteger(this.#replicas) || this.#replicas < 0 || (this.#cluster && this.#replicas > 0)) {
      fail('waitForReplicas', 'must be a whole number ≥ 0, and 0 with a Cluster client')
    }
    checkedKeyPrefix(this.#clientPrefix, 'the client\'s keyPrefix')
    for (const [name, definition] of Object.entries(SCRIPTS)) this.client.defineCommand(name, definition)
    this.#buckets = new RevocationBuckets(this.#prefix, this.#cluster ? SLOTS : STANDALONE_BUCKETS)
    const buckets = this.#buckets
    this.revocationFeed = new RedisRevocationFeed(this.#redis, this.#cluster, {
      channel: this.#channel,
      buckets: buckets.all,
      heartbeatKey: (slot) => buckets.inSlot(slot, 'heartbeat'),
      heartbeatChannel: `${this.#clientPrefix}${this.#prefix}heartbeat:`,
      heartbeatInterval,
      heartbeatTimeout,
      onError: onError ?? ignore
    })
  }

  /** The key of one session. */
  sessionKey (userId: string, sessionId: string): string {
    return this.#keys(userId, sessionId).session
  }

  /** The key of a user's session index. */
  indexKey (userId: string): string {
    return this.#keys(userId, '').index
  }

  /**
   * The keys of one operation, from the user's prefix computed once; the revocation
   * bucket is the one in the user's hash slot, so that a script touches one slot only.
   */
  #keys (userId: string, sessionId: string): UserKeys {
    const user = this.#prefix + tagOf(userId)
    return {
      user,
      session: `${user}:s:${sessionId}`,
      index: `${user}:idx`,
      stamp: `${user}:st`,
      revoked: this.#buckets.of(user),
      sessionPrefix: `${this.#clientPrefix}${user}:s:`
    }
  }

  async create (session: NewSession): Promise<CreateOutcome> {
    const { userId, sessionId, client } = session
    // Redis keeps a small hash as a compact listpack only while every value fits in
    // LISTPACK_VALUE bytes; one longer value would turn the session into a hashtable of
    // three times the memory. So the user agent (ASCII, at most MAX_USER_AGENT = 128
    // characters) is stored in two halves.
    const userAgent = (client.userAgent ?? '').slice(0, MAX_USER_AGENT)
    const keys = this.#keys(userId, sessionId)
    const reply = await this.#redis.tokenSessionsCreate(
      keys.session, keys.index, keys.stamp, keys.revoked, sessionId, session.tokenHash, session.ttlMs, session.maxTtlMs,
      userAgent.slice(0, LISTPACK_VALUE), userAgent.slice(LISTPACK_VALUE), client.ip ?? '', client.label ?? '', session.agent ?? '',
      session.authenticatedAt ?? '', session.maxSessions, keys.sessionPrefix, this.#channel, session.rememberMs, session.boundKey ?? '',
      session.deadline ?? '', session.remembered === false ? '1' : ''
    )
    await this.#acknowledged()
    const [ttlMs, startedAt, ...ended] = reply
    if (ttlMs === -1) return { status: 'stale' }
    if (ttlMs === -2) return { status: 'late' }
    return { status: 'created', ttlMs: ttlMs as number, startedAt: startedAt as number, ended: ended as string[] }
  }

  async rotate (request: RotateRequest): Promise<RotateOutcome> {
    const { sessionId } = request
    const keys = this.#keys(request.userId, sessionId)
    const { proof } = request
    const [code, ttlMs, startedAt] = await this.#redis.tokenSessionsRotate(
      keys.session, keys.index, keys.revoked, proof === undefined ? keys.index : `${keys.user}:dp:${proof.id}`, writeKey(keys, request), sessionId,
      request.presentedHash, request.successorHash, request.ttlMs, request.graceMs, this.#channel, request.rememberMs, request.agent ?? '',
      request.maxTtlMs, proof?.key ?? '', proof?.ttlMs ?? '', request.deadline ?? '', request.writeId ?? ''
    )
    const status = ROTATE_STATUS[code as 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7]
    await this.#acknowledged()
    return status === 'rotated' || status === 'replayed' ? { status, ttlMs: ttlMs as number, startedAt: startedAt as number } : { status }
  }

  async stepUp (request: StepUpRequest): Promise<StepUpOutcome> {
    const { sessionId } = request
    const keys = this.#keys(request.userId, sessionId)
    const [code, ttlMs, startedAt, remembered] = await this.#redis.tokenSessionsStepUp(
      keys.session, keys.index, sessionId, request.successorHash, request.ttlMs, request.maxTtlMs, request.deadline ?? '', request.writeId ?? '',
      request.browserSessionMaxTtlMs
    )
    await this.#acknowledged()
    if (code === 1) return { status: 'stepped-up', ttlMs: ttlMs as number, startedAt: startedAt as number, remembered: remembered === 1 }
    return code === 7 ? { status: 'late' } : { status: 'missing' }
  }

  async revoke (request: RevokeRequest): Promise<'revoked' | 'missing' | 'reused' | 'late'> {
    const { sessionId, presented } = request
    const keys = this.#keys(request.userId, sessionId)
    const code = await this.#redis.tokenSessionsRevoke(
      keys.session, keys.index, keys.revoked, writeKey(keys, request), sessionId, this.#channel, request.rememberMs,
      presented?.hash ?? '', presented?.graceMs ?? 0, presented?.agent ?? '', presented?.proofKey ?? '', request.deadline ?? '', request.writeId ?? ''
    )
    await this.#acknowledged()
    return REVOKE_STATUS[code as 0 | 1 | 2 | 3]
  }

  async revokeAll (userId: string, options: RevokeAllOptions): Promise<RevokeAllOutcome> {
    const { ifLive = '', except = '', presented } = options
    const keys = this.#keys(userId, ifLive)
    const reply = await this.#redis.tokenSessionsRevokeAll(
      keys.index, keys.session, this.#keys(userId, except).session, keys.stamp, keys.revoked, writeKey(keys, options), userId, ifLive, except,
      this.#channel, options.rememberMs, presented?.hash ?? '', presented?.graceMs ?? 0, presented?.agent ?? '', presented?.proofKey ?? '',
      options.deadline ?? '', options.writeId ?? ''
    )
    await this.#acknowledged()
    if (reply === -1) return { status: 'missing' }
    if (reply === -2) return { status: 'reused' }
    if (reply === -3) return { status: 'late' }
    const [startedBefore, spared] = reply
    return spared === '' ? { status: 'revoked', startedBefore } : { status: 'revoked', startedBefore, spared }
  }

  /**
   * One `SET NX PX`: a proof id is remembered for its proof's remaining lifetime, and only
   * the first instance to present it hears `true`. The thumbprint is the hash tag, so that a
   * Cluster spreads the keys; `:dpop:` keeps them apart from a user's keys, whose tag could
   * be the same string. Not waited for by replicas (`waitForReplicas`): a failover that
   * loses one reopens a single proof's window of seconds, which is not worth a second round
   * trip on every request.
   */
  async rememberProof (key: string, id: string, ttlMs: number): Promise<boolean> {
    return await this.#redis.call('SET', `${this.#prefix}${tagOf(key)}:dpop:${id}`, '1', 'PX', String(ttlMs), 'NX') === 'OK'
  }

  /** Answers whether Redis answers. */
  async ping (): Promise<void> {
    await this.#redis.ping()
  }

  /** Redis's `maxmemory-policy` (rejects where `CONFIG` is not allowed, as on some hosted Redis). */
  async evictionPolicy (): Promise<string | undefined> {
    const reply = await this.#redis.call('CONFIG', 'GET', 'maxmemory-policy') as string[]
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
    const acknowledged = await this.#redis.wait(this.#replicas, this.#waitTimeout)
    if (acknowledged < this.#replicas) {
      throw new Error(`${acknowledged} of ${this.#replicas} replicas acknowledged the write within ${this.#waitTimeout} ms`)
    }
  }

  async isLive (userId: string, sessionId: string): Promise<boolean> {
    const keys = this.#keys(userId, sessionId)
    return await this.#redis.tokenSessionsLive(keys.session, keys.index, sessionId) === 1
  }

  /** The Redis server's clock, which stamps everything the scripts record. */
  async time (): Promise<number> {
    const [seconds, micros] = await this.#redis.time()
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
  }

  async list (userId: string, page: PageRequest): Promise<SessionPage> {
    const keys = this.#keys(userId, '')
    const [cursor, ...rows] = await this.#redis.tokenSessionsList(keys.index, keys.sessionPrefix, page.cursor ?? '', page.limit)
    const sessions = rows.map(([sessionId, created, lastUsed, expires, userAgent, ip, label, browserSession]) => ({
      sessionId: sessionId as string,
      createdAt: Number(created),
      lastUsedAt: Number(lastUsed),
      expiresAt: Number(expires),
      remembered: browserSession === '',
      ...(userAgent === '' ? {} : { userAgent }),
      ...(ip === '' ? {} : { ip }),
      ...(label === '' ? {} : { label })
    }))
    return cursor === '' ? { sessions } : { sessions, nextCursor: Number(cursor) }
  }

  /**
   * Fails with `FTS_INVALID_OPTION` when Redis refuses the database the client asks for
   * (the URL's path, or the client's `db`): ioredis only reports its SELECT's error and goes
   * on in database 0, among whatever else lives there. Resolves when the database exists,
   * when there is nothing to check (database 0, a Cluster, a connection the app has switched
   * to another database), or when Redis does not answer (checked again by nothing: the app
   * starts, and ioredis reports the SELECT's error on each connect).
   */
  async checkSetup (): Promise<void> {
    const redis = this.#redis as unknown as { options: { db?: unknown }, condition?: { select?: unknown } }
    // A Cluster has no databases, nor a db option. ioredis selects on connect only a db
    // that is truthy (not 0, nor NaN): the same test here.
    const db = redis.options.db
    if (this.#cluster || typeof db !== 'number' || !db) return
    // A client passed in may have been switched with select() since: SELECT db would move
    // it back behind ioredis's back (its tracking sees a lowercase `select` only). So the
    // check runs only on the database the connection uses (ioredis's `condition`, set when
    // it connects, absent before), where a SELECT changes nothing.
    const current = redis.condition?.select ?? db
    if (current !== db) return
    try {
      await this.#redis.call('SELECT', String(db))
    } catch (err) {
      // A connection error is not Redis's answer. `name`, not `instanceof`: the client may
      // come from another copy of ioredis.
      if ((err as Error).name !== 'ReplyError') return
      fail(this.#source, `names database ${db}, which this Redis does not have (see its "databases" setting; databases count from 0)`)
    }
  }

  /** Quits the client only if this store created it: a client passed in stays the caller's. */
  async close (): Promise<void> {
    if (!this.#owned) {
      if (this.#addedListener !== undefined) this.#redis.off('error', this.#addedListener)
      return
    }
    if (this.client.status !== 'ready') {
      // Not connected: stop the reconnect loop; there is nothing to flush.
      this.client.disconnect()
      return
    }
    const ended = new Promise<void>((resolve) => this.#redis.once('end', resolve))
    try {
      await this.#redis.quit()
    } catch {
      // The server went away before it answered QUIT: the connection is closed either way.
      this.client.disconnect()
    }
    await ended
  }
}

/**
 * The plugin's `redis` and `keyPrefix` options as a RedisStore's: a client (recognised by
 * what the store calls on it) or a `redis://`/`rediss://` URL, and a prefix it can use.
 * Throws `FTS_INVALID_OPTION` naming the option.
 *
 * @example
 * ```ts
 * const store = new RedisStore({ ...redisStoreOptions(process.env.REDIS_URL, 'myapp:'), commandTimeout: 500 })
 * ```
 */
export function redisStoreOptions (redis: unknown, keyPrefix: unknown): RedisStoreOptions {
  if (keyPrefix !== undefined && typeof keyPrefix !== 'string') fail('keyPrefix', 'must be a string without "{" or "}"')
  const prefix = keyPrefix === undefined ? {} : { keyPrefix: checkedKeyPrefix(keyPrefix, 'keyPrefix') }
  const source = { [SOURCE_OPTION]: 'redis' }
  if (isClient(redis)) return { client: redis, ...prefix, ...source }
  return { url: checkedUrl(redis, 'redis'), ...prefix, ...source }
}

/** The shape of a URL ioredis takes, as errors describe it (never the URL given: it may hold a password). */
const URL_SHAPE = 'redis://[[user]:password@]host[:port][/database], or rediss:// for TLS'

/** The highest database number Redis takes: SELECT reads a signed 32-bit index. */
const MAX_DATABASE = 2 ** 31 - 1

/**
 * A `redis://` or `rediss://` URL that ioredis can take, whose database, if it names one
 * (in its path, or as `?db=` when the path has none), is a whole number from 0 to 2^31 − 1.
 * ioredis parses a URL with the WHATWG parser too, but a bad one fails with Node's own
 * error, which names no option, and a database such as `abc` or `1x` becomes NaN or 1 by
 * parseInt. The scheme comes back in lowercase: ioredis turns TLS on only for a URL that
 * starts with `rediss://` exactly, so `REDISS://` would connect without TLS.
 * The errors never quote the URL: it may hold a password.
 */
function checkedUrl (url: unknown, option: string): string {
  if (typeof url !== 'string' || !/^rediss?:\/\//i.test(url)) fail(option, `must be an ioredis client (Redis or Cluster) or a URL: ${URL_SHAPE}`)
  let parsed: URL
  try {
    parsed = new URL(url)
    // ioredis decodes the user and password, and throws a bare URIError on a bad escape.
    decodeURIComponent(parsed.username)
    decodeURIComponent(parsed.password)
  } catch {
    return fail(option, `is not a valid URL (is the port a number from 1 to 65535? are the password's special characters percent-encoded, % as %25?): ${URL_SHAPE}`)
  }
  const path = /^\/?(?:(\d+)\/?)?$/.exec(parsed.pathname)
  const databases = [path?.[1], ...parsed.searchParams.getAll('db')].filter((db) => db !== undefined)
  if (path === null || !databases.every((db) => /^\d+$/.test(db) && Number(db) <= MAX_DATABASE)) {
    fail(option, `must name a database by a whole number from 0 to ${MAX_DATABASE} (its path, or ?db=), or none (database 0): ${URL_SHAPE}`)
  }
  // The WHATWG parser gives the scheme in lowercase, followed by ':'.
  return parsed.protocol + url.slice(parsed.protocol.length)
}

/** An ioredis client of any copy and version: it defines commands and says whether it is a Cluster. */
function isClient (value: unknown): value is RedisClient {
  if (value === null || typeof value !== 'object') return false
  const client = value as { defineCommand?: unknown, isCluster?: unknown }
  return typeof client.defineCommand === 'function' && typeof client.isCluster === 'boolean'
}

/** A duration option in ms: a whole number from 10 to 60,000. */
function checkedMs (value: number | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 10 || value > 60_000) fail(option, 'must be a whole number of milliseconds from 10 to 60000')
  return value
}

/** A key prefix without braces: they would end the per-user hash tag early. */
function checkedKeyPrefix (prefix: string, option: string): string {
  if (/[{}]/.test(prefix)) fail(option, 'must not contain "{" or "}" (they would break the per-user hash tag)')
  return prefix
}

/** What an error event goes to when no one asked for the store's connection errors. */
function ignore (): void {}

function ownClient (url: string, commandTimeout: number, onError: ((error: Error) => void) | undefined): Redis {
  const client = new Redis(url, {
    commandTimeout,
    connectTimeout: Math.max(commandTimeout, 1000),
    // Commands wait in the offline queue only through one reconnect attempt, and never
    // longer than commandTimeout: an outage becomes a fast 503, not a pile of requests.
    maxRetriesPerRequest: 1
  })
  // Without a listener ioredis prints every reconnect failure to stderr.
  client.on('error', onError ?? ignore)
  return client
}
