import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { CLOCK_READING_TRUSTED_MS, StoreClock } from '../lib/clock.js'
import { RedisStore } from '../lib/index.js'
import { LogCapture, buildApp, login } from './helpers/app.js'
import { KEYS, craft, payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

// This instance's clock runs 90 s ahead of Redis's (and of the test's own reckoning):
// every Date.now() of this process, the plugin's included, is skewed.
const SKEW_MS = 90_000
/** Time travel for this process only, on top of the skew. */
let travelledMs = 0
const realNow = Date.now.bind(Date)
Date.now = () => realNow() + SKEW_MS + travelledMs
t.teardown(() => { Date.now = realNow })

const ACCESS_TTL = 30
const AT = { alg: 'HS256', typ: 'JWT' }

t.test('an instance whose clock runs ahead keeps Redis\'s time', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url, accessTokenTtl: ACCESS_TTL }, { logs })
  const tokens = await login(app, 'skewed')

  t.test('its tokens are stamped with Redis\'s time, which every instance reads alike', async (t) => {
    const { iat } = payloadOf(tokens.accessToken) as { iat: number }
    t.ok(Math.abs(iat * 1000 - realNow()) < 2000, `iat ${iat} is Redis's now, not this instance's (${SKEW_MS / 1000} s ahead)`)
  })

  t.test('health shows the offset, and the app logged a warning past the tolerance', async (t) => {
    const { clockOffsetMs } = await app.tokenSessions.health()
    t.ok(Math.abs(clockOffsetMs + SKEW_MS) < 1000, `offset ${clockOffsetMs} ms`)
    t.ok(logs.entries().some((entry) => entry.level === 40 && typeof entry.clockOffsetMs === 'number' && /clock is off/.test(String(entry.msg))))
  })

  t.test('a logged-out session\'s access token is rejected at once, revoked by another instance', async (t) => {
    // Another instance (its own client) ends the session: Redis stamps the revocation with
    // its clock, remembered for the access tokens' lifetime and a margin (60 s < 90 s).
    const other = redis.client()
    t.teardown(() => other.quit())
    const store = new RedisStore({ client: other })
    const { sid, sub } = payloadOf(tokens.accessToken) as { sid: string, sub: string }
    t.equal(await store.revoke({ userId: sub, sessionId: sid, rememberMs: (ACCESS_TTL + 30) * 1000 }), 'revoked')
    let code: string | undefined
    for (let tries = 0; tries < 50 && code !== 'FTS_SESSION_REVOKED'; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      code = (await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })).json().code
    }
    t.equal(code, 'FTS_SESSION_REVOKED', 'not forgotten at once by a clock that thinks it is later')
  })
})

t.test('a clock reading with a long round trip does not displace a more precise one', async (t) => {
  // The store answers at once, except when told to dawdle: it reads its clock, then the
  // answer takes 80 ms to come back (a busy machine), which would put this instance 40 ms off.
  let dawdle = true
  const storeTime = async (): Promise<number> => {
    const now = realNow()
    if (dawdle) await new Promise((resolve) => setTimeout(resolve, 80))
    return now
  }
  const off = (clock: StoreClock): number => Math.abs(clock.offsetMs + SKEW_MS + travelledMs)
  const quiet = { warn () {}, debug () {} } as unknown as FastifyBaseLogger
  const clock = new StoreClock(storeTime, quiet)
  await clock.measure()
  t.ok(off(clock) >= 30, `one slow reading is off by about half its round trip (${off(clock)} ms)`)
  dawdle = false
  await clock.measure()
  t.ok(off(clock) <= 5, `a quick reading replaces it (${off(clock)} ms)`)
  dawdle = true
  await clock.measure()
  t.ok(off(clock) <= 5, `a later slow reading does not (${off(clock)} ms)`)
  travelledMs = CLOCK_READING_TRUSTED_MS + 1000
  t.teardown(() => { travelledMs = 0 })
  await clock.measure()
  t.ok(off(clock) >= 30, 'once the precise reading has aged, the next one counts, slow or not')

  // After a reconnect (another server, maybe another clock), earlier readings do not count:
  // the best of the new ones does, even when the first of them is slow.
  let calls = 0
  const failover = new StoreClock(async () => {
    calls++
    const now = realNow() + 5000
    if (calls === 1) await new Promise((resolve) => setTimeout(resolve, 80))
    return now
  }, quiet)
  await failover.calibrate()
  t.equal(calls, 3, 'three readings')
  t.ok(Math.abs(failover.offsetMs - 5000 + SKEW_MS + travelledMs) <= 5, `the quickest counts (${failover.offsetMs} ms)`)
})

