/**
 * The contract between the session lifecycle and where sessions live.
 *
 * A store never sees a token or a token id: only hashes of refresh-token ids, which
 * cannot be turned back into a usable token. Every method is one atomic step; the
 * Redis store runs each as one Lua script in one round trip. Times are durations in
 * milliseconds: the store applies them to its own clock, so that several app instances
 * agree on time (the Redis store uses the Redis server's clock).
 *
 * @example
 * ```ts
 * const store: SessionStore = new MemoryStore()
 * await store.create({ userId: 'u1', sessionId: 's1', tokenHash: 'h1', ttlMs: 60_000, maxTtlMs: 3_600_000, client: {}, maxSessions: 100, rememberMs: 900_000 })
 * const outcome = await store.rotate({
 *   userId: 'u1', sessionId: 's1', presentedHash: 'h1', successorHash: 'h2', ttlMs: 60_000, graceMs: 5_000, rememberMs: 900_000
 * })
 * // outcome.status === 'rotated'
 * ```
 */
export interface SessionStore {
  /**
   * Records a new session and, beyond `maxSessions`, ends the user's sessions nearest their
   * end. Resolves to `{ status: 'stale' }`, recording nothing, when every session of the
   * user was revoked after `authenticatedAt`.
   */
  create (session: NewSession): Promise<CreateOutcome>
  /** Moves a session to its next refresh token, or detects reuse and deletes the session. */
  rotate (request: RotateRequest): Promise<RotateOutcome>
  /**
   * Steps a live session up after a re-authentication: its refresh token is replaced by
   * `successorHash`, and no previous token is kept (presenting the replaced one, or one
   * still within a rotation's grace, is then reuse). The idle timeout starts again.
   */
  stepUp (request: StepUpRequest): Promise<StepUpOutcome>
  /**
   * Deletes one session and, if it was live, announces the revocation (see
   * {@link RevocationFeed}) for `rememberMs`. With `presented`, a superseded
   * refresh token is reuse: the session is revoked all the same, and the outcome says so;
   * a bound session's own token without a proof by its key changes nothing (`missing`).
   */
  revoke (request: RevokeRequest): Promise<'revoked' | 'missing' | 'reused' | 'late'>
  /**
   * Ends every session of a user (but `except`) at once, by one stamp: each session that
   * started before it is over. With `ifLive`, does so only while that session is live
   * (else `missing`), and with `presented`, only if its token is not superseded (else
   * `reused`, and that session alone is revoked) and, for a bound session, comes with a
   * proof by its key (else `missing`). Announces the stamp for `rememberMs`.
   */
  revokeAll (userId: string, options: RevokeAllOptions): Promise<RevokeAllOutcome>
  /** One page of the user's live sessions, newest first. */
  list (userId: string, page: PageRequest): Promise<SessionPage>
  /** Whether a session is live (for routes that must see a revocation at once). */
  isLive (userId: string, sessionId: string): Promise<boolean>
  /** The revocations this store announces (see {@link RevocationFeed}). */
  readonly revocationFeed: RevocationFeed
  /** The store's clock, in ms since the epoch: every time the store records is on it. */
  time (): Promise<number>
  /** Resolves when the store answers; rejects when it does not (for health checks). */
  ping (): Promise<void>
  /**
   * For stores that can lose keys under memory pressure: their eviction policy, so that
   * the plugin can warn when sessions could silently vanish.
   */
  evictionPolicy?: () => Promise<string | undefined>
  /**
   * Called at start-up, within `storeTimeout`: rejects, failing registration, when the store
   * answers but cannot serve as configured (RedisStore: a database number its Redis does
   * not have). Resolves otherwise, also when the store does not answer in time.
   */
  checkSetup?: () => Promise<void>
  /**
   * For `dpop.sharedReplayCheck`: remembers the id of a DPoP proof that `authenticate`
   * accepted (`id`, a hash of its `jti`) under its key's thumbprint (`key`) for `ttlMs`, the
   * proof's remaining lifetime, and resolves to whether it was new. One atomic step: of two
   * instances that present the same proof at once, one alone hears `true`. Apart from the
   * proof ids a refresh remembers (see {@link RotateRequest.proof}).
   *
   * @example
   * ```ts
   * // A store of your own, on a key-value service with an atomic "set if absent, with expiry":
   * async rememberProof (key: string, id: string, ttlMs: number): Promise<boolean> {
   *   return await kv.setIfAbsent(`dpop:${key}:${id}`, '1', { ttlMs })
   * }
   * ```
   */
  rememberProof?: (key: string, id: string, ttlMs: number) => Promise<boolean>
  /** Releases what the store itself created (timers, its own clients). */
  close (): Promise<void>
}

