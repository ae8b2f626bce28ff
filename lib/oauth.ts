import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { DpopVerifier } from './dpop.js'
import { provenSession, tokenSession, type TokenSession } from './ending.js'
import { markOwn } from './handlers.js'
import { ClaimsUnavailableError, StoreUnavailableError, TokenMissingError } from './errors.js'
import { loggable } from './log.js'
import type { ResolvedRoutes } from './options.js'
import { ROUTE_BODY_LIMIT, describeOnly, revokeEndpointSchema, tokenEndpointSchema } from './schemas.js'
import type { Sessions } from './sessions.js'
import type { Telemetry } from './telemetry.js'
import { checkedLength } from './transport.js'

/** The one body type of the OAuth endpoints (RFC 6749 §3.2, RFC 7009 §2.1). */
const FORM_TYPE = 'application/x-www-form-urlencoded'
const FORM = /^application\/x-www-form-urlencoded\s*(;|$)/i

/** An OAuth error response (RFC 6749 §5.2): its `error`, and a description for developers. */
class OAuthError extends Error {
  readonly error: string
  readonly description: string

  constructor (code: string, description: string) {
    super(description)
    this.error = code
    this.description = description
  }
}

/**
 * How each of the plugin's error codes reads as an OAuth error. The description keeps the
 * plugin's code, so that a developer can look it up.
 */
const OAUTH_ERRORS = new Map<unknown, string>([
  ['FTS_TOKEN_INVALID', 'invalid_grant'],
  ['FTS_TOKEN_EXPIRED', 'invalid_grant'],
  ['FTS_TOKEN_REUSED', 'invalid_grant'],
  ['FTS_SESSION_REVOKED', 'invalid_grant'],
  ['FTS_SESSION_EXPIRED', 'invalid_grant'],
  ['FTS_CLIENT_MISMATCH', 'invalid_grant'],
  ['FTS_SCOPE_INVALID', 'invalid_scope'],
  ['FTS_DPOP_PROOF_INVALID', 'invalid_dpop_proof'],
  ['FTS_DPOP_NONCE_REQUIRED', 'use_dpop_nonce'],
  ['FTS_BAD_REQUEST', 'invalid_request']
])

/** The token endpoint's answer (RFC 6749 §5.1). */
export interface OAuthTokenResponse {
  access_token: string
  token_type: 'Bearer' | 'DPoP'
  expires_in: number
  refresh_token: string
  scope?: string
}

/** A form body's parameters; a repeated one is a bad request, one without a value is absent (RFC 6749 §3.1). */
function formOf (request: FastifyRequest): Map<string, string> {
  const body = request.body
  const params = new Map<string, string>()
  if (typeof body !== 'string') return params
  const seen = new Set<string>()
  for (const [name, value] of new URLSearchParams(body)) {
    if (seen.has(name)) throw new OAuthError('invalid_request', `The parameter ${name.replace(/[^\w-]/g, '?').slice(0, 40)} was sent more than once`)
    seen.add(name)
    if (value !== '') params.set(name, value)
  }
  return params
}

function required (form: Map<string, string>, name: string): string {
  const value = form.get(name)
  if (value === undefined) throw new OAuthError('invalid_request', `The parameter ${name} is missing`)
  return value
}

/**
 * The OAuth endpoints for native clients: `POST <prefix>/token` (the refresh grant, RFC
 * 6749 §6) and `POST <prefix>/revoke` (RFC 7009). They read tokens from the form body
 * only, never from cookies, and set none; the refresh cookie's Path covers them, so they
 * take no JSON (which a page's script could send cross-site only after a preflight, and a
 * form body reveals nothing a cookie would add). No CORS: a native client needs none.
 */
