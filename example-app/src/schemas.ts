import { errorResponseSchema, tokenResponseSchema } from 'fastify-token-sessions'
import { AUTHENTICATED } from './docs.js'

/** A body of registration and login. */
export interface Credentials {
  username: string
  password: string
}

/** A body of a login: a native client's OAuth library refreshes with the `client_id` named here. */
export interface LoginBody extends Credentials {
  client_id?: string
  remember?: boolean
}

/** A body of a re-authentication: the current password again. */
export interface ReauthenticateBody {
  password: string
}

/** A body of a password change. */
export interface PasswordChangeBody {
  currentPassword: string
  newPassword: string
}

/** The documented error answers the app's routes share. */
const BAD_INPUT = errorResponseSchema('FST_ERR_VALIDATION (a field breaks its rule), FST_ERR_CTP_* (not JSON, too large)')
const UNAUTHENTICATED = errorResponseSchema('FTS_TOKEN_MISSING, FTS_TOKEN_INVALID, FTS_TOKEN_EXPIRED or FTS_SESSION_REVOKED')
const RATE_LIMITED = errorResponseSchema('RATE_LIMITED: too many requests from this network (an IPv4 address, an IPv6 /64); see Retry-After')
const STORE_DOWN = errorResponseSchema('FTS_STORE_UNAVAILABLE: Redis did not answer; see Retry-After')

/** The rule a new password must meet (at registration and on a change). */
const NEW_PASSWORD = { type: 'string', minLength: 8, maxLength: 256 } as const

/** Registration enforces the username and password rules. */
export const registerSchema = {
  tags: ['users'],
  summary: 'Create an account',
  body: {
    type: 'object',
    required: ['username', 'password'],
    additionalProperties: false,
    properties: {
      username: { type: 'string', minLength: 3, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' },
      password: NEW_PASSWORD
    }
  },
  response: {
    201: { description: 'Created', type: 'object', properties: { id: { type: 'string' }, username: { type: 'string' } } },
    400: BAD_INPUT,
    409: errorResponseSchema('USERNAME_TAKEN'),
    429: RATE_LIMITED,
    503: STORE_DOWN
  }
} as const

/**
 * Login checks types and bounds only: a name or password that breaks today's rules just
 * fails as invalid credentials, and a stricter rule later does not lock out old users.
 */
export const loginSchema = {
  tags: ['users'],
  summary: 'Log in: starts a session',
  description: 'Browsers get both tokens as httpOnly cookies; with `X-Token-Transport: body` the refresh token is in the body instead.',
  body: {
    type: 'object',
    required: ['username', 'password'],
    additionalProperties: false,
    properties: {
      username: { type: 'string', minLength: 1, maxLength: 64 },
      password: { type: 'string', minLength: 1, maxLength: 256 },
      client_id: { type: 'string', minLength: 1, maxLength: 100, description: 'A native client on NATIVE_CLIENT_IDS: the session is issued to it (its OAuth library refreshes at /auth/token with the same client_id)' },
      remember: { type: 'boolean', default: true, description: '"Remember me": false ends the session when the browser closes (its cookies carry no Max-Age) and within BROWSER_SESSION_MAX_LIFETIME' }
    }
  },
  response: {
    200: tokenResponseSchema,
    400: errorResponseSchema('UNKNOWN_CLIENT (a client_id not on NATIVE_CLIENT_IDS), FST_ERR_VALIDATION (a field breaks its rule), FST_ERR_CTP_* (not JSON, too large)'),
    401: errorResponseSchema('INVALID_CREDENTIALS: wrong password or unknown user (one answer for both)'),
    429: errorResponseSchema('RATE_LIMITED: too many requests from this network, or the password checks against this account in this minute are used up; see Retry-After'),
    503: STORE_DOWN
  }
} as const

/** The password is only bounded, as at login. */
export const reauthenticateSchema = {
  tags: ['users'],
  summary: 'Prove who you are again: the session\'s login becomes recent',
  description: 'For a route that needs a recent login (401 FTS_STEP_UP_REQUIRED). The same session gets a new token pair, delivered as a login\'s (cookies, or the body with `X-Token-Transport: body`); the refresh token it replaces is dead at once, with no grace.',
  security: AUTHENTICATED,
  body: {
    type: 'object',
    required: ['password'],
    additionalProperties: false,
    properties: {
      password: { type: 'string', minLength: 1, maxLength: 256 }
    }
  },
  response: {
    200: tokenResponseSchema,
    400: BAD_INPUT,
    401: errorResponseSchema('INVALID_CREDENTIALS (wrong password), or a token error'),
    403: errorResponseSchema('FTS_CSRF_REJECTED: the access cookie without the anti-CSRF header'),
    429: errorResponseSchema('RATE_LIMITED: too many requests from this network, or the password checks against this account in this minute are used up; see Retry-After'),
    503: STORE_DOWN
  }
} as const

/** The current password is only bounded, as at login; the new one meets today's rule. */
export const changePasswordSchema = {
  tags: ['users'],
  summary: 'Change the password; every other session ends',
  security: AUTHENTICATED,
  body: {
    type: 'object',
    required: ['currentPassword', 'newPassword'],
    additionalProperties: false,
    properties: {
      currentPassword: { type: 'string', minLength: 1, maxLength: 256 },
      newPassword: NEW_PASSWORD
    }
  },
  response: {
    204: { description: 'Changed; every other session of the user has ended', type: 'null' },
    400: BAD_INPUT,
    401: errorResponseSchema('FTS_STEP_UP_REQUIRED (the login is older than STEP_UP_MAX_AGE: re-authenticate, then retry), INVALID_CREDENTIALS (wrong current password), or a token error'),
    403: errorResponseSchema('FTS_CSRF_REJECTED: the access cookie without the anti-CSRF header'),
    429: errorResponseSchema('RATE_LIMITED: too many attempts from this network, or too many wrong passwords for this user; see Retry-After'),
    503: STORE_DOWN
  }
} as const

/** The response schema drops any claim that is not meant to be shown. */
export const meSchema = {
  tags: ['users'],
  summary: 'The current user and the access token\'s expiry',
  security: AUTHENTICATED,
  response: {
    200: {
      description: 'The current user',
      type: 'object',
      properties: {
        id: { type: 'string' },
        username: { type: 'string' },
        sessionId: { type: 'string' },
        expiresAt: { type: 'integer', description: 'When the access token expires, in ms since the epoch' }
      }
    },
    401: UNAUTHENTICATED
  }
} as const
