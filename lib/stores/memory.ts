import type {
  ClientInfo, CreateOutcome, Deadline, NewSession, PageRequest, PresentedToken, Revocation, RevocationFeed, RevocationListener, RevokeAllOptions, RevokeAllOutcome,
  RevokeRequest, RotateOutcome, RotateRequest, SessionInfo, SessionPage, SessionStore, StepUpOutcome, StepUpRequest
} from './store.js'

interface MemorySession {
  current: string
  previous: string | undefined
  /** When it was created or last rotated: its last use. */
  rotatedAt: number
  startedAt: number
  expiresAt: number
  client: ClientInfo
  /** The tag of the agent that last rotated it. */
  agent: string | undefined
  /** The thumbprint of the DPoP key it is bound to. */
  boundKey: string | undefined
  /** The write id of its last rotation (see {@link Deadline.writeId}). */
  writeId: string | undefined
  /** `false`: created with `remembered: false`. */
  remembered: boolean
}

/** A user's latest revocation of all sessions, and until when it is remembered. */
interface Stamp {
  at: number
  until: number
}

/** The most sessions one login ends beyond the cap (as in the Redis store). */
const MAX_ENDED_PER_LOGIN = 100
/** The most proof ids `rememberProof` keeps: past it the oldest, nearest going stale, go first. */
const MAX_REMEMBERED_PROOFS = 200_000

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
  readonly #stamps = new Map<string, Stamp>()
  /** What is remembered as revoked, by session id or `u:` and user id. */
  readonly #revoked = new Map<string, Revocation>()
  /** DPoP proof ids seen by a refresh, by user, key and id, until each goes stale. */
  readonly #proofs = new Map<string, number>()
  /** DPoP proof ids seen by `authenticate` (`rememberProof`), by key and id, oldest first, until each goes stale. */
  readonly #resourceProofs = new Map<string, number>()
  /** Revocations' outcomes by write id, for a delivery of the same write again, until its deadline. */
  readonly #outcomes = new Map<string, { outcome: unknown, until: number }>()
  readonly #listeners = new Set<RevocationListener>()
  readonly #now: () => number
  readonly #sweeper: NodeJS.Timeout
  /** Revocations announced to this process's listeners as they happen; always connected. */
  readonly revocationFeed: RevocationFeed = {
    revocations: async () => {
      const now = this.#now()
      return [...this.#revoked.values()].filter((revocation) => revocation.until > now)
    },
    watch: async (listener) => {
      this.#listeners.add(listener)
      listener.connected()
      return async () => { this.#listeners.delete(listener) }
    }
  }

  constructor (options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepInterval ?? DEFAULT_SWEEP_INTERVAL)
    this.#sweeper.unref()
  }

  async create (session: NewSession): Promise<CreateOutcome> {
    const now = this.#now()
    if (late(session, now)) return { status: 'late' }
    const { userId } = session
    const stamp = this.#stampOf(userId, now)
    if (stamp !== undefined && session.authenticatedAt !== undefined && stamp.at > session.authenticatedAt) return { status: 'stale' }
    const startedAt = this.#afterAll(userId, now)
    const sessions = this.#sessionsOf(userId)
    const ttlMs = Math.min(session.ttlMs, session.maxTtlMs)
    sessions.set(session.sessionId, {
      current: session.tokenHash,
      previous: undefined,
      rotatedAt: now,
      startedAt,
      expiresAt: now + ttlMs,
      client: { ...session.client },
      agent: session.agent,
      boundKey: session.boundKey,
      writeId: undefined,
      remembered: session.remembered !== false
    })
    const ended = this.#overCap(userId, session.sessionId, session.maxSessions, now)
    for (const sessionId of ended) this.#delete(userId, sessionId)
    this.#announce(ended.map((sessionId) => ({ sessionId, until: now + session.rememberMs })))
    return { status: 'created', ttlMs, startedAt, ended }
  }

  async rotate (request: RotateRequest): Promise<RotateOutcome> {
    const now = this.#now()
    const session = this.#live(request.userId, request.sessionId, now)
    // The same request delivered again answers as it first did (as rotate.lua): a rotation
    // by the write id it left in the session, a replay or a reuse by the outcome it kept.
    const first = this.#firstOutcome(request, now)
    if (session === undefined) return { status: first === 'reused' ? 'reused' : 'missing' }
    if (late(request, now)) return { status: 'late' }
    const { startedAt } = session
    const current = session.current === request.presentedHash
    if (!current && writeIdOf(request) !== undefined && session.writeId === request.writeId && session.previous === request.presentedHash) {
      return { status: 'rotated', ttlMs: session.expiresAt - now, startedAt }
    }
    if (!current && first === 'replayed') return { status: 'replayed', ttlMs: session.expiresAt - now, startedAt }
    if (!current && judge(session, { hash: request.presentedHash, graceMs: request.graceMs, ...agentOf(request) }, now) !== 'replay') {
      this.#delete(request.userId, request.sessionId)
      this.#announce([{ sessionId: request.sessionId, until: now + request.rememberMs }])
      return { status: this.#keepOutcome(request, now, 'reused') }
    }
    const { proof } = request
    if (session.boundKey !== undefined || proof !== undefined) {
      if (session.boundKey === undefined) return { status: 'unbound' }
      if (proof === undefined || proof.key !== session.boundKey) return { status: 'wrong-key' }
      const id = `${request.userId}\n${proof.id}`
      if ((this.#proofs.get(id) ?? 0) > now) return { status: 'proof-replayed' }
      this.#proofs.set(id, now + proof.ttlMs)
    }
    if (current) {
      // The absolute lifetime counts from the start, as in the Redis store.
      const ttlMs = Math.max(1, Math.min(request.ttlMs, startedAt + request.maxTtlMs - now))
      session.previous = session.current
      session.current = request.successorHash
      session.rotatedAt = now
      session.expiresAt = now + ttlMs
      session.writeId = request.writeId
      if (request.agent !== undefined) session.agent = request.agent
      return { status: 'rotated', ttlMs, startedAt }
    }
    return { status: this.#keepOutcome(request, now, 'replayed'), ttlMs: session.expiresAt - now, startedAt }
  }

  async stepUp (request: StepUpRequest): Promise<StepUpOutcome> {
    const now = this.#now()
    const session = this.#live(request.userId, request.sessionId, now)
    if (session === undefined) return { status: 'missing' }
    if (late(request, now)) return { status: 'late' }
    const { startedAt, remembered } = session
    // Delivered twice, it writes the same successor again: the same answer (as step-up.lua).
    const maxTtlMs = remembered ? request.maxTtlMs : request.browserSessionMaxTtlMs
    const ttlMs = Math.max(1, Math.min(request.ttlMs, startedAt + maxTtlMs - now))
    session.current = request.successorHash
    session.previous = undefined
    session.rotatedAt = now
    session.expiresAt = now + ttlMs
    session.writeId = request.writeId
    return { status: 'stepped-up', ttlMs, startedAt, remembered }
  }

  async revoke (request: RevokeRequest): Promise<'revoked' | 'missing' | 'reused' | 'late'> {
    const now = this.#now()
    if (late(request, now)) return 'late'
    const session = this.#live(request.userId, request.sessionId, now)
    if (session === undefined) {
      const first = this.#firstOutcome(request, now)
      if (first !== undefined) return first as 'revoked' | 'reused'
    }
    const seen = session === undefined || request.presented === undefined ? undefined : presentedAs(session, request.presented, now)
    if (seen === 'unproven') return 'missing'
    this.#delete(request.userId, request.sessionId)
    if (session === undefined) return 'missing'
    this.#announce([{ sessionId: request.sessionId, until: now + request.rememberMs }])
    return this.#keepOutcome(request, now, seen === 'superseded' ? 'reused' : 'revoked')
  }

  async revokeAll (userId: string, options: RevokeAllOptions): Promise<RevokeAllOutcome> {
    const now = this.#now()
    if (late(options, now)) return { status: 'late' }
    const first = this.#firstOutcome(options, now)
    if (first !== undefined) return first as RevokeAllOutcome
    if (options.ifLive !== undefined) {
      const guard = this.#live(userId, options.ifLive, now)
      const seen = guard === undefined || options.presented === undefined ? undefined : presentedAs(guard, options.presented, now)
      if (guard === undefined || seen === 'unproven') return { status: 'missing' }
      if (seen === 'superseded') {
        await this.revoke({ userId, sessionId: options.ifLive, rememberMs: options.rememberMs })
        return this.#keepOutcome(options, now, { status: 'reused' })
      }
    }
    const at = this.#afterAll(userId, now)
    const sessions = this.#users.get(userId) ?? new Map<string, MemorySession>()
    const spared = options.except === undefined ? undefined : this.#live(userId, options.except, now)
    for (const sessionId of [...sessions.keys()]) {
      if (sessionId !== options.except || spared === undefined) this.#delete(userId, sessionId)
    }
    const until = at + options.rememberMs
    this.#stamps.set(userId, { at, until })
    if (spared === undefined) {
      this.#announce([{ userId, startedBefore: at, until }])
      return this.#keepOutcome(options, now, { status: 'revoked', startedBefore: at })
    }
    const except = options.except as string
    this.#announce([{ userId, startedBefore: at, except, until }])
    return this.#keepOutcome(options, now, { status: 'revoked', startedBefore: at, spared: except })
  }

  /** The outcome a write with this id had, if it was delivered before (as revoke.lua and revoke-all.lua keep it). */
  #firstOutcome (write: Deadline, now: number): unknown {
    const writeId = writeIdOf(write)
    if (writeId === undefined) return undefined
    const first = this.#outcomes.get(writeId)
    return first !== undefined && first.until > now ? first.outcome : undefined
  }

  /** Keeps a write's outcome, for a delivery of it again, until its deadline (a minute without one). */
  #keepOutcome<T> (write: Deadline, now: number, outcome: T): T {
    const writeId = writeIdOf(write)
    if (writeId !== undefined) {
      this.#outcomes.set(writeId, { outcome, until: write.deadline === undefined ? now + 60_000 : write.deadline + 1 })
    }
    return outcome
  }

  async rememberProof (key: string, id: string, ttlMs: number): Promise<boolean> {
    const now = this.#now()
    const seen = `${key}\n${id}`
    if ((this.#resourceProofs.get(seen) ?? 0) > now) return false
    this.#resourceProofs.set(seen, now + ttlMs)
    // Kept in the order they came, which is nearly the order they go stale.
    if (this.#resourceProofs.size > MAX_REMEMBERED_PROOFS) this.#resourceProofs.delete(this.#resourceProofs.keys().next().value as string)
    return true
  }

  async isLive (userId: string, sessionId: string): Promise<boolean> {
    return this.#live(userId, sessionId, this.#now()) !== undefined
  }

  async time (): Promise<number> {
    return this.#now()
  }

  #announce (revocations: Revocation[]): void {
    if (revocations.length === 0) return
    for (const revocation of revocations) {
      this.#revoked.set('sessionId' in revocation ? revocation.sessionId : `u:${revocation.userId}`, revocation)
    }
    for (const listener of this.#listeners) listener.revoked(revocations)
  }

  async list (userId: string, page: PageRequest): Promise<SessionPage> {
    const now = this.#now()
    const cursor = page.cursor ?? Infinity
    const newest: Array<[string, MemorySession]> = []
    for (const sessionId of [...this.#users.get(userId)?.keys() ?? []]) {
      const session = this.#live(userId, sessionId, now)
      if (session !== undefined && session.startedAt < cursor) newest.push([sessionId, session])
    }
    newest.sort(([, a], [, b]) => b.startedAt - a.startedAt)
    const sessions: SessionInfo[] = newest.slice(0, page.limit).map(([sessionId, { startedAt, rotatedAt, expiresAt, remembered, client }]) =>
      ({ sessionId, createdAt: startedAt, lastUsedAt: rotatedAt, expiresAt, remembered, ...client }))
    const last = sessions.at(-1)
    return newest.length > page.limit && last !== undefined ? { sessions, nextCursor: last.createdAt } : { sessions }
  }

  /** The sessions beyond the cap nearest their end, never `keep`. */
  #overCap (userId: string, keep: string, maxSessions: number, now: number): string[] {
    const sessions = [...this.#sessionsOf(userId)].filter(([, session]) => session.expiresAt > now)
    const over = Math.min(sessions.length - maxSessions, MAX_ENDED_PER_LOGIN)
    if (over <= 0) return []
    return sessions.filter(([sessionId]) => sessionId !== keep)
      .sort(([, a], [, b]) => a.expiresAt - b.expiresAt)
      .slice(0, over)
      .map(([sessionId]) => sessionId)
  }

  /**
   * The earliest time a new start or stamp may take, as in the Redis store (ordered.lua):
   * now, but after the user's newest session and latest stamp.
   */
  #afterAll (userId: string, now: number): number {
    let at = Math.max(now, this.#stampOf(userId, now)?.at ?? 0)
    for (const session of this.#users.get(userId)?.values() ?? []) at = Math.max(at, session.startedAt + 1)
    return at
  }

  #stampOf (userId: string, now: number): Stamp | undefined {
    const stamp = this.#stamps.get(userId)
    if (stamp === undefined || stamp.until > now) return stamp
    this.#stamps.delete(userId)
    return undefined
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
    for (const [writeId, { until }] of this.#outcomes) {
      if (until <= now) this.#outcomes.delete(writeId)
    }
    for (const [key, revocation] of this.#revoked) {
      if (revocation.until <= now) this.#revoked.delete(key)
    }
    for (const userId of [...this.#stamps.keys()]) this.#stampOf(userId, now)
    for (const proofs of [this.#proofs, this.#resourceProofs]) {
      for (const [id, until] of proofs) {
        if (until <= now) proofs.delete(id)
      }
    }
    for (const [userId, sessions] of this.#users) {
      for (const [sessionId, session] of sessions) {
        if (session.expiresAt <= now) this.#delete(userId, sessionId)
      }
    }
  }
}

/** Past its deadline the write's request was answered 503: it must change nothing (see {@link Deadline}). */
function late (request: Deadline, now: number): boolean {
  return request.deadline !== undefined && now > request.deadline
}

/** A write's id; an empty one is none, as in the Redis store's scripts. */
function writeIdOf (write: Deadline): string | undefined {
  return write.writeId === '' ? undefined : write.writeId
}

/** The agent of a rotation, when replays are checked by agent. */
function agentOf (request: RotateRequest): { agent?: string } {
  return request.agent === undefined ? {} : { agent: request.agent }
}

/**
 * What a presented token is to a session when it would end it (as revoke.lua and
 * revoke-all.lua decide): superseded, which is reuse whatever proof came; else `unproven`
 * when the session is bound to a key and no proof by it came, which ends nothing.
 */
function presentedAs (session: MemorySession, presented: PresentedToken, now: number): 'current' | 'replay' | 'superseded' | 'unproven' {
  const judged = judge(session, presented, now)
  if (judged !== 'superseded' && session.boundKey !== undefined && session.boundKey !== presented.proofKey) return 'unproven'
  return judged
}

/**
 * What a presented token is to a session: its current token, a replay of the previous one
 * within the grace window (by the same agent, when checked), or superseded, which is reuse.
 */
function judge (session: MemorySession, presented: PresentedToken, now: number): 'current' | 'replay' | 'superseded' {
  if (session.current === presented.hash) return 'current'
  const sameAgent = presented.agent === undefined || session.agent === undefined || session.agent === presented.agent
  if (session.previous === presented.hash && presented.graceMs > 0 && now - session.rotatedAt <= presented.graceMs && sameAgent) return 'replay'
  return 'superseded'
}