/**
 * How the revocations a store records reach every app instance: announced as they happen,
 * and reloaded after every (re)connect for what the announcements missed. Apart from the
 * session store contract: sessions are read and changed through the store, and only
 * instances' in-memory lists listen here.
 *
 * @example
 * ```ts
 * const stop = await store.revocationFeed.watch({
 *   revoked: (revocations) => list.add(revocations),
 *   connected: () => reload(), // every chunk of store.revocationFeed.revocations() into the list
 *   disconnected: () => log.warn('revocation feed down')
 * })
 * ```
 */
export interface RevocationFeed {
  /**
   * Every revocation still remembered: sessions whose access tokens may still be alive;
   * with `from`, at least those remembered until `from` or later (ms, store clock), as a
   * reload after a short outage asks (a store may give more).
   * All at once, or in chunks (an async iterable of arrays), as a store holding very many
   * gives them, so that a reload never holds them all at once.
   */
  revocations (from?: number): Promise<Revocation[]> | AsyncIterable<Revocation[]>
  /**
   * Calls `listener` with every revocation any instance announces (logout, revocation,
   * logout-all, reuse, the cap), and tells when the feed connects and disconnects: a
   * listener reloads {@link RevocationFeed.revocations} on each connect, for what it
   * missed. Resolves to a function that stops watching.
   */
  watch (listener: RevocationListener): Promise<() => Promise<void>>
}

/**
 * A session as created at login; what a store's `create` receives.
 *
 * @example
 * ```ts
 * await store.create({
 *   userId: 'u1', sessionId, tokenHash, ttlMs: 86_400_000, maxTtlMs: 2_592_000_000, client: { ip: '203.0.113.7' }, maxSessions: 100, rememberMs: 900_000
 * })
 * ```
 */
export interface NewSession extends Deadline {
  userId: string
  sessionId: string
  /** Hash of the first refresh token's id. */
  tokenHash: string
  /** How long the session lives without a refresh (idle timeout). */
  ttlMs: number
  /** How long the session may live at most, however often it is refreshed. */
  maxTtlMs: number
  /**
   * `false` for a session the user chose not to have remembered: the store keeps the
   * choice, for the session list and for `stepUp`. Absent: remembered.
   */
  remembered?: boolean
  /** What the session records of the client that logged in. */
  client: ClientInfo
  /**
   * A short tag of the client's user agent, to tell a replay by another agent from one
   * by the agent that last rotated (only when replays are checked by agent).
   */
  agent?: string
  /**
   * When the app checked the credentials, on the store's clock: if every session of the
   * user was revoked after it, the login lost a race with that revocation.
   */
  authenticatedAt?: number
  /**
   * The RFC 7638 thumbprint of the DPoP key the session is bound to: every refresh must
   * then come with a proof by that key. A session is bound when it starts, never later.
   */
  boundKey?: string
  /** The most sessions the user may have; beyond it, the ones nearest their end end. */
  maxSessions: number
  /** How long the sessions ended by the cap are remembered as revoked. */
  rememberMs: number
}

/**
 * What a store's `create` did: `created`, with the session's life in ms (the smaller of
 * its two lifetimes), when it started on the store's clock, and the sessions the cap
 * ended; or `stale`, when a revocation of every session of the user came after
 * `authenticatedAt`.
 *
 * @example
 * ```ts
 * const outcome = await store.create(session)
 * if (outcome.status === 'created' && outcome.ended.length > 0) log.info('oldest sessions ended')
 * ```
 */
export type CreateOutcome =
  | { status: 'created', ttlMs: number, startedAt: number, ended: string[] }
  | { status: 'stale' }
  | { status: 'late' }

/** The longest user agent a session keeps, in characters. */
export const MAX_USER_AGENT = 128

/**
 * What a session records of its client; each field is optional (privacy settings).
 *
 * @example
 * ```ts
 * const client: ClientInfo = { userAgent: 'Mozilla/5.0 …', ip: '203.0.113.7', label: 'Work laptop' }
 * ```
 */
export interface ClientInfo {
  /** Printable ASCII, at most {@link MAX_USER_AGENT} characters. */
  userAgent?: string
  ip?: string
  /** A name the app gives the session, e.g. a device name. */
  label?: string
}

/**
 * A live session as listed. Times are milliseconds since the epoch, on the store's clock;
 * `createdAt` is when the session started, `lastUsedAt` when it last refreshed.
 *
 * @example
 * ```ts
 * for (const session of (await app.tokenSessions.listSessions(userId)).sessions) {
 *   console.log(session.userAgent, new Date(session.lastUsedAt))
 * }
 * ```
 */
export interface SessionInfo extends ClientInfo {
  sessionId: string
  createdAt: number
  lastUsedAt: number
  expiresAt: number
  /** `false`: issued with `remember: false`, its cookies last as long as the browser. */
  remembered: boolean
}

