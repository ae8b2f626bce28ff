/**
 * JSON schemas of the plugin's routes, for documentation generators such as
 * `@fastify/swagger` and for the fast serialization of successful responses.
 *
 * Request bodies and parameters are described here but checked by the handlers
 * themselves (see {@link describeOnly}): so that every bad request gets the plugin's own
 * error code whatever the app's validator does with types (Fastify's default ajv turns
 * `123` into `"123"`), and so that the body can stay optional (a browser sends its refresh
 * token as a cookie, with no body at all).
 */

/** The longest token a route accepts (longer ones are rejected before any parsing). */
export const MAX_TOKEN_LENGTH = 8192
/** The most sessions one page of `GET <prefix>/sessions` lists, and how many by default. */
export const MAX_PAGE_SIZE = 100
export const DEFAULT_PAGE_SIZE = 50
/** The largest body the plugin's routes accept: they take one token at most. */
export const ROUTE_BODY_LIMIT = 16 * 1024

const TAGS = ['sessions']

/**
 * The schema of an error answer in Fastify's error shape, which the plugin's errors take
 * under Fastify's own error handler. Fields an app's error handler adds pass through.
 *
 * @example
 * ```ts
 * app.post('/auth/login', {
 *   schema: { response: { 200: tokenResponseSchema, 401: errorResponseSchema('INVALID_CREDENTIALS') } }
 * }, login)
 * ```
 */
export function errorResponseSchema (description: string) {
  return {
    description,
    type: 'object',
    required: ['statusCode', 'code', 'error', 'message'],
    properties: {
      statusCode: { type: 'integer' },
      code: { type: 'string', description: 'A stable code, e.g. FTS_TOKEN_EXPIRED' },
      error: { type: 'string' },
      message: { type: 'string' }
    },
    // The app's error handler may add fields of its own; they are passed through.
    additionalProperties: true
  }
}

const noContent = (description: string) => ({ description, type: 'null' })

const BAD_REQUEST = errorResponseSchema('FTS_BAD_REQUEST: the body is not a JSON object, or refreshToken is not a non-empty string; ' +
  'FTS_COOKIE_CONFLICT: a token cookie came twice (one was planted)')
const COOKIE_CONFLICT = errorResponseSchema('FTS_COOKIE_CONFLICT: a token cookie came twice (one was planted)')
const UNAUTHORIZED_ACCESS = errorResponseSchema('FTS_TOKEN_MISSING, FTS_TOKEN_INVALID, FTS_TOKEN_EXPIRED or FTS_SESSION_REVOKED (with WWW-Authenticate)')
const CSRF = errorResponseSchema('FTS_CSRF_REJECTED: a cookie was sent without the anti-CSRF header, or from another site or origin')
const TOO_LARGE = errorResponseSchema(`FST_ERR_CTP_BODY_TOO_LARGE (Fastify's code): the body is over ${ROUTE_BODY_LIMIT} bytes`)
const UNSUPPORTED = errorResponseSchema('FTS_UNSUPPORTED_MEDIA_TYPE: a body that is not application/json')
const STORE_DOWN = errorResponseSchema('FTS_STORE_UNAVAILABLE: the session store did not answer in time; retry after Retry-After seconds')

const REFRESH_TOKEN_BODY = {
  description: 'Optional. Native clients send their refresh token here; browsers send none and rely on the refresh cookie.',
  type: 'object',
  properties: {
    refreshToken: { type: 'string', minLength: 1, maxLength: MAX_TOKEN_LENGTH }
  }
}

const COOKIE_AUTH = 'An access token as `Authorization: Bearer <token>` or in the access-token cookie ' +
  '(then, for a state change, with the anti-CSRF header).'

/**
 * The schema of a token response (login, refresh), as `tokenResponse()` builds it: for
 * a login route of the app's own, so that its documentation matches the plugin's.
 *
 * @example
 * ```ts
 * app.post('/auth/login', { schema: { response: { 200: tokenResponseSchema } } }, async (request, reply) => {
 *   return tokenResponse(await reply.issueTokens(await checkPassword(request.body)))
 * })
 * ```
 */
export const tokenResponseSchema = {
  description: 'New tokens. The refresh token is in the body only for a client that asked for body transport; a browser gets cookies.',
  type: 'object',
  required: ['accessToken', 'tokenType', 'expiresIn'],
  properties: {
    accessToken: { type: 'string' },
    tokenType: { type: 'string', enum: ['Bearer', 'DPoP'], description: 'DPoP: the access token is bound to the key of the DPoP proof sent with the request' },
    expiresIn: { type: 'integer', description: 'Seconds until the access token expires' },
    refreshToken: { type: 'string' },
    refreshExpiresIn: { type: 'integer', description: 'Seconds until the refresh token expires' }
  }
} as const

