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
 * await store.create({ userId: 'u1', sessionId: 's1', tokenHash: 'h1', ttlMs: 60_000, maxTtlMs: 3_600_000, client: {} })
 * const outcome = await store.rotate({
 *   userId: 'u1', sessionId: 's1', presentedHash: 'h1', successorHash: 'h2', ttlMs: 60_000, graceMs: 5_000
 * })
 * // outcome.status === 'rotated'
 * ```
 */
export interface SessionStore {
  /** Records a new session; resolves to its life in ms (the smaller of its two lifetimes). */
  create (session: NewSession): Promise<number>
  /** Moves a session to its next refresh token, or detects reuse and deletes the session. */
  rotate (request: RotateRequest): Promise<RotateOutcome>
  /**
   * Deletes one session. Resolves to whether it existed; if it did, announces the
   * revocation (see {@link SessionStore.watchRevocations}) for `rememberMs`.
   */
  revoke (userId: string, sessionId: string, rememberMs: number): Promise<boolean>
  /**
   * Deletes every session of a user (but `except`) and resolves to the ids it deleted.
   * With `ifLive`, does so only while that session still exists, and resolves to `null`
   * otherwise.
   */
  revokeAll (userId: string, options: RevokeAllOptions): Promise<string[] | null>
  /** The user's live sessions, oldest first. */
  list (userId: string): Promise<SessionInfo[]>
  /** Whether a session is live (for routes that must see a revocation at once). */
  isLive (userId: string, sessionId: string): Promise<boolean>
  /** Every revocation still remembered: sessions whose access tokens may still be alive. */
  revocations (): Promise<Revocation[]>
  /**
   * Calls `listener` with every revocation any instance announces (logout, revocation,
   * logout-all, reuse), and tells when the feed connects and disconnects: a listener
   * reloads {@link SessionStore.revocations} on each connect, for what it missed.
   * Resolves to a function that stops watching.
   */
  watchRevocations (listener: RevocationListener): Promise<() => Promise<void>>
  /** Resolves when the store answers; rejects when it does not (for health checks). */
  ping (): Promise<void>
  /**
   * For stores that can lose keys under memory pressure: their eviction policy, so that
   * the plugin can warn when sessions could silently vanish.
   */
  evictionPolicy?: () => Promise<string | undefined>
  /** Releases what the store itself created (timers, its own clients). */
  close (): Promise<void>
}

/**
 * A session as created at login; what a store's `create` receives.
 *
 * @example
 * ```ts
 * await store.create({ userId: 'u1', sessionId, tokenHash, ttlMs: 86_400_000, maxTtlMs: 2_592_000_000, client: { ip: '203.0.113.7' } })
 * ```
 */
export interface NewSession {
  userId: string
  sessionId: string
  /** Hash of the first refresh token's id. */
  tokenHash: string
  /** How long the session lives without a refresh (idle timeout). */
  ttlMs: number
  /** How long the session may live at most, however often it is refreshed. */
  maxTtlMs: number
  /** What the session records of the client that logged in. */
  client: ClientInfo
}

/**
 * What a session records of its client; each field is optional (privacy settings).
 *
 * @example
 * ```ts
 * const client: ClientInfo = { userAgent: 'Mozilla/5.0 …', ip: '203.0.113.7', label: 'Work laptop' }
 * ```
 */
export interface ClientInfo {
  userAgent?: string
  ip?: string
  /** A name the app gives the session, e.g. a device name. */
  label?: string
}

/**
 * A live session as listed. Times are milliseconds since the epoch.
 *
 * @example
 * ```ts
 * for (const session of await app.tokenSessions.listSessions(userId)) {
 *   console.log(session.userAgent, new Date(session.lastUsedAt))
 * }
 * ```
 */
export interface SessionInfo extends ClientInfo {
  sessionId: string
  createdAt: number
  lastUsedAt: number
  expiresAt: number
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
export interface RotateRequest {
  userId: string
  sessionId: string
  presentedHash: string
  successorHash: string
  /** The session's idle timeout after this rotation (capped by its absolute lifetime). */
  ttlMs: number
  /** How long after a rotation the rotated token may still be presented (0: never). */
  graceMs: number
  /** On reuse, how long to remember the revocation (the access tokens' lifetime). */
  rememberMs: number
}

/**
 * A revoked session and until when (ms since the epoch) its access tokens may live.
 *
 * @example
 * ```ts
 * const revoked: Revocation = { sessionId: 'k3Jq…', until: Date.now() + 900_000 }
 * ```
 */
export interface Revocation {
  sessionId: string
  until: number
}

/**
 * Receives the revocation feed.
 *
 * @example
 * ```ts
 * const stop = await store.watchRevocations({
 *   revoked: (revocations) => { for (const { sessionId } of revocations) denied.add(sessionId) },
 *   connected: () => reload(),
 *   disconnected: () => log.warn('revocation feed down')
 * })
 * ```
 */
export interface RevocationListener {
  revoked (revocations: Revocation[]): void
  /** The feed is (again) live: reload what may have been missed. */
  connected (): void
  /** The feed is down: revocations may be missed until `connected`. */
  disconnected (): void
}

/**
 * What a store's `rotate` found:
 * - `rotated`: the presented token was current; the successor now is.
 * - `replayed`: the presented token was rotated less than `graceMs` ago; the successor
 *   (already current) is handed out again, so racing or retried requests share one chain.
 * - `missing`: no such session (never existed, expired, or revoked).
 * - `reused`: the presented token was rotated before the grace window: the session is gone.
 *
 * @example
 * ```ts
 * if ((await store.rotate(request)).status === 'reused') await alerts.send('refresh token theft')
 * ```
 */
export type RotateOutcome =
  | { status: 'rotated' | 'replayed', ttlMs: number }
  | { status: 'missing' | 'reused' }

/**
 * Options of {@link SessionStore.revokeAll}.
 *
 * @example
 * ```ts
 * await store.revokeAll(userId, { rememberMs: 900_000, except: currentSessionId })
 * ```
 */
export interface RevokeAllOptions {
  /** How long to remember the revocations (the access tokens' lifetime). */
  rememberMs: number
  /** Revoke only while this session of the same user is still live. */
  ifLive?: string
  /** Leave this session alone (e.g. the one that just changed the password). */
  except?: string
}
