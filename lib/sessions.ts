import { hash, randomBytes } from 'node:crypto'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Emit } from './audit.js'
import { askClaims, SessionEnd } from './claims.js'
import type { StoreClock } from './clock.js'
import type { Proof } from './dpop.js'
import {
  ClientMismatchError, CredentialsStaleError, DpopProofInvalidError, ScopeInvalidError, SessionRevokedError, StoreUnavailableError, TokenInvalidError, TokenReusedError
} from './errors.js'
import type { ResolvedOptions } from './options.js'
import type { StoreCallEnd, StoreOperation, Telemetry } from './telemetry.js'
import type { RevocationList } from './revocations.js'
import { MAX_USER_AGENT, type ClientInfo, type PresentedToken, type SessionPage, type SessionStore } from './stores/store.js'
import {
  RESERVED_CLAIMS, checkClaims, checkUserId, hashId, isSessionId, newRefreshId, newSessionId, successorId, type Authentication, type Grant, type TokenCodec
} from './tokens.js'
import type { ClaimsHook, ClaimValues, IssueRequest, SessionUser, TokenSet } from './types.js'

/** A token set before the HTTP layer decides how it travels, and the access token's scope. */
export type IssuedTokens = Omit<TokenSet, 'transport'> & { scope?: string }

/**
 * A DPoP proof that came with a login or a refresh, and whether the access token is bound
 * to its key too (a native client's is; a browser's cookie stays a bearer token).
 */
export interface Binding {
  proof: Proof
  bindAccess: boolean
}

/** What a refresh asks beside the token. */
export interface RefreshRequest {
  /** The `client_id` the client sent (token endpoint): it must be the session's. */
  clientId?: string
  /** The `scope` the client asked for (token endpoint): within the session's; the access token gets it. */
  scope?: string
  /**
   * The request's DPoP proof, checked: called once the refresh token has verified, so that
   * a forged token never costs a proof's verification. Undefined when it carries none.
   */
  proof?: () => Proof | undefined
  /** Whether the access token is bound to the proof's key too (not a browser's cookie). */
  bindAccess?: boolean
}

/** A scope as OAuth writes it: space-separated tokens of printable ASCII but `"` and `\`. */
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/

/** A session of a user, and the refresh token that named it, if one did. */
export interface SessionRef {
  userId: string
  sessionId: string
  presented?: PresentedToken
  /** When the session started (ms, store clock), when the token that named it says. */
  startedAt?: number
}

/** What a token set is signed from. */
interface SignInput {
  sub: string
  sid: string
  jti: string
  startedAt: number
  ttlMs: number
  endsAt: number
  remembered: boolean
  claims: ClaimValues
  grant: Grant
  /** The access token's scope: the session's, or a narrower one a refresh asked for. */
  accessScope: string | undefined
  /** The DPoP key the access token is bound to, if any. */
  accessKey: string | undefined
  auth: Authentication
}

/** The claims of a refresh token when the claims hook gives them at each refresh. */
const NO_CLAIMS: ClaimValues = Object.freeze({})
/** The longest label a session keeps, and the longest client id. */
const MAX_LABEL = 100
/** The longest scope a session may be granted: it travels in every token. */
const MAX_SCOPE = 1000
/**
 * On a request that revoked every session of a user: whom, and the stamp. A login in the
 * same request (a password reset that signs the user in again) comes after it.
 */
