// The contract between the browser client and the plugin, from the plugin's side: every
// code the client acts on is one of the plugin's errors with status 401 (or a retry
// status, or the 403 that ends a session as refused), every 401 the plugin can send is
// one the client knows, and the plugin's routes answer each situation with the code the
// client expects for it. A browser's requests: cookies, the anti-CSRF header, real Redis.
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { REFRESH_END_CODES, REFUSED_CODE, RENEWABLE_CODES, RETRY_STATUSES, SESSION_END_CODES, STEP_UP_CODE, type SessionEndReason } from '../client/codes.js'
import * as errors from '../lib/errors.js'
import type { TokenSessionsOptions } from '../lib/index.js'
import { buildApp, cookieHeader, cookiesOf } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

const redis = await startRedis(t)
const CSRF = { 'x-requested-with': 'fetch' }

/** The plugin's errors by code, with their status. */
const PLUGIN_ERRORS = new Map(Object.values(errors).map((Constructor) => {
  const error = new (Constructor as new (...args: string[]) => { code: string, statusCode: number })('option', 'fix')
  return [error.code, error.statusCode]
}))

/** What the client makes of a 401 on a request (not the refresh). */
function onRequest (code: string): 'refresh' | 'step-up' | SessionEndReason | 'pass' {
  if (RENEWABLE_CODES.includes(code)) return 'refresh'
  if (code === STEP_UP_CODE) return 'step-up'
  return SESSION_END_CODES[code] ?? 'pass'
}

/** What the client makes of a 401 on the refresh. */
function onRefresh (code: string): SessionEndReason | undefined {
  return SESSION_END_CODES[code] ?? REFRESH_END_CODES[code]
}

t.test('every code the client acts on is the plugin\'s, with the status it expects', async (t) => {
  for (const code of [...RENEWABLE_CODES, ...Object.keys(SESSION_END_CODES), ...Object.keys(REFRESH_END_CODES), STEP_UP_CODE]) {
    t.equal(PLUGIN_ERRORS.get(code), 401, code)
  }
  t.ok(RETRY_STATUSES.includes(PLUGIN_ERRORS.get('FTS_STORE_UNAVAILABLE') as number), 'the store\'s 503 is retried')
  t.equal(PLUGIN_ERRORS.get(REFUSED_CODE), 403, 'the refusal that ends a session is the plugin\'s 403')
})

t.test('every 401 the plugin sends is one the client knows (a new one fails here until the client learns it)', async (t) => {
  // Only issueTokens (the app's login route) throws this one: a login answer, not a session's.
  const loginOnly = new Set(['FTS_CREDENTIALS_STALE'])
  // Only authenticate of a DPoP-bound access token sends these as 401s: a cookie session's
  // access token is never bound (the refresh side is), so the browser client never sees them.
  const boundAccessOnly = new Set(['FTS_DPOP_PROOF_INVALID', 'FTS_DPOP_NONCE_REQUIRED'])
  for (const [code, status] of PLUGIN_ERRORS) {
    if (status !== 401 || loginOnly.has(code) || boundAccessOnly.has(code)) continue
    t.not(onRequest(code), 'pass', `${code} on a request`)
    // A route's requirement (authenticate.require): the refresh route never sends it.
    if (code !== STEP_UP_CODE) t.not(onRefresh(code), undefined, `${code} on the refresh`)
  }
})

/** An app of the plugin on the private Redis, and a browser's login to it (cookies). */
async function browserSession (t: Test, options: Partial<TokenSessionsOptions> = {}): Promise<{ app: FastifyInstance, cookies: string, login: LightMyRequestResponse }> {
  const app = await buildApp(t, { redis: redis.url, keyPrefix: `codes${Math.random()}:`, ...options })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'u1' } })
  t.equal(login.statusCode, 200)
  return { app, cookies: cookieHeader(login), login }
}

const codeOf = (response: LightMyRequestResponse): string => response.json().code

