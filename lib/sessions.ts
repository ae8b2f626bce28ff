import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Emit } from './audit.js'
import { SessionRevokedError, StoreUnavailableError, TokenReusedError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import type { RevocationList } from './revocations.js'
import type { ClientInfo, SessionInfo, SessionStore } from './stores/store.js'
import {
  checkClaims, checkUserId, hashId, newRefreshId, newSessionId, successorId,
  type Claims, type TokenCodec
} from './tokens.js'
import type { IssueOptions, SessionUser, TokenSet } from './types.js'

/** A token set before the HTTP layer decides how it travels. */
export type IssuedTokens = Omit<TokenSet, 'transport'>

/** A session of a user. */
export interface SessionRef {
  userId: string
  sessionId: string
}

/**
 * The longest user agent a session keeps; longer ones are cut (the part that names the
 * browser and the platform comes first). The Redis store keeps it in two 64-byte halves.
 */
const MAX_USER_AGENT = 128
/** The longest label a session keeps. */
const MAX_LABEL = 100
const SESSION_ID = /^[A-Za-z0-9_-]{22}$/

/**
 * The session lifecycle: issue, rotate, verify, list, revoke, and the audit hook of each.
 * It knows tokens and the store, not HTTP: a request, when there is one, only supplies
 * the client's IP and user agent. Every store call is bounded by `storeTimeout`, and any
 * store failure becomes a 503 error whose `cause` holds the original (for logs only).
 */
export class Sessions {
  readonly store: SessionStore
  readonly #options: ResolvedOptions
  readonly #codec: TokenCodec
  readonly #emit: Emit
  readonly #log: FastifyBaseLogger
  readonly #revocations: RevocationList
  readonly #deadlines: Deadlines

  constructor (options: ResolvedOptions, codec: TokenCodec, store: SessionStore, revocations: RevocationList, emit: Emit, log: FastifyBaseLogger) {
    this.#options = options
    this.#deadlines = new Deadlines(options.storeTimeout)
    this.#codec = codec
    this.store = store
    this.#revocations = revocations
    this.#emit = emit
    this.#log = log
  }

  /** Starts a session: one store round trip, then two signatures. */
  async issue (userId: unknown, options: IssueOptions, request?: FastifyRequest): Promise<IssuedTokens> {
    const sub = checkUserId(userId)
    const claims = checkClaims(options.claims)
    const client = this.#clientOf(request, options.label)
    const sid = newSessionId()
    const jti = newRefreshId()
    const maxTtlMs = this.#options.sessionMaxLifetime * 1000
    const ttlMs = await this.#call(() => this.store.create({
      userId: sub, sessionId: sid, tokenHash: hashId(jti), ttlMs: this.#options.refreshTokenTtl * 1000, maxTtlMs, client
    }))
    const endsAt = nowSeconds() + this.#options.sessionMaxLifetime
    const tokens = this.#sign(sub, sid, jti, ttlMs, endsAt, claims)
    await this.#emit('onLogin', sub, sid, 'login', request)
    return tokens
  }

  /**
   * Rotates a refresh token. The token is verified before the store is touched, so a
   * forged token never reaches the session it names.
   */
  async rotate (refreshToken: string, request?: FastifyRequest): Promise<IssuedTokens> {
    const { sub, sid, jti, endsAt, claims } = this.#codec.verifyRefresh(refreshToken)
    const successor = successorId(this.#options.keys, jti)
    const outcome = await this.#call(() => this.store.rotate({
      userId: sub,
      sessionId: sid,
      presentedHash: hashId(jti),
      successorHash: hashId(successor),
      ttlMs: this.#options.refreshTokenTtl * 1000,
      graceMs: this.#options.reuseGraceMs,
      rememberMs: this.#options.rememberMs
    }))
    switch (outcome.status) {
      case 'rotated':
      case 'replayed': {
        const tokens = this.#sign(sub, sid, successor, outcome.ttlMs, endsAt, claims)
        // Every refresh passes here: without an onRefresh hook, not even an await.
        const audit = outcome.status === 'rotated' ? this.#emit('onRefresh', sub, sid, 'refresh', request) : undefined
        if (audit !== undefined) await audit
        return tokens
      }
      case 'reused': {
        this.#revocations.remember([sid], this.#options.rememberMs)
        ;(request?.log ?? this.#log).warn({ userId: sub, sessionId: sid }, 'refresh token reuse detected: session revoked')
        await this.#emit('onReuseDetected', sub, sid, 'reuse', request)
        await this.#emit('onSessionRevoked', sub, sid, 'reuse', request)
        throw new TokenReusedError()
      }
      default:
        throw new SessionRevokedError()
    }
  }

  /** Verifies an access token; no store access. */
  verifyAccess (accessToken: string): SessionUser {
    return this.#codec.verifyAccess(accessToken)
  }

  /** Whether a session is live, asking the store. */
  async isLive (userId: string, sessionId: string): Promise<boolean> {
    return await this.#call(() => this.store.isLive(userId, sessionId))
  }

  /** Whether the store answers within the store timeout. */
  async storeAnswers (): Promise<boolean> {
    return await this.#call(async () => { await this.store.ping() }).then(() => true, () => false)
  }

  /** The session a refresh token names, if its signature holds. */
  refreshSession (refreshToken: string): SessionRef {
    const { sub, sid } = this.#codec.verifyRefresh(refreshToken)
    return { userId: sub, sessionId: sid }
  }

  /** The user's live sessions, oldest first. */
  async list (userId: unknown): Promise<SessionInfo[]> {
    const sub = checkUserId(userId)
    return await this.#call(() => this.store.list(sub))
  }

  /** Ends one session. Resolves to whether it was live. */
  async revoke (userId: unknown, sessionId: string, reason: string, request?: FastifyRequest): Promise<boolean> {
    const sub = checkUserId(userId)
    if (!SESSION_ID.test(sessionId)) return false
    const revoked = await this.#call(() => this.store.revoke(sub, sessionId, this.#options.rememberMs))
    if (revoked) {
      this.#revocations.remember([sessionId], this.#options.rememberMs)
      if (reason === 'logout') await this.#emit('onLogout', sub, sessionId, reason, request)
      await this.#emit('onSessionRevoked', sub, sessionId, reason, request)
    }
    return revoked
  }

  /**
   * Ends every session of a user but `except`; with `ifLive`, only while that session is
   * live (else null). Resolves to the ids it ended.
   */
  async revokeAll (userId: unknown, options: { except?: string }, reason: string, request?: FastifyRequest): Promise<string[]>
  async revokeAll (userId: unknown, options: { except?: string, ifLive: string }, reason: string, request?: FastifyRequest): Promise<string[] | null>
  async revokeAll (userId: unknown, options: { except?: string, ifLive?: string }, reason: string, request?: FastifyRequest): Promise<string[] | null> {
    const sub = checkUserId(userId)
    const revoked = await this.#call(() => this.store.revokeAll(sub, { ...options, rememberMs: this.#options.rememberMs }))
    this.#revocations.remember(revoked ?? [], this.#options.rememberMs)
    for (const sessionId of revoked ?? []) {
      if (sessionId === options.ifLive) await this.#emit('onLogout', sub, sessionId, reason, request)
      await this.#emit('onSessionRevoked', sub, sessionId, reason, request)
    }
    return revoked
  }

  #sign (sub: string, sid: string, jti: string, ttlMs: number, endsAt: number, claims: Claims): IssuedTokens {
    const refreshExpiresIn = Math.ceil(ttlMs / 1000)
    const expiresIn = Math.min(this.#options.accessTokenTtl, refreshExpiresIn)
    return {
      accessToken: this.#codec.signAccess({ sub, sid, ttlSeconds: expiresIn, claims }),
      refreshToken: this.#codec.signRefresh({ sub, sid, jti, ttlSeconds: refreshExpiresIn, endsAt, claims }),
      tokenType: 'Bearer',
      expiresIn,
      refreshExpiresIn,
      sessionId: sid
    }
  }

  #clientOf (request: FastifyRequest | undefined, label: string | undefined): ClientInfo {
    const client: ClientInfo = {}
    const { ip, userAgent } = this.#options.clientInfo
    const agent = request?.headers['user-agent']
    // Printable ASCII only, so that characters and bytes count the same in the store.
    if (userAgent && agent !== undefined && agent !== '') client.userAgent = agent.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_USER_AGENT)
    if (ip && request !== undefined) client.ip = request.ip
    if (label !== undefined) client.label = label.slice(0, MAX_LABEL)
    return client
  }

  /**
   * Runs one store operation within `storeTimeout`. The deadlines share one timer, and
   * the outcome is settled directly: no timer, racing promise and async frame per call.
   */
  #call<T> (operation: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadline = this.#deadlines.watch(reject)
      const fail = (cause: unknown): void => {
        this.#deadlines.done(deadline)
        reject(new StoreUnavailableError({ cause }))
      }
      let result: Promise<T>
      try {
        result = operation()
      } catch (cause) {
        return fail(cause)
      }
      // A store may answer with a plain value: Promise.resolve passes a promise through as is.
      Promise.resolve(result).then((value) => {
        this.#deadlines.done(deadline)
        resolve(value)
      }, fail)
    })
  }
}

