// Deny by default (`protectRoutes`): every route of the app is authenticated unless it says
// it is public, so that a forgotten hook, or one that was `undefined` because the plugin's
// registration was not awaited, fails closed.
import { generateKeyPairSync, hash, randomUUID, sign } from 'node:crypto'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import tokenSessions, { tokenResponse, type TokenSessionsOptions } from '../lib/index.js'
import { LogCapture, SECRET, login, memoryStore, refresh } from './helpers/app.js'

/**
 * The scenario of the report: the registration not awaited, so `app.authenticate` is still
 * undefined when the route is declared. Fastify takes `onRequest: undefined` for no hook.
 */
async function forgottenAwait (t: Test, options: Partial<TokenSessionsOptions>): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  // Not awaited: the bug under test (the lint rule does not see through Fastify's thenable).
  app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), routes: true, ...options })
  app.get('/secret', { onRequest: app.authenticate }, async (request) => ({ user: request.user ?? null, secret: 'the protected data' }))
  app.post<{ Body: { userId: string } }>('/auth/login', { config: { public: true } }, async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId, { transport: 'body' })))
  await app.ready()
  return app
}

t.test('a forgotten await: the route is open without protectRoutes, and answers 401 with it', async (t) => {
  const open = await forgottenAwait(t, {})
  const leaked = await open.inject({ url: '/secret' })
  t.equal(leaked.statusCode, 200, 'without the option: what the report saw')
  t.same(leaked.json(), { user: null, secret: 'the protected data' })

  const app = await forgottenAwait(t, { protectRoutes: true })
  const refused = await app.inject({ url: '/secret' })
  t.equal(refused.statusCode, 401, 'with it: fails closed')
  t.equal(refused.json().code, 'FTS_TOKEN_MISSING')
  t.notOk(refused.body.includes('the protected data'))
  const { accessToken } = await login(app, 'ada')
  const served = await app.inject({ url: '/secret', headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(served.statusCode, 200, 'a signed-in user gets through')
  t.equal(served.json().user.id, 'ada', 'with request.user set')
  t.equal((await app.inject({ url: '/secret', headers: { authorization: 'Bearer forged.token.here' } })).json().code, 'FTS_TOKEN_INVALID', 'a forged token is refused as anywhere')
})

/** An app with protectRoutes, and routes of every kind the option treats apart. */
async function protectedApp (t: Test, options: Partial<TokenSessionsOptions> = {}, logs?: LogCapture): Promise<FastifyInstance> {
  const app = Fastify(logs === undefined ? {} : { logger: { level: 'warn', stream: logs } })
  t.teardown(() => app.close())
  await app.register(tokenSessions, {
    secret: SECRET, store: memoryStore(t), routes: { jwks: true, token: true }, clientId: 'app', protectRoutes: { publicPrefixes: ['/docs/', '/static'] }, ...options
  })
  app.post<{ Body: { userId: string } }>('/auth/login', { config: { public: true } }, async (request, reply) => tokenResponse(await reply.issueTokens(request.body.userId, { transport: 'body' })))
  app.get('/health', { config: { public: true } }, async () => ({ ok: true }))
  app.get('/forgot', async (request) => ({ user: request.user }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => request.user)
  app.get('/recent', { onRequest: app.authenticate.require({ maxAge: 300 }) }, async () => ({ recent: true }))
  app.get('/docs', async () => 'docs')
  app.get('/docs/json', async () => ({ openapi: '3.1.0' }))
  app.get('/docsx', async () => 'not docs')
  app.get('/static/*', async () => 'a file')
  app.options('/*', async (_request, reply) => reply.code(204).send())
  app.all('/all', async () => ({ all: true }))
  // A plugin registered after: its routes inherit the hook.
  await app.register(async (child) => { child.get('/child', async () => ({ child: true })) })
  await app.ready()
  return app
}

t.test('what stays public: the marked routes, the public prefixes, preflights, 404s and the plugin\'s own routes', async (t) => {
  const app = await protectedApp(t)
  for (const url of ['/health', '/docs', '/docs/json', '/static/app.css']) t.equal((await app.inject({ url })).statusCode, 200, `${url}: public`)
  for (const url of ['/forgot', '/me', '/docsx', '/child', '/recent']) {
    const response = await app.inject({ url })
    t.equal(response.statusCode, 401, `${url}: authenticated`)
    t.equal(response.json().code, 'FTS_TOKEN_MISSING')
  }
  t.equal((await app.inject({ url: '/docs/../forgot' })).statusCode, 401, 'a path that climbs out of a prefix is judged by the route it reaches')
  t.equal((await app.inject({ method: 'OPTIONS', url: '/forgot' })).statusCode, 204, 'a CORS preflight (a route declared for OPTIONS alone)')
  t.equal((await app.inject({ method: 'OPTIONS', url: '/all', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })).statusCode, 401,
    'an OPTIONS request to a route of several methods (app.all) is the app\'s: authenticated')
  t.equal((await app.inject({ url: '/nowhere' })).statusCode, 404, 'an unknown path stays a 404')

  // The plugin's routes keep their own checks: a refresh needs no access token.
  const tokens = await login(app, 'bo')
  t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200, 'refresh')
  t.equal((await app.inject({ url: '/auth/.well-known/jwks.json' })).statusCode, 200, 'jwks')
  const second = await login(app, 'bo')
  const token = await app.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: second.refreshToken, client_id: 'app' }).toString()
  })
  t.equal(token.statusCode, 200, 'the OAuth token route')
  t.equal((await app.inject({ url: '/auth/sessions' })).json().code, 'FTS_TOKEN_MISSING', 'the session list still needs its token')
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })).statusCode, 204, 'logout, with a refresh token and no access token')

  const signedIn = { authorization: `Bearer ${second.accessToken}` }
  for (const url of ['/forgot', '/me', '/child', '/recent']) t.equal((await app.inject({ url, headers: signedIn })).statusCode, 200, `${url}: with a token`)
  t.equal((await app.inject({ url: '/forgot', headers: signedIn })).json().user.id, 'bo', 'request.user is set for a route that declared no hook')
})

