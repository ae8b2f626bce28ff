import type {
  ClientInfo, NewSession, Revocation, RevocationListener, RevokeAllOptions, RotateOutcome, RotateRequest, SessionInfo, SessionStore
} from './store.js'

interface MemorySession {
  current: string
  previous: string | undefined
  rotatedAt: number
  createdAt: number
  lastUsedAt: number
  expiresAt: number
  /** The absolute lifetime's end: no rotation extends `expiresAt` past it. */
  endsAt: number
  client: ClientInfo
}

/**
 * Options of {@link MemoryStore}.
 *
 * @example
 * ```ts
 * let now = Date.now()
 * const store = new MemoryStore({ now: () => now })   // a test moves `now` forward
 * ```
 */
export interface MemoryStoreOptions {
  /** The clock, in milliseconds. Tests pass a fake one. */
  now?: () => number
  /** How often expired sessions are swept out, in milliseconds (default 60 s). */
  sweepInterval?: number
}

const DEFAULT_SWEEP_INTERVAL = 60_000

/**
 * Sessions in this process's memory: the embedded default for development and for an
 * app's own tests. It keeps the same contract as {@link RedisStore} but is lost on restart
 * and not shared between processes, so production runs on Redis.
 *
 * @example
 * ```ts
 * import tokenSessions, { MemoryStore } from 'fastify-token-sessions'
 * await app.register(tokenSessions, { secret, store: new MemoryStore() })
 * ```
 */
export class MemoryStore implements SessionStore {
  readonly #users = new Map<string, Map<string, MemorySession>>()
  /** Revoked session id → until when its access tokens may live. */
  readonly #revoked = new Map<string, number>()
  readonly #listeners = new Set<RevocationListener>()
  readonly #now: () => number
  readonly #sweeper: NodeJS.Timeout

  constructor (options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepInterval ?? DEFAULT_SWEEP_INTERVAL)
    this.#sweeper.unref()
  }

  async create (session: NewSession): Promise<number> {
    const now = this.#now()
    const ttlMs = Math.min(session.ttlMs, session.maxTtlMs)
    this.#sessionsOf(session.userId).set(session.sessionId, {
      current: session.tokenHash,
      previous: undefined,
      rotatedAt: now,
      createdAt: now,
      lastUsedAt: now,
      expiresAt: now + ttlMs,
      endsAt: now + session.maxTtlMs,
      client: { ...session.client }
    })
    return ttlMs
  }

  async rotate (request: RotateRequest): Promise<RotateOutcome> {
    const now = this.#now()
    const session = this.#live(request.userId, request.sessionId, now)
    if (session === undefined) return { status: 'missing' }
    if (session.current === request.presentedHash) {
      const ttlMs = Math.max(1, Math.min(request.ttlMs, session.endsAt - now))
      session.previous = session.current
      session.current = request.successorHash
      session.rotatedAt = now
      session.lastUsedAt = now
      session.expiresAt = now + ttlMs
      return { status: 'rotated', ttlMs }
    }
    if (session.previous === request.presentedHash && request.graceMs > 0 && now - session.rotatedAt <= request.graceMs) {
      return { status: 'replayed', ttlMs: session.expiresAt - now }
    }
    this.#delete(request.userId, request.sessionId)
    this.#announce([request.sessionId], now + request.rememberMs)
    return { status: 'reused' }
  }

  async revoke (userId: string, sessionId: string, rememberMs: number): Promise<boolean> {
    const now = this.#now()
    const live = this.#live(userId, sessionId, now) !== undefined
    this.#delete(userId, sessionId)
    if (live) this.#announce([sessionId], now + rememberMs)
    return live
  }

  async revokeAll (userId: string, options: RevokeAllOptions): Promise<string[] | null> {
    const now = this.#now()
    if (options.ifLive !== undefined && this.#live(userId, options.ifLive, now) === undefined) return null
    const revoked: string[] = []
    for (const sessionId of [...this.#users.get(userId)?.keys() ?? []]) {
      if (sessionId === options.except) continue
      if (this.#live(userId, sessionId, now) !== undefined) revoked.push(sessionId)
      this.#delete(userId, sessionId)
    }
    this.#announce(revoked, now + options.rememberMs)
    return revoked
  }

  async isLive (userId: string, sessionId: string): Promise<boolean> {
    return this.#live(userId, sessionId, this.#now()) !== undefined
  }

  async revocations (): Promise<Revocation[]> {
    const now = this.#now()
    const revocations: Revocation[] = []
    for (const [sessionId, until] of this.#revoked) {
      if (until > now) revocations.push({ sessionId, until })
    }
    return revocations
  }

  async watchRevocations (listener: RevocationListener): Promise<() => Promise<void>> {
    this.#listeners.add(listener)
    listener.connected()
    return async () => { this.#listeners.delete(listener) }
  }

  #announce (sessionIds: string[], until: number): void {
    if (sessionIds.length === 0) return
    for (const sessionId of sessionIds) this.#revoked.set(sessionId, until)
    const revocations = sessionIds.map((sessionId) => ({ sessionId, until }))
    for (const listener of this.#listeners) listener.revoked(revocations)
  }

  async list (userId: string): Promise<SessionInfo[]> {
    const now = this.#now()
    const sessions: SessionInfo[] = []
    for (const sessionId of [...this.#users.get(userId)?.keys() ?? []]) {
      const session = this.#live(userId, sessionId, now)
      if (session === undefined) continue
      const { createdAt, lastUsedAt, expiresAt, client } = session
      sessions.push({ sessionId, createdAt, lastUsedAt, expiresAt, ...client })
    }
    return sessions.sort((a, b) => a.createdAt - b.createdAt)
  }

  async ping (): Promise<void> {}

  async close (): Promise<void> {
    clearInterval(this.#sweeper)
  }

  #sessionsOf (userId: string): Map<string, MemorySession> {
    let sessions = this.#users.get(userId)
    if (sessions === undefined) {
      sessions = new Map()
      this.#users.set(userId, sessions)
    }
    return sessions
  }

  #live (userId: string, sessionId: string, now: number): MemorySession | undefined {
    const session = this.#users.get(userId)?.get(sessionId)
    if (session === undefined) return undefined
    if (session.expiresAt > now) return session
    this.#delete(userId, sessionId)
    return undefined
  }

  #delete (userId: string, sessionId: string): void {
    const sessions = this.#users.get(userId)
    if (sessions === undefined) return
    sessions.delete(sessionId)
    if (sessions.size === 0) this.#users.delete(userId)
  }

  #sweep (): void {
    const now = this.#now()
    for (const [sessionId, until] of this.#revoked) {
      if (until <= now) this.#revoked.delete(sessionId)
    }
    for (const [userId, sessions] of this.#users) {
      for (const [sessionId, session] of sessions) {
        if (session.expiresAt <= now) this.#delete(userId, sessionId)
      }
    }
  }
}
