import type { FastifyReply, FastifyRequest } from 'fastify'
import { checkCsrf, clearTokenCookies, readCookie, setTokenCookies } from './cookies.js'
import {
  BadRequestError, SessionNotFoundError, SessionRevokedError, StoreUnavailableError, TokenInvalidError,
  TokenMissingError, UnsupportedMediaTypeError
} from './errors.js'
import type { ResolvedOptions } from './options.js'
import { MAX_TOKEN_LENGTH } from './schemas.js'
import type { IssuedTokens, SessionRef, Sessions } from './sessions.js'
import type { RevocationList } from './revocations.js'
import type { IssueOptions, SessionListResponse, SessionUser, TokenResponse, TokenSet, TokenTransport } from './types.js'

/** Requests whose method changes nothing need no CSRF proof. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
/** No token of ours comes near this; a longer one is rejected before any parsing. */
/** The Bearer scheme, then (when well formed) one token and nothing else. */
const BEARER = /^Bearer(?=\s|$)(?: +([^\s]+) *$)?/i
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
  fromCookie: boolean
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
  const { cookies, csrfHeader } = options

  /** Adds what an error needs on the wire (challenge, retry hint) and logs store failures. */
  function prepare (request: FastifyRequest, reply: FastifyReply, error: unknown): unknown {
    if (statusOf(error) === 401) reply.header('www-authenticate', 'Bearer error="invalid_token"')
    if (error instanceof StoreUnavailableError) {
      reply.header('retry-after', String(options.retryAfter))
      request.log.error({ err: error.cause }, 'session store unavailable')
    }
    return error
  }

  function accessTokenOf (request: FastifyRequest): FoundToken | undefined {
    const bearer = bearerTokenOf(request)
    if (bearer !== undefined) return { token: bearer, kind: 'access', fromCookie: false }
    const token = accessCookieOf(request)
    return token === undefined ? undefined : { token, kind: 'access', fromCookie: true }
  }

  function accessCookieOf (request: FastifyRequest): string | undefined {
    return cookies === null ? undefined : readCookie(request, cookies.accessTokenName)
  }

  function refreshTokenOf (request: FastifyRequest): FoundToken | undefined {
    // An empty body of another type (allowed through by requireJson) is no body.
    const body: unknown = request.body === '' ? undefined : request.body
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) throw new BadRequestError()
    const fromBody = (body as { refreshToken?: unknown } | undefined)?.refreshToken
    if (fromBody !== undefined) {
      if (typeof fromBody !== 'string' || fromBody.length === 0) throw new BadRequestError()
      return { token: fromBody, kind: 'refresh', fromCookie: false }
    }
    const token = cookies === null ? undefined : readCookie(request, cookies.refreshTokenName)
    return token === undefined ? undefined : { token, kind: 'refresh', fromCookie: true }
  }

  function checkLength (found: FoundToken): string {
    return checkedLength(found.token)
  }

  function clearCookies (reply: FastifyReply): void {
    if (cookies !== null) clearTokenCookies(reply, cookies)
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
        fromCookie = found.fromCookie
        if (fromCookie) checkCsrf(request, csrfHeader)
        const tokens = await sessions.rotate(checkLength(found), request)
        return tokenResponse(deliver(reply, tokens, fromCookie ? 'cookie' : 'body'))
      } catch (error) {
        // A refresh cookie that can no longer work is only noise for the browser.
        if (fromCookie && statusOf(error) === 401) clearCookies(reply)
        throw prepare(request, reply, error)
      }
    },

    /** Ends the caller's session. Idempotent: without a live session it still answers 204. */
    async logout (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      try {
        const session = namedSession(request)
        if (session !== undefined) await sessions.revoke(session.userId, session.sessionId, 'logout', request)
      } catch (error) {
        throw prepare(request, reply, error)
      }
      clearCookies(reply)
      reply.code(204)
    },

    /** Ends every session of the caller, who must hold a live one. */
    async logoutAll (request: FastifyRequest, reply: FastifyReply): Promise<void> {
      try {
        const session = sessionOf(request)
        if (await sessions.revokeAll(session.userId, { ifLive: session.sessionId }, 'logout-all', request) === null) {
          clearCookies(reply)
          throw new SessionRevokedError()
        }
      } catch (error) {
        throw prepare(request, reply, error)
      }
      clearCookies(reply)
      reply.code(204)
    },

    /** `reply.issueTokens`: starts a session and delivers its tokens. */
    async issueTokens (reply: FastifyReply, userId: string | number, issueOptions: IssueOptions = {}): Promise<TokenSet> {
      const transport = issueOptions.transport ?? transportOf(reply.request)
      if (transport === 'cookie' && cookies === null) {
        throw new TypeError('fastify-token-sessions: transport "cookie" needs cookies enabled')
      }
      try {
        return deliver(reply, await sessions.issue(userId, issueOptions, reply.request), transport)
      } catch (error) {
        throw prepare(reply.request, reply, error)
      }
    },

    /** `GET <prefix>/sessions`: the caller's live sessions, its own flagged `current`. */
    async listSessions (request: FastifyRequest, reply: FastifyReply): Promise<SessionListResponse> {
      try {
        const { id, sessionId } = request.user
        const live = await sessions.list(id)
        reply.header('cache-control', 'no-store')
        return { sessions: live.map((session) => ({ ...session, current: session.sessionId === sessionId })) }
      } catch (error) {
        throw prepare(request, reply, error)
      }
    },

    /** `DELETE <prefix>/sessions/:id`: ends one of the caller's sessions; another's is a 404. */
    async revokeSession (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<void> {
      try {
        if (!await sessions.revoke(request.user.id, request.params.id, 'revoked', request)) throw new SessionNotFoundError()
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
      if (!hasBody || (type !== undefined && /^application\/json\s*(;|$)/i.test(type))) return
      throw new UnsupportedMediaTypeError()
    }
  }

  /** For logout: the session named, or undefined when no token names one validly. */
  function namedSession (request: FastifyRequest): SessionRef | undefined {
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
    let token = bearerTokenOf(request)
    if (token === undefined) {
      token = accessCookieOf(request)
      if (token === undefined) throw new TokenMissingError()
      if (!SAFE_METHODS.has(request.method)) checkCsrf(request, csrfHeader)
    }
    const user = sessions.verifyAccess(checkedLength(token))
    revocations.checkFeed()
    if (revocations.isRevoked(user.sessionId)) throw new SessionRevokedError()
    return user
  }

  function transportOf (request: FastifyRequest): TokenTransport {
    return cookies === null || request.headers[TRANSPORT_HEADER] === 'body' ? 'body' : 'cookie'
  }

  /**
   * The session the caller names, by its refresh token or else its access token (CSRF
   * checked first when either is a cookie). Throws the first token's error if none holds.
   */
  function sessionOf (request: FastifyRequest): SessionRef {
    const candidates = [refreshTokenOf(request), accessTokenOf(request)]
    const found = candidates.filter((candidate): candidate is FoundToken => candidate !== undefined)
    if (found.length === 0) throw new TokenMissingError()
    if (found.some((candidate) => candidate.fromCookie)) checkCsrf(request, csrfHeader)
    let firstError: unknown
    for (const candidate of found) {
      try {
        const token = checkLength(candidate)
        if (candidate.kind === 'refresh') return sessions.refreshSession(token)
        const user = sessions.verifyAccess(token)
        return { userId: user.id, sessionId: user.sessionId }
      } catch (error) {
        firstError ??= error
      }
    }
    throw firstError
  }
}

/** The handlers `createHandlers` returns. */
export type Handlers = ReturnType<typeof createHandlers>
