import { STATUS_CODES } from 'node:http'
import createError, { type FastifyError } from '@fastify/error'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { errors, loggable } from 'fastify-token-sessions'

/**
 * Every error the example app sends, in one body shape. Codes are never renamed: the
 * plugin's `FTS_*` codes and Fastify's own `FST_ERR_*` codes reach the client as their
 * documentation gives them (e.g. `FST_ERR_CTP_BODY_TOO_LARGE`, `FST_ERR_VALIDATION`).
 * Only Fastify's messages are replaced, by fixed ones: they may quote the request body.
 * The app's own codes:
 *
 * | code                  | status | when                                                   |
 * |-----------------------|--------|--------------------------------------------------------|
 * | `UNKNOWN_CLIENT`      | 400    | a login names a `client_id` not on NATIVE_CLIENT_IDS   |
 * | `INVALID_CREDENTIALS` | 401    | wrong password or unknown user (same answer)           |
 * | `NOT_FOUND`           | 404    | no such route                                          |
 * | `USERNAME_TAKEN`      | 409    | registration with an existing username                 |
 * | `RATE_LIMITED`        | 429    | too many requests from one network (an IPv4       |
 * |                       |        | address, an IPv6 /64) or password checks against one   |
 * |                       |        | account; Retry-After                                   |
 * | `REQUEST_REJECTED`    | 4xx    | any other client error that comes without a known code |
 * | `INTERNAL_ERROR`      | 500    | a bug; details are in the log, not the answer          |
 *
 * @example
 * ```ts
 * throw new UsernameTakenError()
 * // 409 { statusCode: 409, code: 'USERNAME_TAKEN', error: 'Conflict', message: 'The username is taken' }
 * ```
 */
/** A login names an OAuth client this app does not know (`NATIVE_CLIENT_IDS`). */
export const UnknownClientError = createError('UNKNOWN_CLIENT', 'The client_id is not a client of this app', 400)
/** Wrong password or unknown user: one answer, so it does not reveal which usernames exist. */
export const InvalidCredentialsError = createError('INVALID_CREDENTIALS', 'Invalid username or password', 401)
/** No route matches. */
export const NotFoundError = createError('NOT_FOUND', 'Route not found', 404)
/** The username is already registered. */
export const UsernameTakenError = createError('USERNAME_TAKEN', 'The username is taken', 409)
/** Too many requests from one client network, or against one account; with `Retry-After`. */
export const RateLimitedError = createError('RATE_LIMITED', 'Too many requests; retry later', 429)

/**
 * The 429 of a limit the app counts itself: sets `Retry-After` (whole seconds, at least 1)
 * and returns the error to throw. @fastify/rate-limit sets its own.
 */
export function rateLimited (reply: FastifyReply, waitMs: number): FastifyError {
  reply.header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000))))
  return new RateLimitedError()
}

/** The JSON body of every error response. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

const APP_CODES = new Set(['UNKNOWN_CLIENT', 'INVALID_CREDENTIALS', 'NOT_FOUND', 'USERNAME_TAKEN', 'RATE_LIMITED'])
/** Fastify's own errors: their code is kept, their message may quote the body (a password). */
const FASTIFY_CODE = /^FST_ERR_/
/** Fixed messages, by status, for errors whose own message is not shown. */
const MESSAGES: Record<number, string> = {
  400: 'The request is malformed',
  413: 'The request body is too large',
  415: 'The request body must be application/json'
}
const REJECTED = { code: 'REQUEST_REJECTED', message: 'The request was rejected' }
const INTERNAL = { code: 'INTERNAL_ERROR', message: 'Internal server error' }
/**
 * The plugin's 503. Its message is fixed; on the plugin's routes and in `authenticate` and
 * `issueTokens` it has already set Retry-After (and left the log to this handler).
 */
const STORE_UNAVAILABLE = 'FTS_STORE_UNAVAILABLE'
/** The plugin's default `retryAfter`, for the 503s it did not answer itself. */
const RETRY_AFTER_SECONDS = 1
/** @fastify/rate-limit sets this header on every request it has counted, allowed or not. */
const RATE_LIMIT_HEADER = 'x-ratelimit-limit'

function statusOf (error: FastifyError): number {
  const status = error.statusCode
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500
}

function body (statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

/** What a client may see of an error: never a stack, an internal message or the request body. */
export function publicError (error: FastifyError): ErrorBody {
  const status = statusOf(error)
  const code: unknown = error.code
  if (code === STORE_UNAVAILABLE) return body(status, STORE_UNAVAILABLE, error.message)
  if (status >= 500) return body(500, INTERNAL.code, INTERNAL.message)
  // Our messages and the plugin's are fixed strings.
  if (typeof code === 'string' && (APP_CODES.has(code) || code.startsWith('FTS_'))) return body(status, code, error.message)
  const fixed = MESSAGES[status] ?? REJECTED.message
  if (typeof code !== 'string' || !FASTIFY_CODE.test(code)) return body(status, REJECTED.code, fixed)
  // ajv's messages name the field and the rule, never the value: safe and useful to show.
  return body(status, code, error.validation === undefined ? fixed : error.message)
}

/**
 * Whether the rate limiter failed to count the request (its Redis is down or slow): it
 * then throws the client's error, with no HTTP status, before it sets its headers.
 * Login and refresh need that Redis anyway, so they fail closed with the store's 503
 * rather than run uncounted: a login that ran would let a client guess passwords as fast
 * as it likes while Redis is away (a right password answers 503, a wrong one 401).
 */
function rateLimiterFailed (error: FastifyError, request: FastifyRequest, reply: FastifyReply): boolean {
  return request.routeOptions.config.rateLimit != null && typeof error.statusCode !== 'number' && !reply.hasHeader(RATE_LIMIT_HEADER)
}

/**
 * A call to the app's own Redis data (users, password throttling): when Redis fails, the
 * request fails as the plugin's do, with a 503 and Retry-After, the cause kept for the log.
 */
export async function inStore<T> (call: Promise<T>): Promise<T> {
  try {
    return await call
  } catch (cause) {
    throw new errors.StoreUnavailableError({ cause })
  }
}

/**
 * The app's error handler: one body shape for every error. Server faults are logged in
 * full; client errors only by code, as Fastify's messages for them may quote the body.
 */
export async function errorHandler (raised: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<ErrorBody> {
  const error = rateLimiterFailed(raised, request, reply) ? new errors.StoreUnavailableError({ cause: raised }) : raised
  const answer = publicError(error)
  if (error.code === STORE_UNAVAILABLE) {
    // Logged here only, once: the plugin leaves its 503s to the error handler. Of a Redis
    // error, the command's name only, never its arguments.
    request.log.error({ err: loggable(error.cause) }, 'session store unavailable')
    // Raised by app.tokenSessions in a route of ours, or by the rate limiter's Redis: the
    // plugin has not set the hint.
    if (!reply.hasHeader('retry-after')) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  } else if (answer.statusCode >= 500) {
    request.log.error({ err: error }, 'request failed')
  } else {
    request.log.info({ statusCode: answer.statusCode, code: answer.code }, 'request rejected')
  }
  reply.code(answer.statusCode)
  return answer
}
