import type { FastifyReply, FastifyRequest } from 'fastify'
import { checkCsrf, clearTokenCookies, readTokenCookie, setTokenCookies, type CookieToken } from './cookies.js'
import {
  BadRequestError, CookieConflictError, SessionNotFoundError, SessionRevokedError, StoreUnavailableError, TokenInvalidError,
  TokenMissingError, UnsupportedMediaTypeError
} from './errors.js'
import { loggable } from './log.js'
import type { ResolvedOptions } from './options.js'
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_TOKEN_LENGTH } from './schemas.js'
import type { IssuedTokens, SessionRef, Sessions } from './sessions.js'
import type { RevocationList } from './revocations.js'
import type { IssueOptions, SessionListPage, SessionListResponse, SessionUser, TokenResponse, TokenSet, TokenTransport } from './types.js'

/** When a request arrived (ms, this instance's clock), for `issueTokens`' default `authenticatedAt`. */
const ARRIVED = Symbol('fastify-token-sessions.arrived')
type ArrivedRequest = FastifyRequest & { [ARRIVED]?: number }

/**
 * The `onRequest` hook that notes when each request arrived: a login's credentials were
 * checked after it, so a revocation of every session of the user after it wins the race.
 */
export function noteArrival (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  (request as ArrivedRequest)[ARRIVED] = Date.now()
  done()
}

/** Requests whose method changes nothing need no CSRF proof. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
/** The Bearer scheme, then (when well formed) one token and nothing else. */
const BEARER = /^Bearer(?=\s|$)(?: +([^\s]+) *$)?/i
/** The one body type the plugin's routes accept. */
const JSON_TYPE = /^application\/json\s*(;|$)/i
/**
 * Native clients ask for tokens in the body at login with this header (value `body`).
 *
 * @example
 * ```ts
 * await fetch('/auth/login', { method: 'POST', headers: { [TRANSPORT_HEADER]: 'body', 'content-type': 'application/json' }, body })
 * ```
 */
export const TRANSPORT_HEADER = 'x-token-transport'

/** The Bearer token of the Authorization header, if it names that scheme; a 401 if malformed. */
function bearerTokenOf (request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization
  if (authorization === undefined) return undefined
  const bearer = BEARER.exec(authorization)
  if (bearer === null) return undefined
  const token = bearer[1]
  if (token === undefined) throw new TokenInvalidError()
  return token
}

/** A token no longer than any of ours can be; a longer one is rejected before any parsing. */
function checkedLength (token: string): string {
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenInvalidError()
  return token
}

/** The HTTP status an error carries, if it is one of ours or Fastify's. */
function statusOf (error: unknown): unknown {
  return (error as { statusCode?: unknown }).statusCode
}

interface FoundToken {
  token: string
  kind: 'access' | 'refresh'
  /** For a token from a cookie: the session the session cookie names ('' for none). */
  boundTo: string | undefined
}

/** An opaque page cursor: the start time of the last session listed, base64url. */
function encodeCursor (cursor: number | undefined): string | undefined {
  return cursor === undefined ? undefined : Buffer.from(String(cursor)).toString('base64url')
}

/** A cursor back to its start time; anything that is not one of ours is a 400. */
function decodeCursor (cursor: unknown): number | undefined {
  if (cursor === undefined) return undefined
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]{1,24}$/.test(cursor)) throw new BadRequestError()
  const text = Buffer.from(cursor, 'base64url').toString()
  const value = Number(text)
  if (!/^[0-9]{1,16}$/.test(text) || !Number.isSafeInteger(value)) throw new BadRequestError()
  return value
}

/** A page size: a whole number from 1 to {@link MAX_PAGE_SIZE}, as a number or a query string. */
function pageSize (limit: unknown): number {
  if (limit === undefined) return DEFAULT_PAGE_SIZE
  const value = typeof limit === 'string' && /^[0-9]{1,3}$/.test(limit) ? Number(limit) : limit
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_PAGE_SIZE) throw new BadRequestError()
  return value
}

/**
 * One page of a user's sessions as the API gives it: an opaque cursor, a checked size.
 *
 * @example
 * ```ts
 * const page = await listPage(sessions, userId, { cursor: request.query.cursor, limit: request.query.limit })
 * ```
 */