t.test('the plugin\'s answers, situation by situation, as the client reads them', async (t) => {
  t.test('no access cookie (it expired with its token): refresh', async (t) => {
    const { app, login } = await browserSession(t)
    const response = await app.inject({ url: '/me', headers: { cookie: cookieHeader(login, 'session_binding', 'refresh_token') } })
    t.equal(response.statusCode, 401)
    t.equal(onRequest(codeOf(response)), 'refresh', codeOf(response))
  })

  t.test('an expired access token: refresh', async (t) => {
    const { app, cookies } = await browserSession(t, { accessTokenTtl: 1 })
    await sleep(2100)
    const response = await app.inject({ url: '/me', headers: { cookie: cookies } })
    t.equal(codeOf(response), 'FTS_TOKEN_EXPIRED')
    t.equal(onRequest(codeOf(response)), 'refresh')
    const renewed = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(renewed.statusCode, 200, 'and the refresh cures it')
    t.type(renewed.json().expiresIn, 'number', 'answering the expiry the client schedules by')
  })

  t.test('an access token that does not verify (tampered, a retired key): refresh, which decides', async (t) => {
    const { app, login } = await browserSession(t)
    const access = cookiesOf(login).get('access_token')?.value as string
    const tampered = `${access.slice(0, -4)}AAAA`
    const response = await app.inject({ url: '/me', headers: { cookie: `${cookieHeader(login, 'session_binding', 'refresh_token')}; access_token=${tampered}` } })
    t.equal(onRequest(codeOf(response)), 'refresh', codeOf(response))
  })

  t.test('a session ended elsewhere: its access token is refused, the session is over', async (t) => {
    const { app, cookies } = await browserSession(t)
    const me = (await app.inject({ url: '/me', headers: { cookie: cookies } })).json()
    await app.tokenSessions.revokeSession('u1', me.sessionId)
    const response = await app.inject({ url: '/me', headers: { cookie: cookies } })
    t.equal(onRequest(codeOf(response)), 'revoked', codeOf(response))
    const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(onRefresh(codeOf(refresh)), 'revoked', `and its refresh: ${codeOf(refresh)}`)
  })

  t.test('a superseded refresh token (a copy used first): reuse detected', async (t) => {
    const { app, cookies } = await browserSession(t, { reuseGrace: 0 })
    const first = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(first.statusCode, 200)
    const again = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(onRefresh(codeOf(again)), 'reuse-detected', codeOf(again))
  })

  t.test('within the grace window, the same superseded token gets the same successor: what a lost answer\'s retry relies on', async (t) => {
    const { app, cookies } = await browserSession(t, { reuseGrace: 10 })
    const first = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(first.statusCode, 200)
    // The client never saw `first`: it sends the cookies it has again.
    const retry = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(retry.statusCode, 200)
    const after = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader(retry), ...CSRF } })
    t.equal(after.statusCode, 200, 'and the retry\'s cookies carry the session on')
  })

  t.test('the refresh cookie gone (logged out, or expired): the session is over', async (t) => {
    const { app, cookies } = await browserSession(t)
    const logout = await app.inject({ method: 'POST', url: '/auth/logout', headers: { cookie: cookies, ...CSRF } })
    t.equal(logout.statusCode, 204)
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader(logout), ...CSRF } })
    t.equal(onRefresh(codeOf(response)), 'expired', codeOf(response))
  })

  t.test('a session past its lifetime: expired', async (t) => {
    const { app, cookies } = await browserSession(t, { accessTokenTtl: 1, refreshTokenTtl: 60, sessionMaxLifetime: 2 })
    await sleep(2100)
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookies, ...CSRF } })
    t.equal(response.statusCode, 401)
    t.equal(onRefresh(codeOf(response)), 'expired', codeOf(response))
  })

  t.test('the store down: 503 with Retry-After, which the client waits out', async (t) => {
    const own = await startRedis(t)
    const app = await buildApp(t, { redis: own.url, storeTimeout: 200 })
    const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'u1' } })
    await own.stop()
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader(login), ...CSRF } })
    t.ok(RETRY_STATUSES.includes(response.statusCode), String(response.statusCode))
    t.match(response.headers['retry-after'], /^\d+$/)
    await own.start()
  })
})

t.test('a route that needs a stronger login answers the step-up code, which a refresh does not cure', async (t) => {
  const app = await buildApp(t, { redis: redis.url, keyPrefix: `codes${Math.random()}:` }, {
    setup: (app) => app.get('/strong', { onRequest: app.authenticate.require({ acr: 'mfa' }) }, async () => 'ok')
  })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'u1' } })
  const response = await app.inject({ url: '/strong', headers: { cookie: cookieHeader(login) } })
  t.equal(response.statusCode, 401)
  t.equal(codeOf(response), STEP_UP_CODE)
  t.equal(onRequest(codeOf(response)), 'step-up')
  const renewed = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: cookieHeader(login), ...CSRF } })
  t.equal(renewed.statusCode, 200)
  const again = await app.inject({ url: '/strong', headers: { cookie: cookieHeader(renewed) } })
  t.equal(codeOf(again), STEP_UP_CODE, 'after a refresh: still short')
})
