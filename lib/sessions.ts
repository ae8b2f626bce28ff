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
import type { AuditEvent, IssueOptions, SessionUser, TokenSet } from './types.js'

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

  constructor (options: ResolvedOptions, codec: TokenCodec, store: SessionStore, revocations: RevocationList, emit: Emit, log: FastifyBaseLogger) {
    this.#options = options
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
    await this.#emit('onLogin', this.#event(sub, sid, 'login', request), request)
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
        if (outcome.status === 'rotated') await this.#emit('onRefresh', this.#event(sub, sid, 'refresh', request), request)
        return tokens
      }
      case 'reused': {
        this.#revocations.remember([sid], this.#options.rememberMs)
        const event = this.#event(sub, sid, 'reuse', request)
        ;(request?.log ?? this.#log).warn({ userId: sub, sessionId: sid }, 'refresh token reuse detected: session revoked')
        await this.#emit('onReuseDetected', event, request)
        await this.#emit('onSessionRevoked', event, request)
        throw new TokenReusedError()
      }
      default:
        throw new SessionRevokedError()
    }
  }

  /** Verifies an access token; no store access. */
  verifyAccess (accessToken: string): SessionUser {
    const { sub, sid, expiresAt, claims } = this.#codec.verifyAccess(accessToken)
    return { ...claims, id: sub, sessionId: sid, expiresAt }
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
      const event = this.#event(sub, sessionId, reason, request)
      if (reason === 'logout') await this.#emit('onLogout', event, request)
      await this.#emit('onSessionRevoked', event, request)
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
      const event = this.#event(sub, sessionId, reason, request)
      if (sessionId === options.ifLive) await this.#emit('onLogout', event, request)
      await this.#emit('onSessionRevoked', event, request)
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

  #event (userId: string, sessionId: string, reason: string, request: FastifyRequest | undefined): AuditEvent {
    return { userId, sessionId, reason, ip: request?.ip, userAgent: request?.headers['user-agent'] }
  }

  async #call<T> (operation: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`session store did not answer within ${this.#options.storeTimeout} ms`)), this.#options.storeTimeout)
    })
    try {
      const result = await Promise.race([operation(), timeout])
      clearTimeout(timer)
      return result
    } catch (cause) {
      clearTimeout(timer)
      throw new StoreUnavailableError({ cause })
    }
  }
}

function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}
