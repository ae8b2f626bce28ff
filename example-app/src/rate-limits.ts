import type { FastifyInstance } from 'fastify'
import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import type { Config } from './config.js'
import { RateLimitedError, rateLimited } from './errors.js'
import { networkOf } from './networks.js'

/** The window of the rate limits: RATE_LIMIT_LOGIN and RATE_LIMIT_REFRESH are per minute. */
const RATE_LIMIT_WINDOW_MS = 60_000
/** The rate-limit counters' Redis keys start with KEY_PREFIX (if set), then this. */
const RATE_LIMIT_NAMESPACE = 'rate-limit:'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A limit counted in this process only (see {@link LocalLimit}). */
    localRateLimit?: LocalLimit
  }
}

/** A limit of `max` requests per client network per minute, for a route's `config.rateLimit`. */
export function perMinute (max: number): RateLimitOptions {
  return { max, timeWindow: RATE_LIMIT_WINDOW_MS }
}

/**
 * Rate limits on the routes anyone can hammer without an account: login (password
 * guessing), registration (a password hash each) and the password change (see routes.ts),
 * each route naming its limit in `config.rateLimit` (`global: false`: no other route is
 * limited). Counted per client network (see {@link networkOf}: an IPv4 address, an IPv6 /64,
 * so that an attacker with a block of IPv6 addresses is one client) of `request.ip` (behind
 * a proxy, set `TRUST_PROXY`, or every client shares the proxy's IP and limit), in the
 * sessions' Redis through our client, so
 * that every instance counts together, or in memory when sessions are. When Redis cannot
 * count, the request fails closed with a 503 (see errors.ts): those routes need Redis anyway.
 *
 * Refresh, and the routes that end sessions, are limited differently, by {@link LocalLimit}:
 * see there.
 */
export async function registerRateLimits (app: FastifyInstance, config: Config, redis: Redis | undefined): Promise<void> {
  await app.register(rateLimit, {
    global: false,
    ...(redis === undefined ? {} : { redis, nameSpace: (config.keyPrefix ?? '') + RATE_LIMIT_NAMESPACE }),
    skipOnError: false,
    // Its default key is the client's network as networkOf has it: an IPv6 client by its
    // /64, an IPv4-mapped address as its IPv4 address. Said here so that it stays so.
    ipv6Subnet: 64,
    // The app's error shape and a stable code; the limiter sets Retry-After itself.
    errorResponseBuilder: () => new RateLimitedError()
  })
  // Callback style: on every other route this costs one property read, not a promise.
  app.addHook('onRequest', (request, reply, done) => {
    const limit = request.routeOptions.config.localRateLimit
    if (limit === undefined) return done()
    const wait = limit.hit(networkOf(request.ip))
    done(wait === 0 ? undefined : rateLimited(reply, wait))
  })
}

/**
 * A per-client-network limit counted in this process's memory: no Redis round trip, for the
 * refresh route, whose honest requests must cost what the plugin's rotation costs (one
 * round trip), and for logout, logout-all and revocation, which cost one script as well. A
 * forged or tampered token never reaches Redis (its signature fails first), so what these
 * limits guard is Redis's work for real tokens, and a per-process count bounds that: with N
 * instances behind a balancer a client gets at most N times the limit, so
 * `RATE_LIMIT_REFRESH` is set per instance (the documented total divided by N).
 * Fixed one-minute windows; the counts of the previous window are dropped wholesale.
 */
export class LocalLimit {
  /**
   * The most clients counted apart in one window; beyond it (a flood of distinct
   * IPv4 addresses or IPv6 /64s) the newcomers share one count, so memory stays bounded
   * and the flood is limited as one client.
   */
  static readonly MAX_CLIENTS = 100_000
  readonly #max: number
  #window = 0
  #counts = new Map<string, number>()

  readonly #now: () => number

  /** `now`: the clock (milliseconds since the epoch). */
  constructor (max: number, now: () => number = Date.now) {
    this.#max = max
    this.#now = now
  }

  /** Counts one request of `client`; 0 when it may go on, else the ms until the window ends. */
  hit (client: string): number {
    const now = this.#now()
    const window = Math.floor(now / RATE_LIMIT_WINDOW_MS)
    if (window !== this.#window) {
      this.#window = window
      this.#counts = new Map()
    }
    const key = this.#counts.has(client) || this.#counts.size < LocalLimit.MAX_CLIENTS ? client : '*'
    const count = (this.#counts.get(key) ?? 0) + 1
    this.#counts.set(key, count)
    return count <= this.#max ? 0 : (window + 1) * RATE_LIMIT_WINDOW_MS - now
  }
}