const REVOKED_ALL = Symbol('fastify-token-sessions.revokedAll')
type RevokedAllRequest = FastifyRequest & { [REVOKED_ALL]?: { userId: string, at: number } }

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
  readonly #clock: StoreClock
  readonly #deadlines: Deadlines
  readonly #telemetry: Telemetry | undefined
  /** The prefix of this instance's write ids, random, and how many writes it has made. */
  readonly #writeIds = randomBytes(12).toString('base64url') + '.'
  #writes = 0

  constructor (
    options: ResolvedOptions, codec: TokenCodec, store: SessionStore, revocations: RevocationList, clock: StoreClock, emit: Emit, log: FastifyBaseLogger,
    telemetry?: Telemetry
  ) {
    this.#options = options
    this.#deadlines = new Deadlines(options.storeTimeout)
    this.#codec = codec
    this.store = store
    this.#revocations = revocations
    this.#clock = clock
    this.#emit = emit
    this.#log = log
    this.#telemetry = telemetry
  }

  /**
   * Starts a session: one store round trip, then two signatures. `authenticatedAt` (ms,
   * this instance's clock) is when the app checked the credentials: a revocation of every
   * session of the user after it (a password change) makes the login fail, not survive it.
   */
  async issue (userId: unknown, options: IssueRequest, request?: FastifyRequest, binding?: Binding): Promise<IssuedTokens> {
    const sub = checkUserId(userId)
    const grant = this.#grantOf(options)
    const method = authenticationOf(options)
    const remembered = rememberedOf(options)
    const sid = newSessionId()
    const jti = newRefreshId()
    const hook = this.#options.claims
    // Asked before the store is touched: a hook that fails or ends the session starts none.
    const claims = options.claims !== undefined || hook === undefined
      ? checkClaims(options.claims)
      : await askClaims(hook, this.#options.storeTimeout, sub, sid, 'login', request)
    if (claims instanceof SessionEnd) throw new SessionRevokedError()
    const agent = this.#agentOf(request)
    const authenticatedAt = this.#checkedAt(sub, options.authenticatedAt, request)
    const lifetime = this.#lifetime(remembered)
    const outcome = await this.#write('create', (deadline) => this.store.create({
      deadline,
      userId: sub,
      sessionId: sid,
      tokenHash: hashId(jti),
      ttlMs: this.#options.refreshTokenTtl * 1000,
      maxTtlMs: lifetime * 1000,
      ...(remembered ? {} : { remembered }),
      client: this.#clientOf(request, options.label),
      maxSessions: this.#options.maxSessionsPerUser,
      rememberMs: this.#options.rememberMs,
      ...(agent === undefined ? {} : { agent }),
      ...(authenticatedAt === undefined ? {} : { authenticatedAt }),
      ...(binding === undefined ? {} : { boundKey: binding.proof.jkt })
    }))
    if (outcome.status === 'stale') throw new CredentialsStaleError()
    // The absolute end counts from the session's start, as the store counts it.
    const endsAt = Math.floor(outcome.startedAt / 1000) + lifetime
    // auth_time: when the credentials were checked, else the session's start.
    const auth = { ...method, time: Math.floor((authenticatedAt ?? outcome.startedAt) / 1000) }
    const tokens = this.#sign({ sub, sid, jti, startedAt: outcome.startedAt, ttlMs: outcome.ttlMs, endsAt, remembered, claims, grant, accessScope: grant.scope, accessKey: accessKeyOf(binding), auth })
    await this.#ended(sub, outcome.ended, 'limit', request)
    await this.#emit('onLogin', { userId: sub, sessionId: sid, reason: 'login' }, request)
    return tokens
  }

  /**
   * Rotates a refresh token. The token is verified before the store is touched, so a
   * forged token never reaches the session it names; with `boundTo`, a token of any other
   * session is rejected there too, and so is one of another client or a wider scope. A
   * session bound to a DPoP key at login needs a proof by that key (the store checks it,
   * after deciding reuse, and that the proof's id is new); one bound to none refuses a
   * proof. A refused refresh leaves the token unspent.
   */
  rotate (refreshToken: string, request?: FastifyRequest, boundTo?: string, asked: RefreshRequest = {}): Promise<IssuedTokens> {
    const rotation = this.#rotate(refreshToken, request, boundTo, asked)
    const telemetry = this.#telemetry
    // Counted only where an SDK records: otherwise not even a promise more.
    if (telemetry?.metering !== true) return rotation
    return rotation.catch((error: unknown) => {
      telemetry.refreshFailed(error)
      throw error
    })
  }

  async #rotate (refreshToken: string, request: FastifyRequest | undefined, boundTo: string | undefined, asked: RefreshRequest): Promise<IssuedTokens> {
    const { sub, sid, jti, endsAt, remembered, claims, clientId, scope, auth } = this.#codec.verifyRefresh(refreshToken)
    if (boundTo !== undefined && boundTo !== sid) throw new TokenInvalidError()
    if (asked.clientId !== undefined && asked.clientId !== clientId) throw new ClientMismatchError()
    const accessScope = narrowed(scope, asked.scope)
    const checked = asked.proof?.()
    const binding = checked === undefined ? undefined : { proof: checked, bindAccess: asked.bindAccess === true }
    const successor = successorId(this.#options.keys, jti)
    const agent = this.#agentOf(request)
    const proof = checked === undefined ? undefined : this.#proofRecord(checked)
    // Without a claims hook, no extra await: the refresh is as it was.
    const current = this.#options.claims === undefined ? claims : await this.#currentClaims(sub, sid, request)
    const outcome = await this.#write('rotate', (deadline, writeId) => this.store.rotate({
      deadline,
      writeId,
      userId: sub,
      sessionId: sid,
      presentedHash: hashId(jti),
      successorHash: hashId(successor),
      ttlMs: this.#options.refreshTokenTtl * 1000,
      // The signed token's choice, never the request's: a rotation keeps the session's lifetime.
      maxTtlMs: this.#lifetime(remembered) * 1000,
      graceMs: this.#options.reuseGraceMs,
      rememberMs: this.#options.rememberMs,
      ...(agent === undefined ? {} : { agent }),
      ...(proof === undefined ? {} : { proof })
    }))
    switch (outcome.status) {
      case 'rotated':
      case 'replayed': {
        const grant = { clientId, scope }
        // A session from before auth_time existed: its start is when the user last proved who they were.
        const last = { ...auth, time: auth.time ?? Math.floor(outcome.startedAt / 1000) }
        const tokens = this.#sign({ sub, sid, jti: successor, startedAt: outcome.startedAt, ttlMs: outcome.ttlMs, endsAt, remembered, claims: current, grant, accessScope, accessKey: accessKeyOf(binding), auth: last })
        // The token endpoint answers the access token's scope.
        if (accessScope !== undefined) tokens.scope = accessScope
        this.#telemetry?.refreshed(outcome.status === 'rotated' ? 'rotated' : 'grace_replay')
        await this.#emit('onRefresh', { userId: sub, sessionId: sid, reason: 'refresh', replay: outcome.status === 'replayed' }, request)
        return tokens
      }
      case 'reused':
        return await this.#reused(sub, sid, request)
      case 'unbound':
      case 'wrong-key':
      case 'proof-replayed':
        throw new DpopProofInvalidError()
      default:
        throw new SessionRevokedError()
    }
  }

  /**
   * Steps the caller's session up after the app checked the credentials again (RFC 9470):
   * `auth_time` (and `acr`/`amr`, as this authentication gives them) raised, a new token
   * pair for the same session, in one store round trip. The refresh token it replaces is
   * superseded with no grace window: presented afterwards, it is reuse. `access` is what
   * the request's access token said of its grant and key: the new tokens keep them.
   */
  async stepUp (
    user: SessionUser, access: { clientId: string | undefined, scope: string | undefined, jkt: string | undefined },
    options: { acr?: unknown, amr?: unknown, authenticatedAt: number }, request?: FastifyRequest
  ): Promise<IssuedTokens> {
    const { id: sub, sessionId: sid } = user
    const method = authenticationOf(options)
    const checked = options.authenticatedAt + this.#clock.offsetMs
    const claims = this.#options.claims === undefined ? appClaims(user) : await this.#currentClaims(sub, sid, request)
    const jti = newRefreshId()
    const outcome = await this.#write('step_up', (deadline, writeId) => this.store.stepUp({
      deadline,
      writeId,
      userId: sub,
      sessionId: sid,
      successorHash: hashId(jti),
      ttlMs: this.#options.refreshTokenTtl * 1000,
      maxTtlMs: this.#options.sessionMaxLifetime * 1000,
      browserSessionMaxTtlMs: this.#options.browserSessionMaxLifetime * 1000
    }))
    if (outcome.status === 'missing') throw new SessionRevokedError()
    // The store kept the login's choice: the access token does not carry it. Remembered
    // unless the store says otherwise, as a session created without the choice is.
    const remembered = outcome.remembered !== false
    const endsAt = Math.floor(outcome.startedAt / 1000) + this.#lifetime(remembered)
    const grant = { clientId: access.clientId, scope: access.scope }
    const auth = { ...method, time: Math.floor(checked / 1000) }
    const tokens = this.#sign({ sub, sid, jti, startedAt: outcome.startedAt, ttlMs: outcome.ttlMs, endsAt, remembered, claims, grant, accessScope: grant.scope, accessKey: access.jkt, auth })
    await this.#emit('onRefresh', { userId: sub, sessionId: sid, reason: 'step-up' }, request)
    return tokens
  }

  /**
   * The claims of a refresh's new tokens when the app gave a claims hook: what it says now,
   * asked before the rotation so that a hook that fails spends nothing. A hook that ends the session has it revoked (on every instance, through the
   * store's feed) and the refresh refused.
   */
  async #currentClaims (sub: string, sid: string, request: FastifyRequest | undefined): Promise<ClaimValues> {
    const current = await askClaims(this.#options.claims as ClaimsHook, this.#options.storeTimeout, sub, sid, 'refresh', request)
    if (!(current instanceof SessionEnd)) return current
    await this.revoke({ userId: sub, sessionId: sid }, current.reason, request)
    throw new SessionRevokedError()
  }

  /**
   * Verifies an access token; no store access. `jkt`: the thumbprint of the DPoP proof's
   * key that came with it, if one did (see {@link TokenCodec.verifyAccess}).
   */
  verifyAccess (accessToken: string, jkt?: string): SessionUser {
    return this.#codec.verifyAccess(accessToken, jkt)
  }

  /** Verifies an access token bound to whatever key it names (see {@link TokenCodec.verifyAccessAnyKey}); no store access. */
  verifyAccessAnyKey (accessToken: string, bound: boolean): ReturnType<TokenCodec['verifyAccessAnyKey']> {
    return this.#codec.verifyAccessAnyKey(accessToken, bound)
  }

  /** The store's clock, in ms: the clock every token's times are on. */
  now (): number {
    return this.#clock.now()
  }

  /** Whether a session is live, asking the store. */
  async isLive (userId: string, sessionId: string): Promise<boolean> {
    return await this.#call('is_live', () => this.store.isLive(userId, sessionId))
  }

  /**
   * Remembers the id of a proof `authenticate` accepted, in the store, until the proof goes
   * stale (`dpop.sharedReplayCheck`, which registration allows only with a store that has
   * `rememberProof`). Resolves to whether no instance had presented it before.
   */
  async rememberProof (proof: Proof): Promise<boolean> {
    const { key, id, ttlMs } = this.#proofRecord(proof)
    return await this.#call('remember_proof', () => (this.store as Required<SessionStore>).rememberProof(key, id, ttlMs))
  }

  /** Whether the store answers within the store timeout. */
  async storeAnswers (): Promise<boolean> {
    return await this.#call('ping', async () => { await this.store.ping() }).then(() => true, () => false)
  }

  /** The session a refresh token names, if its signature holds, the token's hash, and the session's client. */
  refreshSession (refreshToken: string): SessionRef & { clientId: string | undefined } {
    const { sub, sid, jti, clientId } = this.#codec.verifyRefresh(refreshToken)
    return { userId: sub, sessionId: sid, presented: { hash: hashId(jti), graceMs: this.#options.reuseGraceMs }, clientId }
  }

  /** One page of the user's live sessions, newest first. */
  async list (userId: unknown, page: { cursor?: number, limit: number }): Promise<SessionPage> {
    const sub = checkUserId(userId)
    const listed = await this.#call('list', () => this.store.list(sub, page))
    // Remembered unless the store says otherwise (a store from before the choice says nothing).
    for (const session of listed.sessions) session.remembered = session.remembered !== false
    return listed
  }

  /**
   * Ends one session. Resolves to whether it was live. A superseded refresh token naming
   * it is reuse, as on refresh: the session ends, the reuse hooks run and the caller gets
   * `FTS_TOKEN_REUSED`. A bound session's own refresh token ends it only with a proof by its
   * key (`presented.proofKey`); without one nothing changes, and it resolves to false.
   */
  async revoke (session: SessionRef, reason: string, request?: FastifyRequest): Promise<boolean> {
    const sub = checkUserId(session.userId)
    const { sessionId } = session
    if (!isSessionId(sessionId)) return false
    // Already over here: no store work, however often an ended session's tokens come back.
    if (this.#revocations.knowsEnded(sub, sessionId, session.startedAt)) return false
    const presented = this.#presented(session, request)
    const outcome = await this.#write('revoke', (deadline, writeId) => this.store.revoke({
      deadline,
      writeId,
      userId: sub,
      sessionId,
      rememberMs: this.#options.rememberMs,
      ...(presented === undefined ? {} : { presented })
    }))
    if (outcome === 'missing') return false
    if (outcome === 'reused') return await this.#reused(sub, sessionId, request)
    this.#revocations.remember([{ sessionId, until: this.#clock.now() + this.#options.rememberMs }])
    this.#counted(reason, false, reason === 'logout')
    if (reason === 'logout') await this.#emit('onLogout', { userId: sub, sessionId, reason }, request)
    await this.#emit('onSessionRevoked', { userId: sub, sessionId, reason }, request)
    return true
  }

  /**
   * Ends every session of a user but `except`, in one step whatever their number. With
   * `caller` (logout-all), only while the caller's session is live (else `false`), and a
   * superseded refresh token naming it is reuse, as on refresh.
   */
  async revokeAll (userId: unknown, options: { except?: string, caller?: SessionRef }, reason: string, request?: FastifyRequest): Promise<boolean> {
    const sub = checkUserId(userId)
    const { except, caller } = options
    if (caller !== undefined && this.#revocations.knowsEnded(sub, caller.sessionId, caller.startedAt)) return false
    const presented = caller === undefined ? undefined : this.#presented(caller, request)
    const outcome = await this.#write('revoke_all', (deadline, writeId) => this.store.revokeAll(sub, {
      deadline,
      writeId,
      rememberMs: this.#options.rememberMs,
      ...(except === undefined ? {} : { except }),
      ...(caller === undefined ? {} : { ifLive: caller.sessionId }),
      ...(presented === undefined ? {} : { presented })
    }))
    if (outcome.status !== 'revoked') {
      if (outcome.status === 'missing') return false
      return await this.#reused(sub, (caller as SessionRef).sessionId, request)
    }
    const { startedBefore, spared } = outcome
    const until = startedBefore + this.#options.rememberMs
    // What the store spared, not what was asked: a session already over stays over.
    this.#revocations.remember([spared === undefined ? { userId: sub, startedBefore, until } : { userId: sub, startedBefore, except: spared, until }])
    if (request !== undefined) (request as RevokedAllRequest)[REVOKED_ALL] = { userId: sub, at: startedBefore }
    this.#counted(reason, true, caller !== undefined)
    if (caller !== undefined) await this.#emit('onLogout', { userId: sub, sessionId: caller.sessionId, reason }, request)
    await this.#emit('onSessionRevoked', { userId: sub, sessionId: caller?.sessionId, reason, allSessions: true, ...(spared === undefined ? {} : { except: spared }) }, request)
    return true
  }

  /**
   * When the credentials were checked, on the store's clock: `authenticatedAt` (this
   * instance's clock), or after the revocation of all of the user's sessions that this same
   * request made.
   */
  #checkedAt (userId: string, authenticatedAt: number | undefined, request: FastifyRequest | undefined): number | undefined {
    const checked = authenticatedAt === undefined ? undefined : authenticatedAt + this.#clock.offsetMs
    const revoked = (request as RevokedAllRequest | undefined)?.[REVOKED_ALL]
    if (checked === undefined || revoked === undefined || revoked.userId !== userId) return checked
    return Math.max(checked, revoked.at)
  }

  /**
   * What the store remembers of a proof: its key's thumbprint, its id's hash, and for how
   * long (its remaining lifetime, in whole milliseconds: a proof's iat may have a fraction,
   * and Redis takes none in PX).
   */
  #proofRecord (proof: Proof): { key: string, id: string, ttlMs: number } {
    return { key: proof.jkt, id: hashId(proof.jti), ttlMs: Math.max(1, Math.ceil(proof.expiresAt - this.#clock.now())) }
  }

  /** A rotated refresh token came back: the store has revoked its session. Throws. */
  async #reused (userId: string, sessionId: string, request: FastifyRequest | undefined): Promise<never> {
    this.#revocations.remember([{ sessionId, until: this.#clock.now() + this.#options.rememberMs }])
    ;(request?.log ?? this.#log).warn({ userId, sessionId }, 'refresh token reuse detected: session revoked')
    this.#counted('reuse', false, false)
    await this.#emit('onReuseDetected', { userId, sessionId, reason: 'reuse' }, request)
    await this.#emit('onSessionRevoked', { userId, sessionId, reason: 'reuse' }, request)
    throw new TokenReusedError()
  }

  /** Sessions the store ended itself (the per-user cap): remembered and told like any other. */
  async #ended (userId: string, sessionIds: string[], reason: string, request: FastifyRequest | undefined): Promise<void> {
    if (sessionIds.length === 0) return
    const until = this.#clock.now() + this.#options.rememberMs
    this.#revocations.remember(sessionIds.map((sessionId) => ({ sessionId, until })))
    for (const sessionId of sessionIds) {
      this.#counted(reason, false, false)
      await this.#emit('onSessionRevoked', { userId, sessionId, reason }, request)
    }
  }

  /** A revocation (and a logout, when it is one), in the app's metrics. */
  #counted (reason: string, all: boolean, logout: boolean): void {
    this.#telemetry?.revoked(reason, all)
    if (logout) this.#telemetry?.loggedOut(all)
  }

  #sign (input: SignInput): IssuedTokens {
    const { sub, sid, jti, startedAt, endsAt, remembered, claims, grant, accessScope, accessKey: jkt, auth } = input
    const refreshExpiresIn = Math.ceil(input.ttlMs / 1000)
    const expiresIn = Math.min(this.#options.accessTokenTtl, refreshExpiresIn)
    return {
      accessToken: this.#codec.signAccess({ sub, sid, startedAt, ttlSeconds: expiresIn, claims, grant: { clientId: grant.clientId, scope: accessScope }, auth, jkt }),
      // With a claims hook, each refresh asks it: the refresh token need not carry them.
      refreshToken: this.#codec.signRefresh({ sub, sid, jti, ttlSeconds: refreshExpiresIn, endsAt, remembered, claims: this.#options.claims === undefined ? claims : NO_CLAIMS, grant, auth }),
      tokenType: jkt === undefined ? 'Bearer' : 'DPoP',
      expiresIn,
      refreshExpiresIn,
      sessionId: sid,
      remembered
    }
  }

  /** A session's absolute lifetime (seconds): shorter for one not remembered. */
  #lifetime (remembered: boolean): number {
    return remembered ? this.#options.sessionMaxLifetime : this.#options.browserSessionMaxLifetime
  }

  /** The client and scope of a new session: as the app asked, the client by default the configured one. */
  #grantOf (options: IssueRequest): Grant {
    const clientId = options.clientId ?? this.#options.clientId
    const { scope } = options
    if (clientId !== undefined && (typeof clientId !== 'string' || clientId === '' || clientId.length > MAX_LABEL)) {
      throw new TypeError(`fastify-token-sessions: clientId must be a non-empty string of at most ${MAX_LABEL} characters`)
    }
    if (scope !== undefined && (typeof scope !== 'string' || !SCOPE.test(scope) || scope.length > MAX_SCOPE)) {
      throw new TypeError(`fastify-token-sessions: scope must be space-separated OAuth scope tokens, at most ${MAX_SCOPE} characters`)
    }
    return { clientId, scope }
  }

  /** The presented token of a session reference, with this request's agent when checked. */
  #presented (session: SessionRef, request: FastifyRequest | undefined): PresentedToken | undefined {
    const agent = this.#agentOf(request)
    if (session.presented === undefined || agent === undefined) return session.presented
    return { ...session.presented, agent }
  }

  /**
   * With `replayRequiresSameUserAgent`, a short tag of the client's user agent: a replay
   * within the grace window must come from the agent that last rotated the session.
   */
  #agentOf (request: FastifyRequest | undefined): string | undefined {
    if (!this.#options.replayRequiresSameUserAgent) return undefined
    return hash('sha256', request?.headers['user-agent'] ?? '', 'base64url').slice(0, 11)
  }

  #clientOf (request: FastifyRequest | undefined, label: string | undefined): ClientInfo {
    const client: ClientInfo = {}
    const { ip, userAgent } = this.#options.clientInfo
    const agent = request?.headers['user-agent']
    // Printable ASCII only, so that characters and bytes count the same in the store; a
    // longer one is cut (the part that names the browser and the platform comes first).
    if (userAgent && agent !== undefined && agent !== '') client.userAgent = agent.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_USER_AGENT)
    if (ip && request !== undefined) client.ip = request.ip
    if (label !== undefined) client.label = label.slice(0, MAX_LABEL)
    return client
  }

  /**
   * Runs one store write within `storeTimeout`, telling the store its deadline on the
   * store's clock and an id unique to it: a write that reaches the store past its deadline
   * changes nothing (`late`), since its request has had its 503 by then, and one that comes
   * back `late` is a 503 too; the same write delivered twice (a resend after a lost
   * connection) answers as it first did. Chained on `#call`'s promise: no async frame.
   */
  #write<T> (operation: StoreOperation, write: (deadline: number, writeId: string) => Promise<T>): Promise<Exclude<T, 'late' | { status: 'late' }>> {
    const writeId = this.#writeIds + (this.#writes++).toString(36)
    return this.#call(operation, () => write(this.#clock.now() + this.#options.storeTimeout, writeId)).then(settled)
  }

  /**
   * Runs one store operation within `storeTimeout`. The deadlines share one timer, and
   * the outcome is settled directly: no timer, racing promise and async frame per call.
   */
  #call<T> (name: StoreOperation, operation: () => Promise<T>): Promise<T> {
    // Timed, and a span of its own, when the app's telemetry wants it; else nothing more.
    const call = this.#telemetry?.storeCall(name)
    return new Promise<T>((resolve, reject) => {
      // Once: a call that timed out may still be answered, or fail, later.
      let ended = false
      const end = (how: StoreCallEnd): void => {
        if (!ended) call?.end(how)
        ended = true
      }
      const deadline = this.#deadlines.watch(call === undefined ? reject : (error) => { end('timeout'); reject(error) })
      const fail = (cause: unknown): void => {
        this.#deadlines.done(deadline)
        end('error')
        reject(new StoreUnavailableError({ cause }))
      }
      let result: Promise<T>
      try {
        result = call === undefined ? operation() : call.run(operation)
      } catch (cause) {
        return fail(cause)
      }
      // A store may answer with a plain value: Promise.resolve passes a promise through as is.
      Promise.resolve(result).then((value) => {
        this.#deadlines.done(deadline)
        if (call !== undefined) end(isLate(value) ? 'late' : 'ok')
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

/**
 * The scope of a refresh's access token: the session's, or the narrower one asked for
 * (RFC 6749 §6: asking for one not granted is `invalid_scope`).
 */
function narrowed (granted: string | undefined, asked: string | undefined): string | undefined {
  if (asked === undefined) return granted
  const allowed = new Set(granted?.split(' '))
  if (!SCOPE.test(asked) || asked.split(' ').some((token) => !allowed.has(token))) throw new ScopeInvalidError()
  return asked
}

/** The key a new access token is bound to: the proof's, when the access token is bound too. */
function accessKeyOf (binding: Binding | undefined): string | undefined {
  return binding?.bindAccess === true ? binding.proof.jkt : undefined
}

/** The app's claims of an authenticated user, as its access token carried them: the names the plugin does not reserve. */
function appClaims (user: SessionUser): ClaimValues {
  const claims: ClaimValues = {}
  for (const [name, value] of Object.entries(user)) {
    if (!RESERVED_CLAIMS.has(name)) claims[name] = value
  }
  return claims
}

/** An `acr`: printable ASCII but space (acr_values separates by it), `"` and `\` (a challenge quotes it). */
export const ACR = /^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/
/** An `amr` method name (RFC 8176's are short words: pwd, otp, hwk, mfa, ...). */
const AMR = /^[A-Za-z0-9_-]{1,32}$/

/** How far ahead of this instance's clock an `authenticatedAt` may be (another server's clock). */
const MAX_AHEAD_MS = 60_000

/** The `acr` and `amr` a login or a re-authentication gives, checked: a bad one is a bug in the app. */
export function authenticationOf (given: { acr?: unknown, amr?: unknown, authenticatedAt?: unknown }): Omit<Authentication, 'time'> {
  const { acr, amr, authenticatedAt } = given
  // A time in the future would pass every maxAge for as long as it is ahead.
  if (authenticatedAt !== undefined && !(typeof authenticatedAt === 'number' && authenticatedAt >= 0 && authenticatedAt <= Date.now() + MAX_AHEAD_MS)) {
    throw new TypeError('fastify-token-sessions: authenticatedAt must be when the credentials were checked, in ms since the epoch, not in the future')
  }
  if (acr !== undefined && !(typeof acr === 'string' && ACR.test(acr))) {
    throw new TypeError('fastify-token-sessions: acr must be 1 to 64 printable ASCII characters but space, " and \\')
  }
  if (amr !== undefined && !(Array.isArray(amr) && amr.length >= 1 && amr.length <= 10 && amr.every((method) => typeof method === 'string' && AMR.test(method)))) {
    throw new TypeError('fastify-token-sessions: amr must be 1 to 10 method names of 1 to 32 letters, digits, _ or -')
  }
  return { acr: acr as string | undefined, amr: amr === undefined ? undefined : Object.freeze([...amr as string[]]) }
}

/** A login's `remember`, checked: anything but a boolean is a bug in the app (a form's "on" included). */
function rememberedOf (options: IssueRequest): boolean {
  const { remember } = options
  if (remember !== undefined && typeof remember !== 'boolean') {
    throw new TypeError('fastify-token-sessions: remember must be a boolean (false: the session ends with the browser)')
  }
  return remember !== false
}

/** A write's outcome, but `late` (its request has had its 503): a 503 too. */
function settled<T> (outcome: T): Exclude<T, 'late' | { status: 'late' }> {
  if (isLate(outcome)) throw new StoreUnavailableError()
  return outcome as Exclude<T, 'late' | { status: 'late' }>
}

/** Whether a store's answer is `late`: the write reached it past its deadline and changed nothing. */
function isLate (outcome: unknown): boolean {
  return outcome === 'late' || (outcome as { status?: unknown } | undefined)?.status === 'late'
}
