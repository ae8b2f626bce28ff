import { SessionRevokedError, StoreUnavailableError, TokenReusedError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import type { SessionStore } from './stores/store.js'
import {
  checkClaims, checkUserId, hashId, newRefreshId, newSessionId, successorId,
  type Claims, type TokenCodec
} from './tokens.js'
import type { SessionUser, TokenSet } from './types.js'

/** A token set before the HTTP layer decides how it travels. */
export type IssuedTokens = Omit<TokenSet, 'transport'>

/** Who a revoked session belonged to, for the reuse alarm. */
export interface SessionRef {
  userId: string
  sessionId: string
}

/**
 * The session lifecycle: issue, rotate, verify, revoke. It knows tokens and the store,
 * not HTTP. Every store call is bounded by `storeTimeout` and any store failure becomes
 * a 503 error whose `cause` holds the original (for logs, never for clients).
 */
export class Sessions {
  readonly store: SessionStore
  readonly #options: ResolvedOptions
  readonly #codec: TokenCodec

  constructor (options: ResolvedOptions, codec: TokenCodec, store: SessionStore) {
    this.#options = options
    this.#codec = codec
    this.store = store
  }

  /** Starts a session: one store round trip, then two signatures. */
  async issue (userId: unknown, claims: unknown): Promise<IssuedTokens> {
    const sub = checkUserId(userId)
    const checkedClaims = checkClaims(claims)
    const sid = newSessionId()
    const jti = newRefreshId()
    const ttlMs = this.#options.refreshTokenTtl * 1000
    await this.#call(() => this.store.create({ userId: sub, sessionId: sid, tokenHash: hashId(jti), ttlMs }))
    return this.#sign(sub, sid, jti, ttlMs, checkedClaims)
  }

  /**
   * Rotates a refresh token. The token is verified before the store is touched, so a
   * forged token never reaches the session it names.
   */
  async rotate (refreshToken: string, onReuse?: (session: SessionRef) => void): Promise<IssuedTokens> {
    const { sub, sid, jti, claims } = this.#codec.verifyRefresh(refreshToken)
    const successor = successorId(this.#options.keys, jti)
    const outcome = await this.#call(() => this.store.rotate({
      userId: sub,
      sessionId: sid,
      presentedHash: hashId(jti),
      successorHash: hashId(successor),
      ttlMs: this.#options.refreshTokenTtl * 1000,
      graceMs: this.#options.reuseGraceMs
    }))
    switch (outcome.status) {
      case 'rotated':
      case 'replayed':
        return this.#sign(sub, sid, successor, outcome.ttlMs, claims)
      case 'reused':
        onReuse?.({ userId: sub, sessionId: sid })
        throw new TokenReusedError()
      default:
        throw new SessionRevokedError()
    }
  }

  /** Verifies an access token; no store access. */
  verifyAccess (accessToken: string): SessionUser {
    const { sub, sid, claims } = this.#codec.verifyAccess(accessToken)
    return { ...claims, id: sub, sessionId: sid }
  }

  /** Reads the session a refresh token names, if its signature holds. */
  refreshSession (refreshToken: string): SessionRef {
    const { sub, sid } = this.#codec.verifyRefresh(refreshToken)
    return { userId: sub, sessionId: sid }
  }

  async revoke (userId: unknown, sessionId: string): Promise<boolean> {
    const sub = checkUserId(userId)
    return await this.#call(() => this.store.revoke(sub, sessionId))
  }

  /** Ends every session of a user; with `ifLive`, only while that session is live (else null). */
  async revokeAll (userId: unknown): Promise<number>
  async revokeAll (userId: unknown, ifLive: string): Promise<number | null>
  async revokeAll (userId: unknown, ifLive?: string): Promise<number | null> {
    const sub = checkUserId(userId)
    return await this.#call(() => this.store.revokeAll(sub, ifLive === undefined ? {} : { ifLive }))
  }

  #sign (sub: string, sid: string, jti: string, ttlMs: number, claims: Claims): IssuedTokens {
    const refreshExpiresIn = Math.ceil(ttlMs / 1000)
    const expiresIn = Math.min(this.#options.accessTokenTtl, refreshExpiresIn)
    return {
      accessToken: this.#codec.signAccess({ sub, sid, ttlSeconds: expiresIn, claims }),
      refreshToken: this.#codec.signRefresh({ sub, sid, jti, ttlSeconds: refreshExpiresIn, claims }),
      tokenType: 'Bearer',
      expiresIn,
      refreshExpiresIn,
      sessionId: sid
    }
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