/**
 * One refresh: the hash of the presented token's id and of its successor's; what a
 * store's `rotate` receives.
 *
 * @example
 * ```ts
 * const outcome = await store.rotate({ userId, sessionId, presentedHash, successorHash, ttlMs, graceMs: 10_000, rememberMs: 900_000 })
 * ```
 */
export interface RotateRequest extends Deadline {
  userId: string
  sessionId: string
  presentedHash: string
  successorHash: string
  /** The session's idle timeout after this rotation (capped by its absolute lifetime). */
  ttlMs: number
  /** The session's absolute lifetime, from its start: no rotation extends it. */
  maxTtlMs: number
  /** How long after a rotation the rotated token may still be presented (0: never). */
  graceMs: number
  /** On reuse, how long to remember the revocation (the access tokens' lifetime). */
  rememberMs: number
  /** The tag of the client's agent, when a replay must come from the agent that last rotated. */
  agent?: string
  /**
   * The DPoP proof that came with the refresh: its key's thumbprint, its id's hash, and how
   * long the id must be remembered (the proof's remaining lifetime). Checked after reuse:
   * a superseded token is reuse whatever proof comes with it.
   */
  proof?: { key: string, id: string, ttlMs: number }
}

/** What a store's `stepUp` receives. */
export interface StepUpRequest extends Deadline {
  userId: string
  sessionId: string
  /** The new refresh token's hash (random: not derived from the token it replaces). */
  successorHash: string
  /** The session's idle timeout from now (capped by its absolute lifetime). */
  ttlMs: number
  /** The session's absolute lifetime, from its start. */
  maxTtlMs: number
  /** The absolute lifetime instead, from its start, of a session created with `remembered: false`. */
  browserSessionMaxTtlMs: number
}

/**
 * What a store's `stepUp` found: the session stepped up (its idle timeout, start, and
 * whether it is remembered), not live, or too late.
 */
export type StepUpOutcome =
  | { status: 'stepped-up', ttlMs: number, startedAt: number, remembered: boolean }
  | { status: 'missing' }
  | { status: 'late' }

/**
 * A write's deadline. Past it, on the store's clock, the request that sent the write has
 * been answered 503, and the write must change nothing (its outcome is `late`): a client
 * told to retry must find what it left, not a session rotated, ended as reuse or revoked
 * by a command that arrived late (held in a stopped server's socket, on a slow link, or
 * resent by the client library after a reconnect). A store that cannot tell may ignore it.
 */
export interface Deadline {
  /** Ms since the epoch, store clock; none: no deadline. */
  deadline?: number
  /**
   * An id unique to this one write. A client library may deliver a write twice: ioredis
   * resends the commands whose answers a broken connection lost, and Redis may have run
   * them already. A rotation, a revocation or a revocation of every session delivered
   * again with the same id, before its deadline, answers as it first did and changes
   * nothing more: without it, a rotation run twice would be taken for reuse (with no
   * grace window) and a logout-all run twice would answer that the caller's session is
   * over. None: a second delivery is judged as a new request.
   */
  writeId?: string
}

/**
 * A refresh token presented to name a session: a superseded one is reuse. A session bound
 * to a DPoP key ends by its current token (or a replay within grace) only with a proof by
 * that key: without `proofKey`, or with another, nothing changes and the answer is the one
 * for a session that is not live, so that it does not tell that the session is bound.
 *
 * @example
 * ```ts
 * await store.revoke({ userId, sessionId, rememberMs, presented: { hash, graceMs: 10_000, proofKey: jkt } })
 * ```
 */
export interface PresentedToken {
  /** The hash of the token's id. */
  hash: string
  /** How long after a rotation the rotated token still counts as the session's own. */
  graceMs: number
  /** The tag of the client's agent, when a replay must come from the agent that last rotated. */
  agent?: string
  /**
   * The RFC 7638 thumbprint of the key of the DPoP proof that came with the token, if one
   * did (checked already). Decided after reuse: a superseded token is reuse whatever proof
   * comes with it.
   */
  proofKey?: string
}

/**
 * One session to end; what a store's `revoke` receives.
 *
 * @example
 * ```ts
 * await store.revoke({ userId: 'u1', sessionId: 's1', rememberMs: 900_000 })
 * ```
 */
export interface RevokeRequest extends Deadline {
  userId: string
  sessionId: string
  /** How long to remember the revocation (the access tokens' lifetime). */
  rememberMs: number
  /** The refresh token that named the session, if one did. */
  presented?: PresentedToken
}

/**
 * What the plugin remembers of a revocation, until when (ms since the epoch, on the
 * store's clock) access tokens it covers may live: one session, or every session of a
 * user that started before `startedBefore` but `except`.
 *
 * @example
 * ```ts
 * const one: Revocation = { sessionId: 'k3Jq…', until: Date.now() + 900_000 }
 * const all: Revocation = { userId: 'u1', startedBefore: Date.now(), until: Date.now() + 900_000 }
 * ```
 */