/** A device's DPoP key, its thumbprint, and proofs by it. */
function device (): { proof: (htm: string, url: string, accessToken?: string) => string } {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    proof: (htm, url, accessToken) => {
      const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicKey.export({ format: 'jwk' }) })).toString('base64url')
      const claims = { jti: randomUUID(), htm, htu: url, iat: Math.floor(Date.now() / 1000), ...(accessToken === undefined ? {} : { ath: hash('sha256', accessToken, 'base64url') }) }
      const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
      return `${input}.${sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
    }
  }
}

t.test('a route with its own authenticate is checked once: a DPoP proof, remembered in the store, passes', async (t) => {
  // Each proof may be used once: were the request authenticated twice, the second check
  // would find its own proof already seen and refuse it.
  const origin = 'https://api.example.com'
  const app = await protectedApp(t, { publicOrigin: origin, dpop: { sharedReplayCheck: true } })
  const phone = device()
  const bound = await app.inject({ method: 'POST', url: '/auth/login', headers: { dpop: phone.proof('POST', `${origin}/auth/login`) }, payload: { userId: 'cy' } })
  const { accessToken, tokenType } = bound.json()
  t.equal(tokenType, 'DPoP')
  for (const url of ['/me', '/forgot', '/recent']) {
    const response = await app.inject({ url, headers: { authorization: `DPoP ${accessToken}`, dpop: phone.proof('GET', `${origin}${url}`, accessToken) } })
    t.equal(response.statusCode, 200, `${url}: one check, one use of the proof`)
  }
})

t.test('a route that declares a hook as undefined is reported at start-up', async (t) => {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'warn', stream: logs } })
  t.teardown(() => app.close())
  await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
  const meant = undefined as unknown as typeof app.authenticate
  app.get('/open', { onRequest: meant }, async () => 'open')
  app.get('/fine', { onRequest: app.authenticate }, async () => 'fine')
  app.get('/none', async () => 'none')
  await app.ready()
  const warnings = logs.entries().filter((entry) => /declares onRequest as undefined/.test(String(entry.msg)))
  t.equal(warnings.length, 1, 'once, for the one route')
  t.match(warnings[0], { url: '/open', method: 'GET', hooks: ['onRequest'], msg: /The route is open; await app\.register\(tokenSessions, \.\.\.\), or set protectRoutes/ })
})

t.test('protectRoutes is checked at registration', async (t) => {
  const register = async (protectRoutes: unknown): Promise<unknown> => {
    const app = Fastify()
    t.teardown(() => app.close())
    return await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), protectRoutes: protectRoutes as NonNullable<TokenSessionsOptions['protectRoutes']> }).ready().then(() => undefined, (error: unknown) => error)
  }
  for (const good of [true, false, {}, { publicPrefixes: [] }, { publicPrefixes: ['/docs', '/static/'] }]) t.equal(await register(good), undefined, JSON.stringify(good))
  for (const bad of ['yes', null, { publicPrefixes: '/docs' }, { publicPrefixes: ['/'] }, { publicPrefixes: ['docs'] }, { publicPrefixes: [''] }, { publicPrefixes: ['/a b'] }, { publicPrefixes: [7] }]) {
    t.match(await register(bad), { code: 'FTS_INVALID_OPTION', message: /protectRoutes/ }, JSON.stringify(bad))
  }
})

t.test('with protectRoutes, the warning says the route is authenticated all the same, and it is', async (t) => {
  const logs = new LogCapture()
  const app = Fastify({ logger: { level: 'warn', stream: logs } })
  t.teardown(() => app.close())
  await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), protectRoutes: true })
  const meant = undefined as unknown as typeof app.authenticate
  app.get('/open', { preHandler: meant }, async () => 'open')
  await app.ready()
  const warnings = logs.entries().filter((entry) => /declares preHandler as undefined/.test(String(entry.msg)))
  t.match(warnings, [{ url: '/open', msg: /protectRoutes authenticates it all the same/ }])
  t.equal((await app.inject({ url: '/open' })).statusCode, 401, 'and it does')
})