/** `POST <prefix>/refresh`. */
export const refreshSchema = {
  tags: TAGS,
  operationId: 'refreshTokens',
  summary: 'Rotate the refresh token: a new access token and a new refresh token',
  description: 'Takes the refresh token from the body or, with the anti-CSRF header, from the refresh cookie. ' +
    'The presented refresh token dies; presenting it again after the grace period revokes the session (FTS_TOKEN_REUSED).',
  body: REFRESH_TOKEN_BODY,
  response: {
    200: tokenResponseSchema,
    400: BAD_REQUEST,
    401: errorResponseSchema('FTS_TOKEN_MISSING, FTS_TOKEN_INVALID, FTS_TOKEN_EXPIRED, FTS_SESSION_REVOKED, FTS_SESSION_EXPIRED or FTS_TOKEN_REUSED'),
    403: CSRF,
    413: TOO_LARGE,
    415: UNSUPPORTED,
    503: errorResponseSchema('FTS_STORE_UNAVAILABLE (the session store did not answer in time) or FTS_CLAIMS_UNAVAILABLE (the app\'s claims hook failed); the token is not spent: retry after Retry-After seconds')
  }
}

/** `POST <prefix>/logout`. */
export const logoutSchema = {
  tags: TAGS,
  operationId: 'logout',
  summary: 'End the caller\'s session and clear its cookies',
  description: 'Names the session by its refresh token (body or cookie) or else its access token. ' +
    'Idempotent: without a valid token it still answers 204.',
  body: REFRESH_TOKEN_BODY,
  response: {
    204: noContent('Logged out'),
    400: BAD_REQUEST,
    401: errorResponseSchema('FTS_TOKEN_REUSED: the refresh token was superseded (reuse): the session has been revoked'),
    403: CSRF,
    413: TOO_LARGE,
    415: UNSUPPORTED,
    503: STORE_DOWN
  }
}

/** `POST <prefix>/logout-all`. */
export const logoutAllSchema = {
  tags: TAGS,
  operationId: 'logoutAll',
  summary: 'End every session of the caller, on every device',
  description: 'The caller must hold a live session, named by its refresh token (body or cookie) or access token.',
  body: REFRESH_TOKEN_BODY,
  response: {
    204: noContent('Every session ended'),
    400: BAD_REQUEST,
    401: UNAUTHORIZED_ACCESS,
    403: CSRF,
    413: TOO_LARGE,
    415: UNSUPPORTED,
    503: STORE_DOWN
  }
}

const SESSION = {
  type: 'object',
  required: ['sessionId', 'createdAt', 'lastUsedAt', 'expiresAt', 'remembered', 'current'],
  properties: {
    sessionId: { type: 'string' },
    createdAt: { type: 'integer', description: 'ms since the epoch' },
    lastUsedAt: { type: 'integer', description: 'ms since the epoch: the last login or refresh' },
    expiresAt: { type: 'integer', description: 'ms since the epoch, unless refreshed before' },
    remembered: { type: 'boolean', description: 'false: logged in without "remember me"; its cookies go when the browser closes' },
    userAgent: { type: 'string' },
    ip: { type: 'string' },
    label: { type: 'string' },
    current: { type: 'boolean', description: 'The session of the token that asked' }
  }
}

/** `GET <prefix>/sessions`. */
export const listSessionsSchema = {
  tags: TAGS,
  operationId: 'listSessions',
  summary: 'One page of the caller\'s live sessions, newest first',
  description: `${COOKIE_AUTH} Sessions come newest first by when they started (a refresh does not move one between pages). ` +
    'A page may hold fewer sessions than asked while more follow: read on while nextCursor is not null.',
  querystring: {
    type: 'object',
    properties: {
      cursor: { type: 'string', description: 'The nextCursor of the previous page (opaque); absent for the first page' },
      limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE, description: 'The most sessions in the page' }
    }
  },
  response: {
    200: {
      description: 'A page of live sessions',
      type: 'object',
      required: ['sessions', 'nextCursor'],
      properties: {
        sessions: { type: 'array', items: SESSION },
        nextCursor: { type: ['string', 'null'], description: 'The cursor of the next page; null after the last' }
      }
    },
    400: errorResponseSchema(`FTS_BAD_REQUEST: a cursor that is not one of ours, or a limit that is not a whole number from 1 to ${MAX_PAGE_SIZE}; ` +
      'FTS_COOKIE_CONFLICT: a token cookie came twice'),
    401: UNAUTHORIZED_ACCESS,
    503: STORE_DOWN
  }
}