/** A store call in flight: when it times out, and how to fail it then. */
interface Deadline {
  at: number
  reject: (error: Error) => void
}

/**
 * The deadlines of the store calls in flight. They all share one duration, so the order
 * calls start in is the order their deadlines fall in: one timer, armed for the oldest
 * call still pending, serves them all. It is cleared whenever nothing is pending, so it
 * never holds the process open for nothing.
 */
class Deadlines {
  readonly #ms: number
  /** Insertion order: oldest first, which is also earliest deadline first. */
  readonly #pending = new Set<Deadline>()
  #timer: NodeJS.Timeout | undefined

  constructor (ms: number) {
    this.#ms = ms
  }

  watch (reject: (error: Error) => void): Deadline {
    const deadline = { at: Date.now() + this.#ms, reject }
    this.#pending.add(deadline)
    this.#timer ??= setTimeout(() => this.#expire(), this.#ms)
    return deadline
  }

  done (deadline: Deadline): void {
    this.#pending.delete(deadline)
    if (this.#pending.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
  }

  #expire (): void {
    this.#timer = undefined
    const now = Date.now()
    for (const deadline of this.#pending) {
      if (deadline.at > now) {
        this.#timer = setTimeout(() => this.#expire(), deadline.at - now)
        return
      }
      this.#pending.delete(deadline)
      deadline.reject(new StoreUnavailableError({ cause: new Error(`session store did not answer within ${this.#ms} ms`) }))
    }
  }
}

function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}
