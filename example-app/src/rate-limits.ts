import type { FastifyInstance } from 'fastify'
import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import type { Config } from './config.js'
import { RateLimitedError } from './errors.js'

/** The window of the rate limits: RATE_LIMIT_LOGIN and RATE_LIMIT_REFRESH are per minute. */
const RATE_LIMIT_WINDOW_MS = 60_000
/** The rate-limit counters' Redis keys start with KEY_PREFIX (if set), then this. */
const RATE_LIMIT_NAMESPACE = 'rate-limit:'

/** A limit of `max` requests per client IP per minute, for a route's `config.rateLimit`. */
export function perMinute (max: number): RateLimitOptions {
  return { max, timeWindow: RATE_LIMIT_WINDOW_MS }
}

/**
 * Rate limits on the routes anyone can hammer without an account: login (password
 * guessing), registration (a password hash each; see routes.ts) and refresh (token
 * guessing, a Redis round trip each), each route naming its limit in `config.rateLimit`
 * (`global: false`: no other route is limited). Counted per client IP (`request.ip`;
 * behind a proxy, set Fastify's `trustProxy`, or every client shares the proxy's IP and
 * limit), in the sessions' Redis through our client, so that every instance counts
 * together, or in memory when sessions are. When Redis cannot count, the request fails
 * closed with a 503 (see errors.ts): both routes need that Redis anyway.
 */
export async function registerRateLimits (app: FastifyInstance, config: Config, redis: Redis | undefined): Promise<void> {
  await app.register(rateLimit, {
    global: false,
    ...(redis === undefined ? {} : { redis, nameSpace: (config.keyPrefix ?? '') + RATE_LIMIT_NAMESPACE }),
    skipOnError: false,
    // The app's error shape and a stable code; the limiter sets Retry-After itself.
    errorResponseBuilder: () => new RateLimitedError()
  })
}
