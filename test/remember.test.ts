// "Remember me": a login may ask for a session that ends with the browser. Its cookies
// carry no Max-Age or Expires, it lives at most browserSessionMaxLifetime, and the choice is
// the signed refresh token's (and the store's, for a step-up): no rotation, step-up or
// request turns a session cookie into a persistent one, nor the reverse.
import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { MemoryStore, tokenResponse, type PageRequest, type SessionPage, type StepUpOutcome, type StepUpRequest, type TokenSessionsOptions, type TokenSet } from '../lib/index.js'
import { buildApp, cookieValues, cookiesOf } from './helpers/app.js'
import { KEYS, craft, payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'

const CSRF = { 'x-requested-with': 'fetch' }
const COOKIES = ['access_token', 'refresh_token', 'session_binding']

/** An app whose login takes `remember` from the form, and a step-up route; sessions in a private Redis unless a store is given. */
async function rememberApp (t: Test, options: Partial<TokenSessionsOptions> = {}): Promise<{ app: FastifyInstance, issued: TokenSet[] }> {
  const issued: TokenSet[] = []
  const store = options.store === undefined ? { redis: (await startRedis(t)).url } : {}
  const app = await buildApp(t, { ...store, ...options }, {
    setup: (app) => {
      app.post<{ Body: { userId: string, remember?: boolean, transport?: 'body' } }>('/login-remember', async (request, reply) => {
        const { userId, ...settings } = request.body
        const tokens = await reply.issueTokens(userId, settings)
        issued.push(tokens)
        return tokenResponse(tokens)
      })
      app.post('/reauthenticate', { onRequest: app.authenticate }, async (_request, reply) => {
        const tokens = await reply.stepUp({})
        issued.push(tokens)
        return tokenResponse(tokens)
      })
    }
  })
  return { app, issued }
}

/** Each token cookie a response sets, and whether it persists (carries Max-Age or Expires). */
function persistence (response: LightMyRequestResponse): Record<string, boolean> {
  return Object.fromEntries([...cookiesOf(response)].map(([name, cookie]) => [name, cookie.maxAge !== undefined || cookie.expires !== undefined]))
}

const ALL = (persists: boolean): Record<string, boolean> => Object.fromEntries(COOKIES.map((name) => [name, persists]))

async function loginRemember (app: FastifyInstance, remember: boolean | undefined, userId = 'ada'): Promise<LightMyRequestResponse> {
  const response = await app.inject({ method: 'POST', url: '/login-remember', payload: remember === undefined ? { userId } : { userId, remember } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response
}

async function refreshWith (app: FastifyInstance, cookies: Record<string, string>, url = '/auth/refresh'): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url, cookies, headers: CSRF })
}

t.test('a session not remembered sets its cookies without Max-Age or Expires, and every rotation keeps it so', async (t) => {
  const { app, issued } = await rememberApp(t)
  const login = await loginRemember(app, false)
  t.same(persistence(login), ALL(false), 'no token cookie outlives the browser')
  t.equal(issued[0]?.remembered, false, 'the token set says so')
  t.equal(payloadOf(cookieValues(login).refresh_token as string).rem, false, 'the signed refresh token carries the choice')

  let cookies = cookieValues(login)
  for (const url of ['/auth/refresh', '/auth/refresh?remember=true']) {
    const refreshed = await refreshWith(app, cookies, url)
    t.equal(refreshed.statusCode, 200, url)
    t.same(persistence(refreshed), ALL(false), `${url}: a rotation does not make them persistent`)
    cookies = { ...cookies, ...cookieValues(refreshed) }
  }

  const kept = await loginRemember(app, true)
  t.same(persistence(kept), ALL(true), 'remembered: each cookie lives as long as its token')
  const keptRefreshed = await refreshWith(app, cookieValues(kept))
  t.same(persistence(keptRefreshed), ALL(true), 'a rotation does not turn them into session cookies')
  t.same(persistence(await loginRemember(app, undefined)), ALL(true), 'remembered unless the login says otherwise')

  const listed = await app.inject({ method: 'GET', url: '/auth/sessions', cookies })
  const sessions = listed.json().sessions as Array<{ sessionId: string, remembered: boolean, current: boolean }>
  t.same(sessions.map(({ remembered, current }) => ({ remembered, current })), [
    { remembered: true, current: false },
    { remembered: true, current: false },
    { remembered: false, current: true }
  ], 'the session list tells them apart, newest first')
})

t.test('a native client\'s session not remembered keeps the shorter lifetime through the body', async (t) => {
  const { app } = await rememberApp(t, { browserSessionMaxLifetime: 3600 })
  const response = await app.inject({ method: 'POST', url: '/login-remember', payload: { userId: 'ada', remember: false, transport: 'body' } })
  const tokens = response.json() as { refreshToken: string, refreshExpiresIn: number }
  t.equal(response.headers['set-cookie'], undefined, 'no cookies')
  t.ok(tokens.refreshExpiresIn <= 3600, 'the refresh token lives no longer than the session may')
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: tokens.refreshToken } })
  const rotated = payloadOf(refreshed.json().refreshToken)
  t.ok(refreshed.json().refreshExpiresIn <= 3600, 'the store kept the shorter lifetime')
  t.equal(rotated.rem, false, 'rotated, still not remembered')
  t.equal(rotated.mx, payloadOf(tokens.refreshToken).mx, 'and still ending when it did')
})

