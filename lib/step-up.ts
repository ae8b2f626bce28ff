// Step-up authentication (RFC 9470): what a route requires of the user's last
// authentication, and the challenge of a request that falls short of it.
import { MAX_TOKEN_TTL } from './options.js'
import { ACR } from './sessions.js'
import type { SessionUser, StepUpRequirement } from './types.js'

/** A route's requirement, checked once when the route is declared. */
export interface Requirement {
  readonly maxAgeMs: number | undefined
  readonly acr: ReadonlySet<string> | undefined
  /** The challenge's parameters after `error_description` (`, max_age=300, acr_values="mfa"`). */
  readonly params: string
  readonly maxAge: number | undefined
}

/** The most acr values one route may accept. */
const MAX_ACR_VALUES = 20

/**
 * Checks what `authenticate.require` was given: a bad requirement is a bug in the app,
 * thrown when the route is declared, never on a request.
 */
export function requirementOf (given: StepUpRequirement): Requirement {
  if (given === null || typeof given !== 'object') throw new TypeError('fastify-token-sessions: authenticate.require takes { maxAge, acr }')
  const { maxAge, acr } = given
  // auth_time counts whole seconds: a login in the same second already looks older than 0.
  if (maxAge !== undefined && !(Number.isSafeInteger(maxAge) && maxAge >= 1 && maxAge <= MAX_TOKEN_TTL)) {
    throw new TypeError(`fastify-token-sessions: authenticate.require's maxAge must be a whole number of seconds from 1 to ${MAX_TOKEN_TTL}`)
  }
  const values = acr === undefined ? undefined : typeof acr === 'string' ? [acr] : acr
  if (values !== undefined && !(Array.isArray(values) && values.length >= 1 && values.length <= MAX_ACR_VALUES && values.every((value) => typeof value === 'string' && ACR.test(value)))) {
    throw new TypeError(`fastify-token-sessions: authenticate.require's acr must be an acr value or a list of 1 to ${MAX_ACR_VALUES} (1 to 64 printable ASCII characters but space, " and \\ each)`)
  }
  if (maxAge === undefined && values === undefined) throw new TypeError('fastify-token-sessions: authenticate.require needs maxAge, acr or both')
  const params = (maxAge === undefined ? '' : `, max_age=${maxAge}`) + (values === undefined ? '' : `, acr_values="${values.join(' ')}"`)
  return Object.freeze({ maxAgeMs: maxAge === undefined ? undefined : maxAge * 1000, acr: values === undefined ? undefined : new Set(values), params, maxAge })
}

/**
 * Why the user's last authentication falls short of `requirement` at `now` (ms, store
 * clock), as the challenge's `error_description` says it; undefined when it meets it.
 */
export function shortfall (user: SessionUser, requirement: Requirement, now: number): string | undefined {
  const reasons: string[] = []
  if (requirement.maxAgeMs !== undefined && now - user.authenticatedAt > requirement.maxAgeMs) {
    reasons.push(`the last authentication is older than ${requirement.maxAge as number} seconds`)
  }
  if (requirement.acr !== undefined && (user.acr === undefined || !requirement.acr.has(user.acr))) {
    reasons.push(`an authentication of class ${[...requirement.acr].join(' or ')} is required`)
  }
  if (reasons.length === 0) return undefined
  const text = reasons.join('; ')
  return text.charAt(0).toUpperCase() + text.slice(1)
}