export type Revocation = SessionRevocation | UserRevocation

/** One revoked session. */
export interface SessionRevocation {
  sessionId: string
  until: number
}

/** Every session of a user that started before `startedBefore`, but `except`. */
export interface UserRevocation {
  userId: string
  startedBefore: number
  except?: string
  until: number
}

/**
 * Receives the revocation feed.
 *
 * @example
 * ```ts
 * const stop = await store.revocationFeed.watch({
 *   revoked: (revocations) => { for (const revocation of revocations) denied.add(revocation) },
 *   connected: () => reload(),
 *   disconnected: () => log.warn('revocation feed down')
 * })
 * ```
 */
export interface RevocationListener {
  revoked (revocations: Revocation[]): void
  /** The feed is (again) live: reload what may have been missed. */
  connected (): void
  /**
   * The feed is down: revocations may be missed until `connected`, those announced from
   * `since` on (ms, store clock), or any if it is not given.
   */
  disconnected (since?: number): void
  /**
   * The feed was proven alive end to end: a write the store made at `at` (ms, store clock)
   * has just arrived here (a heartbeat). Optional for a feed: it feeds the delivery-lag
   * metric and the time since the feed was last proven alive.
   */
  alive?: (at: number) => void
}

/**
 * What a store's `rotate` found:
 * - `rotated`: the presented token was current; the successor now is.
 * - `replayed`: the presented token was rotated less than `graceMs` ago (by the same
 *   agent, when `agent` is given); the successor (already current) is handed out again,
 *   so racing or retried requests share one chain.
 * - `missing`: no such session (never existed, expired, or revoked).
 * - `reused`: the presented token was superseded otherwise: the session is gone.
 * - `unbound`: a proof came for a session bound to no key; `wrong-key`: the session is
 *   bound to a key and no proof, or one by another key, came; `proof-replayed`: the
 *   proof's id was seen before. In these three cases nothing changed.
 *
 * `startedAt` is when the session started, on the store's clock.
 *
 * @example
 * ```ts
 * if ((await store.rotate(request)).status === 'reused') await alerts.send('refresh token theft')
 * ```
 */
export type RotateOutcome =
  | { status: 'rotated' | 'replayed', ttlMs: number, startedAt: number }
  | { status: 'missing' | 'reused' | 'unbound' | 'wrong-key' | 'proof-replayed' }
  | { status: 'late' }

/**
 * Options of {@link SessionStore.revokeAll}.
 *
 * @example
 * ```ts
 * await store.revokeAll(userId, { rememberMs: 900_000, except: currentSessionId })
 * ```
 */
export interface RevokeAllOptions extends Deadline {
  /** How long to remember the revocation (the access tokens' lifetime). */
  rememberMs: number
  /** Revoke only while this session of the same user is still live. */
  ifLive?: string
  /** With `ifLive`: the refresh token that named that session. */
  presented?: PresentedToken
  /** Leave this session alone (e.g. the one that just changed the password). */
  except?: string
}

/**
 * What a store's `revokeAll` did: `revoked`, with the stamp (every session that started
 * before it is over) and the session spared, if `except` named a live one; `missing`, the
 * `ifLive` session was not live (or is bound to a key that `presented` has no proof by);
 * `reused`, the presented token was superseded, and that session alone was revoked.
 *
 * @example
 * ```ts
 * const outcome = await store.revokeAll(userId, { rememberMs: 900_000 })
 * if (outcome.status === 'revoked') log.info({ startedBefore: outcome.startedBefore }, 'all sessions ended')
 * ```
 */
export type RevokeAllOutcome =
  | { status: 'revoked', startedBefore: number, spared?: string }
  | { status: 'missing' | 'reused' }
  | { status: 'late' }

/**
 * Which page of a user's sessions to list: after `cursor` (the `startedAt` of the last
 * session of the previous page), at most `limit` sessions.
 *
 * @example
 * ```ts
 * const first = await store.list(userId, { limit: 50 })
 * const second = first.nextCursor === undefined ? undefined : await store.list(userId, { cursor: first.nextCursor, limit: 50 })
 * ```
 */
export interface PageRequest {
  cursor?: number
  limit: number
}

/**
 * One page of sessions, newest first. A page may hold fewer than asked (sessions that had
 * just ended are skipped) while more follow: `nextCursor` is absent after the last page.
 *
 * @example
 * ```ts
 * const page: SessionPage = await store.list(userId, { limit: 50 })
 * ```
 */
export interface SessionPage {
  sessions: SessionInfo[]
  nextCursor?: number
}