t.test('a session not remembered ends at browserSessionMaxLifetime; a remembered one lives on', async (t) => {
  const { app } = await rememberApp(t, { accessTokenTtl: 1, browserSessionMaxLifetime: 2, refreshTokenTtl: 60 })
  const brief = cookieValues(await loginRemember(app, false))
  const kept = cookieValues(await loginRemember(app, true))
  const mx = (cookies: Record<string, string>): number => payloadOf(cookies.refresh_token as string).mx as number
  t.ok(mx(kept) - mx(brief) > 3600, 'the remembered one ends at sessionMaxLifetime')
  const early = await refreshWith(app, brief)
  t.equal(early.statusCode, 200, 'refreshed within its lifetime')
  t.equal(mx(cookieValues(early)), mx(brief), 'a rotation never extends it')
  await new Promise((resolve) => setTimeout(resolve, 2100))
  const late = await refreshWith(app, { ...brief, ...cookieValues(early) })
  t.equal(late.statusCode, 401)
  t.equal(late.json().code, 'FTS_SESSION_EXPIRED', 'over: log in again')
  t.equal((await refreshWith(app, kept)).statusCode, 200, 'the remembered session refreshes')
})

t.test('a step-up keeps the choice the login made: the access token does not carry it, the store does', async (t) => {
  const { app, issued } = await rememberApp(t)
  for (const remember of [false, true]) {
    const login = cookieValues(await loginRemember(app, remember))
    const stepped = await app.inject({ method: 'POST', url: '/reauthenticate', cookies: login, headers: CSRF })
    t.equal(stepped.statusCode, 200)
    t.same(persistence(stepped), ALL(remember), `remember: ${String(remember)}, kept by the step-up`)
    t.equal(issued.at(-1)?.remembered, remember)
    t.equal((issued.at(-1)?.refreshExpiresIn ?? 0) <= 12 * 3600, !remember, 'a session not remembered lives 12 hours at most')
    const after = cookieValues(stepped)
    t.equal(payloadOf(after.refresh_token as string).mx, payloadOf(login.refresh_token as string).mx, 'the same absolute end')
    t.same(persistence(await refreshWith(app, { ...login, ...after })), ALL(remember), 'and by the rotation after it')
  }
})

t.test('a refresh token whose choice was edited is refused, and the session is untouched', async (t) => {
  const { app } = await rememberApp(t)
  const login = cookieValues(await loginRemember(app, false))
  const token = login.refresh_token as string
  const [header, , signature] = token.split('.')
  const { rem: _rem, ...persistent } = payloadOf(token)
  const edited = `${header as string}.${Buffer.from(JSON.stringify(persistent)).toString('base64url')}.${signature as string}`
  const refused = await refreshWith(app, { ...login, refresh_token: edited })
  t.equal(refused.statusCode, 401, 'the signature no longer holds')
  t.equal(refused.json().code, 'FTS_TOKEN_INVALID')
  const odd = craft(JSON.parse(Buffer.from(header as string, 'base64url').toString()), { ...payloadOf(token), rem: true }, KEYS.refresh)
  t.equal((await refreshWith(app, { ...login, refresh_token: odd })).json().code, 'FTS_TOKEN_INVALID', 'rem is false or absent, nothing else, even well signed')
  const real = await refreshWith(app, login)
  t.equal(real.statusCode, 200, 'the real token still rotates')
  t.same(persistence(real), ALL(false))
})

t.test('remember must be a boolean: a form\'s "on" is the app\'s bug, said at once', async (t) => {
  const { app } = await rememberApp(t)
  await t.rejects(app.tokenSessions.issue('ada', { remember: 'on' as unknown as boolean }), { name: 'TypeError', message: /remember must be a boolean/ })
  t.equal((await app.tokenSessions.issue('ada', { remember: false })).remembered, false)
  t.same((await app.tokenSessions.listSessions('ada')).sessions.map((session) => session.remembered), [false], 'the refused login started no session')
})

/** A custom store from before the choice: it keeps none, and answers none. */
class StoreWithoutChoice extends MemoryStore {
  override async list (userId: string, page: PageRequest): Promise<SessionPage> {
    const listed = await super.list(userId, page)
    return { ...listed, sessions: listed.sessions.map(({ remembered: _remembered, ...session }) => session as SessionPage['sessions'][number]) }
  }

  override async stepUp (request: StepUpRequest): Promise<StepUpOutcome> {
    const outcome = await super.stepUp(request)
    if (outcome.status !== 'stepped-up') return outcome
    const { remembered: _remembered, ...answer } = outcome
    return answer as StepUpOutcome
  }
}

t.test('a store that answers no choice is taken as remembering every session: nothing is flipped to a browser session', async (t) => {
  const store = new StoreWithoutChoice()
  t.teardown(() => store.close())
  const { app } = await rememberApp(t, { store })
  const login = cookieValues(await loginRemember(app, true))
  const listed = await app.inject({ method: 'GET', url: '/auth/sessions', cookies: login })
  t.same(listed.json().sessions.map((session: { remembered: boolean }) => session.remembered), [true], 'listed as remembered')
  const stepped = await app.inject({ method: 'POST', url: '/reauthenticate', cookies: login, headers: CSRF })
  t.same(persistence(stepped), ALL(true), 'a step-up keeps the cookies persistent')
  t.equal(payloadOf(cookieValues(stepped).refresh_token as string).rem, undefined, 'and the refresh token remembered')
})