export function registerOAuthRoutes (
  fastify: FastifyInstance, routes: ResolvedRoutes, sessions: Sessions, dpop: DpopVerifier, retryAfter: number, telemetry?: Telemetry
): void {
  fastify.register(async function tokenSessionsOAuth (scope) {
    scope.addHook('onRoute', markOwn)
    scope.setValidatorCompiler(describeOnly)
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser(FORM_TYPE, { parseAs: 'string' }, (_request, body, done) => { done(null, body) })
    // Any other body is an OAuth error, not Fastify's 415, and is never parsed.
    scope.addContentTypeParser('*', (_request, _payload, done) => { done(null, undefined) })
    scope.addHook('onRequest', async (request, reply) => {
      const { 'content-type': type, 'content-length': length, 'transfer-encoding': encoding } = request.headers
      const hasBody = encoding !== undefined || (length !== undefined && length !== '0')
      // A type that is not a form is refused with a body or without (Fastify would 415 an empty one).
      if (type === undefined ? hasBody : !FORM.test(type)) {
        return await answerError(reply, new OAuthError('invalid_request', `The body must be ${FORM_TYPE}`))
      }
    })
    // Fastify's own refusals (a body over the limit, a broken stream) in OAuth's shape too.
    scope.setErrorHandler(async (error: { statusCode?: number, message: string, code?: string }, _request, reply) => {
      const status = error.statusCode
      /* c8 ignore next -- the handlers answer their own errors: only Fastify's 4xx refusals come here, anything else stays Fastify's 500 */
      if (status === undefined || status >= 500) throw error
      reply.code(status)
      return await answerError(reply, new OAuthError('invalid_request', `${error.message} (${String(error.code)})`))
    })
    const post = { bodyLimit: ROUTE_BODY_LIMIT }
    const fail = async (request: FastifyRequest, reply: FastifyReply, error: unknown): Promise<FastifyReply> => {
      dpop.offerNonce(request, reply)
      if (error instanceof OAuthError) return await answerError(reply, error)
      const code = (error as { code?: unknown }).code
      if (error instanceof StoreUnavailableError || error instanceof ClaimsUnavailableError) {
        request.log.error({ err: loggable(error.cause) }, error instanceof StoreUnavailableError ? 'session store unavailable' : 'claims hook failed')
        reply.code(503).header('retry-after', String(retryAfter))
        return await answerError(reply, new OAuthError('temporarily_unavailable', `${error.message} (${error.code})`))
      }
      const oauthError = OAUTH_ERRORS.get(code)
      /* c8 ignore next -- every error the routes' calls throw has its OAuth name; anything else is a bug, for Fastify's 500 */
      if (oauthError === undefined) throw error
      return await answerError(reply, new OAuthError(oauthError, `${(error as Error).message} (${String(code)})`))
    }

    if (routes.token !== null) {
      scope.post('/token', { ...routes.token, ...post, schema: tokenEndpointSchema }, async (request, reply) => {
        // The refresh token the form gave: null until it is read, undefined when it had none.
        let token: string | undefined | null = null
        let rotating = false
        try {
          const form = formOf(request)
          const grantType = required(form, 'grant_type')
          if (grantType !== 'refresh_token') throw new OAuthError('unsupported_grant_type', 'Only the refresh_token grant is supported here')
          token = form.get('refresh_token')
          const refreshToken = checkedLength(required(form, 'refresh_token'))
          rotating = true
          const clientId = form.get('client_id')
          const asked = form.get('scope')
          const tokens = await sessions.rotate(refreshToken, request, undefined, {
            ...(clientId === undefined ? {} : { clientId }),
            ...(asked === undefined ? {} : { scope: asked }),
            proof: () => dpop.check(request, 'grant'),
            bindAccess: true
          })
          dpop.offerNonce(request, reply)
          reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
          const body: OAuthTokenResponse = {
            access_token: tokens.accessToken,
            token_type: tokens.tokenType,
            expires_in: tokens.expiresIn,
            refresh_token: tokens.refreshToken
          }
          if (tokens.scope !== undefined) body.scope = tokens.scope
          return body
        } catch (error) {
          // Refused before the token was looked at (rotate counts the rest), as on the refresh route.
          if (!rotating) telemetry?.refreshFailed(token === undefined ? new TokenMissingError() : error)
          return await fail(request, reply, error)
        }
      })
    }

    if (routes.revoke !== null) {
      scope.post('/revoke', { ...routes.revoke, ...post, schema: revokeEndpointSchema }, async (request, reply) => {
        try {
          const form = formOf(request)
          const token = required(form, 'token')
          const named = namedSession(sessions, token, form.get('token_type_hint') === 'access_token')
          const clientId = form.get('client_id')
          // RFC 7009 §2.1: the token must have been issued to the client that revokes it.
          if (named !== undefined && clientId !== undefined && clientId !== named.clientId) {
            throw new OAuthError('unauthorized_client', 'The token was issued to another client (FTS_CLIENT_MISMATCH)')
          }
          // The revocation endpoint is the authorization server's, as the token endpoint is:
          // its proofs are a grant's, answered with OAuth's 400s. A bound token without a
          // proof by its key ends nothing, and gets the 200 of an unknown token.
          const session = named === undefined ? undefined : provenSession(dpop, request, named, 'grant')
          if (session !== undefined) {
            await sessions.revoke(session, 'logout', request).catch((error: unknown) => {
              // A superseded refresh token: the store ended the session, as on refresh.
              if ((error as { code?: unknown }).code !== 'FTS_TOKEN_REUSED') throw error
            })
          }
          dpop.offerNonce(request, reply)
          reply.header('cache-control', 'no-store')
          return await reply.code(200).send()
        } catch (error) {
          return await fail(request, reply, error)
        }
      })
    }
  }, { prefix: routes.prefix })
}

async function answerError (reply: FastifyReply, error: OAuthError): Promise<FastifyReply> {
  if (reply.statusCode < 400) reply.code(400)
  // RFC 6749 §5.2 allows printable ASCII but `"` and `\` in a description.
  const description = error.description.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '?')
  return await reply.header('cache-control', 'no-store').type('application/json').send({ error: error.error, error_description: description })
}

/**
 * The session a token names, for revocation: a refresh token (by its hash, so that a
 * superseded one is reuse) or an access token, whichever it is (the hint only says which
 * to try first); undefined for a token that names none validly, which RFC 7009 §2.2 answers
 * with a 200 all the same. A token bound to a DPoP key ends its session only with a proof
 * by that key, as it does anything else (see {@link provenSession}).
 */
function namedSession (sessions: Sessions, token: string, accessFirst: boolean): TokenSession | undefined {
  const kinds = accessFirst ? ['access', 'refresh'] as const : ['refresh', 'access'] as const
  for (const kind of kinds) {
    try {
      return tokenSession(sessions, kind, checkedLength(token))
    } catch {}
  }
  return undefined
}
