import { STATUS_CODES } from 'node:http'
import createError, { type FastifyError } from '@fastify/error'
import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * Every error the example app sends, with a stable `code`. Errors of the plugin keep
 * their own `FTS_*` codes; anything else Fastify raises is mapped onto the codes below.
 *
 * | code                     | status | when                                           |
 * |--------------------------|--------|------------------------------------------------|
 * | `BAD_REQUEST`            | 400    | schema validation failed, malformed JSON       |
 * | `INVALID_CREDENTIALS`    | 401    | wrong password or unknown user (same answer)   |
 * | `NOT_FOUND`              | 404    | no such route                                  |
 * | `USERNAME_TAKEN`         | 409    | registration with an existing username         |
 * | `PAYLOAD_TOO_LARGE`      | 413    | body over the limit                            |
 * | `UNSUPPORTED_MEDIA_TYPE` | 415    | body is not JSON                               |
 * | `REQUEST_REJECTED`       | 4xx    | any other client error                         |
 * | `INTERNAL_ERROR`         | 500    | a bug; details are in the log, not the answer  |
 *
 * @example
 * ```ts
 * throw new UsernameTakenError()
 * // 409 { statusCode: 409, code: 'USERNAME_TAKEN', error: 'Conflict', message: 'The username is taken' }
 * ```
 */
/** Wrong password or unknown user: one answer, so it does not reveal which usernames exist. */
export const InvalidCredentialsError = createError('INVALID_CREDENTIALS', 'Invalid username or password', 401)
/** No route matches. */
export const NotFoundError = createError('NOT_FOUND', 'Route not found', 404)
/** The username is already registered. */
export const UsernameTakenError = createError('USERNAME_TAKEN', 'The username is taken', 409)

/** The JSON body of every error response. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

const APP_CODES = new Set(['INVALID_CREDENTIALS', 'NOT_FOUND', 'USERNAME_TAKEN'])
/** Fixed answers for what Fastify raises: its messages may quote the body (a password). */
const BY_STATUS: Record<number, { code: string, message: string }> = {
  400: { code: 'BAD_REQUEST', message: 'The request is malformed' },
  404: { code: 'NOT_FOUND', message: 'Route not found' },
  413: { code: 'PAYLOAD_TOO_LARGE', message: 'The request body is too large' },
  415: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'The request body must be application/json' }
}
const REJECTED = { code: 'REQUEST_REJECTED', message: 'The request was rejected' }
const INTERNAL = { code: 'INTERNAL_ERROR', message: 'Internal server error' }
/** The plugin's 503: its message is fixed and it has already logged the cause and set Retry-After. */
const STORE_UNAVAILABLE = 'FTS_STORE_UNAVAILABLE'

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
  if (typeof code === 'string' && (APP_CODES.has(code) || code.startsWith('FTS_'))) return body(status, code, error.message)
  // ajv's messages name the field and the rule, never the value: safe and useful to show.
  if (error.validation !== undefined) return body(400, 'BAD_REQUEST', error.message)
  const known = BY_STATUS[status] ?? REJECTED
  return body(status, known.code, known.message)
}

/**
 * The app's error handler: one body shape for every error. Server faults are logged in
 * full; client errors only by code, as Fastify's messages for them may quote the body.
 */
export async function errorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<ErrorBody> {
  const answer = publicError(error)
  if (answer.statusCode >= 500 && error.code !== STORE_UNAVAILABLE) {
    request.log.error({ err: error }, 'request failed')
  } else {
    request.log.info({ statusCode: answer.statusCode, code: answer.code }, 'request rejected')
  }
  reply.code(answer.statusCode)
  return answer
}