t.test('a reconnect to another server forgets the old server\'s best reading, however quick it was', async (t) => {
  // One clock, as an instance keeps it across a failover: first a server on the true time
  // that answers at once, then a replica whose clock is 5 s ahead, farther away (every answer
  // takes 40 ms). The old readings' round trips are shorter, and still young enough to trust.
  let server: 'first' | 'second' = 'first'
  const storeTime = async (): Promise<number> => {
    if (server === 'first') return realNow()
    const now = realNow() + 5000
    await new Promise((resolve) => setTimeout(resolve, 40))
    return now
  }
  const off = (clock: StoreClock, storeAhead: number): number => Math.abs(clock.offsetMs - storeAhead + SKEW_MS + travelledMs)
  const clock = new StoreClock(storeTime, { warn () {}, debug () {} } as unknown as FastifyBaseLogger)
  await clock.calibrate()
  t.ok(off(clock, 0) <= 5, `the first server's time (${clock.offsetMs} ms)`)
  server = 'second'
  await clock.measure()
  t.ok(off(clock, 0) <= 5, 'a slower reading between reconnects does not displace the precise one')
  await clock.calibrate()
  // About half a round trip off; far from the 5 s the first server's reading would be.
  t.ok(off(clock, 5000) < 1000, `after the reconnect the second server's time counts at once (${clock.offsetMs} ms)`)
})

t.test('tokens that claim more than the plugin issues are rejected, however well signed', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, accessTokenTtl: ACCESS_TTL })
  const now = Math.floor(realNow() / 1000)
  const payload = { sub: 'admin', sid: 'AAAAAAAAAAAAAAAAAAAAAA', sst: realNow() - 1000 }
  const me = async (claims: Record<string, unknown>): Promise<string | number> => {
    const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${craft(AT, { ...payload, ...claims }, KEYS.access)}` } })
    return response.statusCode === 200 ? 200 : response.json().code
  }
  t.equal(await me({ iat: now, exp: now + ACCESS_TTL }), 200, 'as the plugin issues them')
  t.equal(await me({ iat: now + 3600, exp: now + 3600 + ACCESS_TTL }), 'FTS_TOKEN_INVALID', 'iat an hour in the future')
  t.equal(await me({ iat: now + 4, exp: now + 4 + ACCESS_TTL }), 200, 'iat within the 5-s tolerance')
  t.equal(await me({ iat: now, exp: now + 365 * 86400 }), 'FTS_TOKEN_INVALID', 'exp a year out: longer than accessTokenTtl')
  t.equal(await me({ iat: now, exp: now + ACCESS_TTL + 1 }), 'FTS_TOKEN_INVALID', 'one second longer than accessTokenTtl')
  t.equal(await me({ exp: now + ACCESS_TTL }), 'FTS_TOKEN_INVALID', 'no iat')
  t.equal(await me({ iat: String(now), exp: now + ACCESS_TTL }), 'FTS_TOKEN_INVALID', 'iat not a number')
  t.equal(await me({ iat: now, exp: now + ACCESS_TTL, sst: undefined }), 'FTS_TOKEN_INVALID', 'no session start')
  t.equal(await me({ iat: now, exp: now + ACCESS_TTL, sst: -1 }), 'FTS_TOKEN_INVALID', 'a negative session start')
  t.equal(await me({ iat: now - 2 * ACCESS_TTL, exp: now - ACCESS_TTL }), 'FTS_TOKEN_EXPIRED', 'expired by the store\'s clock')

  const RT = { alg: 'HS256', typ: 'rt+jwt' }
  const refreshPayload = { sub: 'admin', sid: 'AAAAAAAAAAAAAAAAAAAAAA', jti: 'A'.repeat(43), iat: now, mx: now + 10 * 86400 }
  const refresh = async (claims: Record<string, unknown>): Promise<string> => {
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: craft(RT, { ...refreshPayload, ...claims }, KEYS.refresh) } })
    return response.json().code
  }
  t.equal(await refresh({ exp: now + 86400 }), 'FTS_SESSION_REVOKED', 'as issued: it reaches the store, which has no such session')
  t.equal(await refresh({ exp: now + 2 * 86400 }), 'FTS_TOKEN_INVALID', 'a refresh token longer than refreshTokenTtl')
  t.equal(await refresh({ iat: now + 3600, exp: now + 3600 + 86400 }), 'FTS_TOKEN_INVALID', 'a refresh token from the future')
})