export async function listPage (sessions: Sessions, userId: unknown, page: { cursor?: unknown, limit?: unknown }): Promise<SessionListPage> {
  const cursor = decodeCursor(page.cursor)
  const { sessions: listed, nextCursor } = await sessions.list(userId, { limit: pageSize(page.limit), ...(cursor === undefined ? {} : { cursor }) })
  const next = encodeCursor(nextCursor)
  return next === undefined ? { sessions: listed } : { sessions: listed, nextCursor: next }
}

/**
 * The body of a token response: the refresh token appears only when the client keeps
 * it itself (transport `body`); a browser never gets it where its scripts could read it.
 *
 * @example
 * ```ts
 * app.post('/login', async (request, reply) => {
 *   const user = await checkPassword(request.body)
 *   return tokenResponse(await reply.issueTokens(user.id))
 * })
 * ```
 */
export function tokenResponse (tokens: TokenSet): TokenResponse {
  const body: TokenResponse = { accessToken: tokens.accessToken, tokenType: tokens.tokenType, expiresIn: tokens.expiresIn }
  if (tokens.transport === 'body') {
    body.refreshToken = tokens.refreshToken
    body.refreshExpiresIn = tokens.refreshExpiresIn
  }
  return body
}

/** The HTTP side of the plugin: the `authenticate` hook, the handlers and `issueTokens`. */
export function createHandlers (options: ResolvedOptions, sessions: Sessions, revocations: RevocationList) {
  const { cookies, csrfHeader, origins } = options

  /** Adds what an error needs on the wire (challenge, retry hint) and logs store failures. */
  function prepare (request: FastifyRequest, reply: FastifyReply, error: unknown): unknown {
    if (statusOf(error) === 401) reply.header('www-authenticate', 'Bearer error="invalid_token"')
    if (error instanceof StoreUnavailableError) {
      reply.header('retry-after', String(options.retryAfter))
      request.log.error({ err: loggable(error.cause) }, 'session store unavailable')
    }
    return error
  }

  function accessTokenOf (request: FastifyRequest): FoundToken | undefined {
    const bearer = bearerTokenOf(request)
    if (bearer !== undefined) return { token: bearer, kind: 'access', boundTo: undefined }
    const cookie = cookieOf(request, 'accessTokenName')
    return cookie === undefined ? undefined : { token: cookie.token, kind: 'access', boundTo: cookie.boundTo ?? '' }
  }

  /** A token cookie and the session it is bound to, when cookies are on and the cookie is there. */
  function cookieOf (request: FastifyRequest, name: 'accessTokenName' | 'refreshTokenName'): CookieToken | undefined {
    return cookies === null ? undefined : readTokenCookie(request, cookies, cookies[name])
  }

  function refreshTokenOf (request: FastifyRequest): FoundToken | undefined {
    // An empty body of another type (allowed through by requireJson) is no body.
    const body: unknown = request.body === '' ? undefined : request.body
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) throw new BadRequestError()
    const fromBody = (body as { refreshToken?: unknown } | undefined)?.refreshToken
    if (fromBody !== undefined) {
      if (typeof fromBody !== 'string' || fromBody.length === 0) throw new BadRequestError()
      return { token: fromBody, kind: 'refresh', boundTo: undefined }
    }
    const cookie = cookieOf(request, 'refreshTokenName')
    return cookie === undefined ? undefined : { token: cookie.token, kind: 'refresh', boundTo: cookie.boundTo ?? '' }
  }

  function clearCookies (reply: FastifyReply): void {
    if (cookies !== null) clearTokenCookies(reply, cookies)
  }

  /** After a logout that a cookie named: the cookies go, and every other cookie of the site with them when asked. */
  function loggedOut (reply: FastifyReply, byCookie: boolean): void {
    clearCookies(reply)
    if (byCookie && cookies?.clearSiteData === true) reply.header('clear-site-data', '"cookies"')
    reply.code(204)
  }

  function deliver (reply: FastifyReply, tokens: IssuedTokens, transport: TokenTransport): TokenSet {
    const set: TokenSet = { ...tokens, transport }
    if (transport === 'cookie' && cookies !== null) setTokenCookies(reply, cookies, set)
    reply.header('cache-control', 'no-store')
    return set
  }

  return {
    /** `fastify.authenticate`: verifies the access token; zero store round trips. */
    async authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      try {
        request.user = authenticated(request)
      } catch (error) {
        throw prepare(request, reply, error)
      }
    },

    /** `fastify.authenticateStrict`: `authenticate`, and the store confirms the session. */
    async authenticateStrict (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      try {
        const user = authenticated(request)
        if (!await sessions.isLive(user.id, user.sessionId)) throw new SessionRevokedError()
        request.user = user
      } catch (error) {
        throw prepare(request, reply, error)
      }
    },

    /** `fastify.refresh`: rotates the refresh token from the JSON body or the refresh cookie. */
    async refresh (request: FastifyRequest, reply: FastifyReply): Promise<TokenResponse> {
      let fromCookie = false
      try {
        const found = refreshTokenOf(request)
        if (found === undefined) throw new TokenMissingError()
        fromCookie = found.boundTo !== undefined
        if (fromCookie) checkCsrf(request, csrfHeader, origins)
        const tokens = await sessions.rotate(checkedLength(found.token), request, found.boundTo)
        return tokenResponse(deliver(reply, tokens, fromCookie ? 'cookie' : 'body'))
      } catch (error) {
        // A refresh cookie that can no longer work is only noise for the browser.
        if (fromCookie && statusOf(error) === 401) clearCookies(reply)
        throw prepare(request, reply, error)
      }
    },

    /** Ends the caller's session. Idempotent: without a live session it still answers 204. */
    async logout (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      let session: NamedSession | undefined
      try {
        session = namedSession(request)
        if (session !== undefined) await sessions.revoke(session, 'logout', request)
      } catch (error) {
        if (statusOf(error) === 401) clearCookies(reply)
        throw prepare(request, reply, error)
      }
      loggedOut(reply, session?.byCookie === true)
    },

    /**
     * Ends every session of the caller, who must hold a live one, in one step whatever
     * their number.
     */
    async logoutAll (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      let session: NamedSession | undefined
      try {
        session = sessionOf(request)
        if (!await sessions.revokeAll(session.userId, { caller: session }, 'logout-all', request)) throw new SessionRevokedError()
      } catch (error) {
        if (session !== undefined && statusOf(error) === 401) clearCookies(reply)
        throw prepare(request, reply, error)
      }
      loggedOut(reply, session.byCookie)
    },

    /** `reply.issueTokens`: starts a session and delivers its tokens. */
    async issueTokens (reply: FastifyReply, userId: string | number, issueOptions: IssueOptions = {}): Promise<TokenSet> {
      const transport = issueOptions.transport ?? transportOf(reply.request)
      if (transport === 'cookie' && cookies === null) {
        throw new TypeError('fastify-token-sessions: transport "cookie" needs cookies enabled')
      }
      // By default the credentials were checked after the request arrived.
      const checked = issueOptions.authenticatedAt ?? (reply.request as ArrivedRequest)[ARRIVED] ?? Date.now()
      try {
        return deliver(reply, await sessions.issue(userId, { ...issueOptions, authenticatedAt: checked }, reply.request), transport)
      } catch (error) {
        throw prepare(reply.request, reply, error)
      }
    },

    /** `GET <prefix>/sessions`: the caller's live sessions, its own flagged `current`. */
    async listSessions (request: FastifyRequest<{ Querystring: { cursor?: string, limit?: string } }>, reply: FastifyReply): Promise<SessionListResponse> {
      try {
        const { id, sessionId } = request.user
        const page = await listPage(sessions, id, { cursor: request.query.cursor, limit: request.query.limit })
        reply.header('cache-control', 'no-store')
        return {
          sessions: page.sessions.map((session) => ({ ...session, current: session.sessionId === sessionId })),
          nextCursor: page.nextCursor ?? null
        }
      } catch (error) {
        throw prepare(request, reply, error)
      }
    },

    /** `DELETE <prefix>/sessions/:id`: ends one of the caller's sessions; another's is a 404. */
    async revokeSession (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<void> {
      try {
        if (!await sessions.revoke({ userId: request.user.id, sessionId: request.params.id }, 'revoked', request)) throw new SessionNotFoundError()
      } catch (error) {
        throw prepare(request, reply, error)
      }
      if (request.params.id === request.user.sessionId) clearCookies(reply)
      reply.code(204)
    },

    /** The routes' JSON parser: an empty body is no body; broken JSON is a 400 of ours. */
    parseJson (_request: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void {
      if (body.length === 0) return done(null, undefined)
      try {
        done(null, JSON.parse(body.toString()))
      } catch {
        done(new BadRequestError())
      }
    },

    /** Rejects bodies that are not JSON before they are parsed. */
    async requireJson (request: FastifyRequest): Promise<void> {
      const { 'content-type': type, 'content-length': length, 'transfer-encoding': encoding } = request.headers
      const hasBody = encoding !== undefined || (length !== undefined && length !== '0')
      if (!hasBody || (type !== undefined && JSON_TYPE.test(type))) return
      throw new UnsupportedMediaTypeError()
    }
  }

  /** For logout: the session named, or undefined when no token names one validly. */
  function namedSession (request: FastifyRequest): NamedSession | undefined {
    try {
      return sessionOf(request)
    } catch (error) {
      if (statusOf(error) === 401) return undefined
      throw error
    }
  }

  /**
   * The user of a valid access token whose session no instance has revoked. This runs
   * on every authenticated request: it reads the token without building a FoundToken.
   */
  function authenticated (request: FastifyRequest): SessionUser {
    const bearer = bearerTokenOf(request)
    let user: SessionUser
    if (bearer === undefined) {
      const cookie = cookieOf(request, 'accessTokenName')
      if (cookie === undefined) throw new TokenMissingError()
      if (!SAFE_METHODS.has(request.method)) checkCsrf(request, csrfHeader, origins)
      user = sessions.verifyAccess(checkedLength(cookie.token))
      // A planted access cookie is of another session than the session cookie's.
      if (user.sessionId !== cookie.boundTo) throw new TokenInvalidError()
    } else {
      user = sessions.verifyAccess(checkedLength(bearer))
    }
    revocations.checkFeed()
    if (revocations.isRevoked(user.id, user.sessionId, user.sessionStartedAt)) throw new SessionRevokedError()
    return user
  }

  function transportOf (request: FastifyRequest): TokenTransport {
    return cookies === null || request.headers[TRANSPORT_HEADER] === 'body' ? 'body' : 'cookie'
  }

  /**
   * The session the caller names, by its refresh token or else its access token (CSRF
   * checked first when either is a cookie). Throws the first token's error if none holds.
   */
  function sessionOf (request: FastifyRequest): NamedSession {
    // A token cookie sent twice was planted; the other token may still name the session
    // (the refresh cookie is __Secure-, which a sibling can plant; the access cookie
    // __Host-, which it cannot), so that logout still works.
    const found: FoundToken[] = []
    let conflict: unknown
    for (const tokenOf of [refreshTokenOf, accessTokenOf]) {
      try {
        const candidate = tokenOf(request)
        if (candidate !== undefined) found.push(candidate)
      } catch (error) {
        if (!(error instanceof CookieConflictError)) throw error
        conflict ??= error
      }
    }
    if (found.length === 0) throw conflict ?? new TokenMissingError()
    const byCookie = found.some((candidate) => candidate.boundTo !== undefined)
    if (byCookie) checkCsrf(request, csrfHeader, origins)
    let firstError: unknown
    for (const candidate of found) {
      try {
        const token = checkedLength(candidate.token)
        const session: SessionRef = candidate.kind === 'refresh' ? sessions.refreshSession(token) : sessionOfUser(sessions.verifyAccess(token))
        if (candidate.boundTo !== undefined && candidate.boundTo !== session.sessionId) throw new TokenInvalidError()
        return { ...session, byCookie }
      } catch (error) {
        firstError ??= error
      }
    }
    throw conflict ?? firstError
  }

  function sessionOfUser (user: SessionUser): SessionRef {
    return { userId: user.id, sessionId: user.sessionId }
  }
}

/** A session a request named, and whether a cookie carried the token that named it. */
interface NamedSession extends SessionRef {
  byCookie: boolean
}

/** The handlers `createHandlers` returns. */
export type Handlers = ReturnType<typeof createHandlers>