/** `DELETE <prefix>/sessions/:id`. */
export const revokeSessionSchema = {
  tags: TAGS,
  operationId: 'revokeSession',
  summary: 'End one of the caller\'s sessions',
  description: `${COOKIE_AUTH} Ending the caller's own session also clears its cookies.`,
  params: {
    type: 'object',
    required: ['id'],
    properties: { id: { type: 'string', description: 'A sessionId from the list' } }
  },
  response: {
    204: noContent('The session has ended'),
    400: COOKIE_CONFLICT,
    401: UNAUTHORIZED_ACCESS,
    403: CSRF,
    404: errorResponseSchema('FTS_SESSION_NOT_FOUND: no live session of the caller has that id'),
    503: STORE_DOWN
  }
}

/** An OAuth error answer (RFC 6749 §5.2), of the token and revocation endpoints. */
function oauthError (description: string) {
  return {
    description,
    type: 'object',
    required: ['error'],
    properties: {
      error: { type: 'string' },
      error_description: { type: 'string', description: 'For developers; ends with the plugin\'s code, e.g. (FTS_TOKEN_REUSED)' }
    }
  }
}

const FORM = 'application/x-www-form-urlencoded'
/** An OAuth route's form body: its parameters, some required. */
const formBody = (required: string[], properties: Record<string, object>) =>
  ({ content: { [FORM]: { schema: { type: 'object', required, properties } } } })
const OAUTH_TOO_LARGE = oauthError(`invalid_request: the body is over ${ROUTE_BODY_LIMIT} bytes`)
const DPOP_HEADER = {
  type: 'object',
  properties: { dpop: { type: 'string', description: 'A DPoP proof (RFC 9449): required when the session was bound to a key at login' } }
}

/** `POST <prefix>/token`. */
export const tokenEndpointSchema = {
  tags: TAGS,
  operationId: 'oauthToken',
  summary: 'OAuth token endpoint: the refresh_token grant (RFC 6749 §6), for native clients',
  description: 'Same rotation, grace window and reuse detection as the refresh route. Reads the form body only, never cookies, and sets none. ' +
    'A session bound to a DPoP key at login needs a proof by that key; its access token is then bound too (token_type DPoP).',
  headers: DPOP_HEADER,
  body: formBody(['grant_type', 'refresh_token'], {
    grant_type: { type: 'string', enum: ['refresh_token'] },
    refresh_token: { type: 'string', maxLength: MAX_TOKEN_LENGTH },
    client_id: { type: 'string', description: 'Must be the client the session was issued to' },
    scope: { type: 'string', description: 'At most the scope granted; the new access token gets it' }
  }),
  response: {
    200: {
      description: 'New tokens (Cache-Control: no-store)',
      type: 'object',
      required: ['access_token', 'token_type', 'expires_in', 'refresh_token'],
      properties: {
        access_token: { type: 'string' },
        token_type: { type: 'string', enum: ['Bearer', 'DPoP'] },
        expires_in: { type: 'integer' },
        refresh_token: { type: 'string' },
        scope: { type: 'string' }
      }
    },
    400: oauthError('invalid_request, invalid_grant, unsupported_grant_type, invalid_scope, invalid_dpop_proof or use_dpop_nonce (with DPoP-Nonce)'),
    413: OAUTH_TOO_LARGE,
    503: oauthError('temporarily_unavailable: the session store did not answer in time, or the app\'s claims hook failed; the token is not spent: retry after Retry-After seconds')
  }
}

/** `POST <prefix>/revoke`. */
export const revokeEndpointSchema = {
  tags: TAGS,
  operationId: 'oauthRevoke',
  summary: 'OAuth token revocation (RFC 7009): ends the session of a refresh or access token',
  description: 'Answers 200 for an unknown or invalid token too. A superseded refresh token is reuse: the session ends. Reads the form body only.',
  body: formBody(['token'], {
    token: { type: 'string', maxLength: MAX_TOKEN_LENGTH },
    token_type_hint: { type: 'string', enum: ['refresh_token', 'access_token'] },
    client_id: { type: 'string' }
  }),
  response: {
    200: noContent('Revoked, or nothing to revoke'),
    400: oauthError('invalid_request, or invalid_grant for a token issued to another client'),
    413: OAUTH_TOO_LARGE,
    503: oauthError('temporarily_unavailable: the session store did not answer in time')
  }
}

/** `GET <prefix>/.well-known/jwks.json`. */
export const jwksSchema = {
  tags: TAGS,
  operationId: 'jwks',
  summary: 'The public keys that verify access tokens (asymmetric keys only)',
  response: {
    200: {
      description: 'A JSON Web Key Set',
      type: 'object',
      required: ['keys'],
      properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true } } }
    }
  }
}

/**
 * The validator compiler of the plugin's routes: it accepts what the handlers then check,
 * so that the schemas above describe without Fastify's validator coercing or rejecting
 * first (see the top of this file).
 */
export function describeOnly (): () => boolean {
  // `true`, not `{ value }`: Fastify would replace an absent body with that value (null).
  return acceptAsIs
}

function acceptAsIs (): boolean {
  return true
}
