import { createRequire } from 'node:module'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyPluginCallback } from 'fastify'
import type { Redis } from 'ioredis'
import tokenSessions, { MemoryStore, RedisStore, type TokenSessionsOptions } from '../lib/index.js'
import { resolveOptions } from '../lib/options.js'
import { SECRET, memoryStore } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

/** Registration must fail, with an error that names the option. */
async function refused (t: Test, options: Record<string, unknown>, option: string): Promise<void> {
  const app = Fastify()
  const error = await app.register(tokenSessions, options as TokenSessionsOptions).ready().then(() => undefined, (err: Error) => err)
  await app.close()
  t.match(error, { code: 'FTS_INVALID_OPTION' }, `${option} refused`)
  t.match(error?.message, `Invalid option ${option}:`, `the message names ${option}`)
}

/** One MemoryStore for every resolveOptions() call here (they open nothing). */
const MEMORY = memoryStore(t)

t.test('bad options fail registration and name the option', async (t) => {
  const ok = { secret: SECRET, store: MEMORY }
  /** For the store cases: a secret and nothing else. */
  const bare = { secret: SECRET }
  const cases: Array<[Record<string, unknown>, string]> = [
    [{}, 'secret'],
    [bare, 'redis'],
    [{ ...bare, redis: undefined }, 'redis'],
    [{ ...bare, store: undefined }, 'store'],
    [{ ...bare, redis: undefined, store: MEMORY }, 'redis'],
    [{ secret: 'short' }, 'secret'],
    [{ secret: 42 }, 'secret'],
    [{ secret: SECRET, accessTokenSecret: SECRET }, 'secret'],
    [{ accessTokenSecret: SECRET }, 'refreshTokenSecret'],
    [{ accessTokenSecret: SECRET, refreshTokenSecret: SECRET }, 'refreshTokenSecret'],
    [{ ...ok, accessTokenTtl: 0 }, 'accessTokenTtl'],
    [{ ...ok, accessTokenTtl: 1.5 }, 'accessTokenTtl'],
    [{ ...ok, accessTokenTtl: '900' }, 'accessTokenTtl'],
    [{ ...ok, refreshTokenTtl: 900 }, 'refreshTokenTtl'],
    [{ ...ok, refreshTokenTtl: 10 * 365 * 86400 }, 'refreshTokenTtl'],
    [{ ...ok, reuseGrace: -1 }, 'reuseGrace'],
    [{ ...ok, reuseGrace: 3600 }, 'reuseGrace'],
    [{ ...ok, reuseGrace: '5' }, 'reuseGrace'],
    [{ ...ok, redis: 'redis://x' }, 'store'],
    [{ ...ok, store: { create () {} } }, 'store'],
    [{ ...ok, store: storeWithFeed(undefined) }, 'store'],
    [{ ...ok, store: storeWithFeed({ revocations: async () => [] }) }, 'store'],
    [{ ...ok, keyPrefix: 'x:' }, 'keyPrefix'],
    [{ ...bare, redis: 'http://localhost' }, 'redis'],
    [{ ...bare, redis: {} }, 'redis'],
    [{ ...bare, redis: 'redis://127.0.0.1:1', keyPrefix: 'a{b}' }, 'keyPrefix'],
    [{ ...bare, redis: 'redis://127.0.0.1:1', keyPrefix: 7 }, 'keyPrefix'],
    [{ ...bare, keyPrefix: 'mine:' }, 'keyPrefix'],
    [{ ...ok, storeTimeout: 0 }, 'storeTimeout'],
    [{ ...ok, retryAfter: 1.5 }, 'retryAfter'],
    [{ ...ok, cookies: 'yes' }, 'cookies'],
    [{ ...ok, cookies: { accessTokenName: 'bad name' } }, 'cookies.accessTokenName'],
    [{ ...ok, cookies: { refreshTokenName: 'access_token' } }, 'cookies.refreshTokenName'],
    [{ ...ok, cookies: { path: 'api' } }, 'cookies.path'],
    [{ ...ok, cookies: { refreshPath: '/a;b' } }, 'cookies.refreshPath'],
    [{ ...ok, cookies: { sameSite: 'relaxed' } }, 'cookies.sameSite'],
    [{ ...ok, cookies: { sameSite: 'none', secure: false } }, 'cookies.sameSite'],
    [{ ...ok, cookies: { secure: 'true' } }, 'cookies.secure'],
    [{ ...ok, cookies: { domain: 'a b' } }, 'cookies.domain'],
    [{ ...ok, csrfHeader: 'X Requested' }, 'csrfHeader'],
    [{ ...ok, routes: 'yes' }, 'routes'],
    [{ ...ok, routes: { prefix: 'auth' } }, 'routes.prefix'],
    [{ ...ok, routes: { prefix: '/auth/' } }, 'routes.prefix'],
    [{ ...ok, routes: { refresh: 'no' } }, 'routes.refresh'],
    [{ ...ok, issuer: '' }, 'issuer'],
    [{ ...ok, audience: 7 }, 'audience'],
    [{ ...ok, clientId: '', issuer: 'https://a.example', audience: 'api' }, 'clientId'],
    [{ ...ok, clientId: 7 }, 'clientId'],
    [{ ...ok, dpop: true }, 'dpop'],
    [{ ...ok, dpop: { nonce: true } }, 'dpop.nonce'],
    [{ ...ok, dpop: { nonces: 'yes' } }, 'dpop.nonces'],
    [{ ...ok, dpop: { proofLifetime: 0 } }, 'dpop.proofLifetime'],
    [{ ...ok, dpop: { proofLifetime: 601 } }, 'dpop.proofLifetime'],
    [{ ...ok, dpop: { nonces: true, nonceLifetime: 5 } }, 'dpop.nonceLifetime'],
    [{ ...ok, routes: { token: 'no' } }, 'routes.token'],
    [{ ...ok, routes: { revoke: { cors: true } } }, 'routes.revoke.cors'],
    [{ ...ok, onReuseDetected: 'alert' }, 'onReuseDetected'],
    [{ ...ok, onLogin: {} }, 'onLogin'],
    [{ ...ok, sessionMaxLifetime: 900 }, 'sessionMaxLifetime'],
    [{ ...ok, sessionMaxLifetime: 0 }, 'sessionMaxLifetime'],
    [{ ...ok, clientInfo: 'all' }, 'clientInfo'],
    [{ ...ok, clientInfo: { ip: 'no' } }, 'clientInfo.ip'],
    [{ ...ok, routes: { sessions: 1 } }, 'routes.sessions'],
    [{ ...ok, routes: { refresh: { onRequest: [] } } }, 'routes.refresh.onRequest'],
    [{ ...ok, routes: { logout: { config: 'limited' } } }, 'routes.logout.config'],
    [{ ...ok, revocationFeed: 'on' }, 'revocationFeed'],
    [{ ...ok, revocationFeed: { onOutage: 'maybe' } }, 'revocationFeed.onOutage'],
    [{ ...ok, revocationFeed: { maxOutage: -1 } }, 'revocationFeed.maxOutage'],
    [{ ...ok, acessTokenTtl: 900 }, 'acessTokenTtl']
  ]
  for (const [options, option] of cases) await refused(t, options, option)
})

/** Every method of a session store, and `revocationFeed` as given (a store missing its feed). */
function storeWithFeed (revocationFeed: unknown): Record<string, unknown> {
  const store = new MemoryStore()
  store.close().catch(() => {})
  const methods = ['create', 'rotate', 'revoke', 'revokeAll', 'list', 'isLive', 'time', 'ping', 'close'] as const
  return { ...Object.fromEntries(methods.map((name) => [name, store[name].bind(store)])), revocationFeed }
}

t.test('defaults', async (t) => {
  const options = resolveOptions({ store: MEMORY, secret: SECRET }, {})
  t.ok(Object.isFrozen(options))
  t.match(options, {
    accessTokenTtl: 900,
    refreshTokenTtl: 86400,
    reuseGraceMs: 10_000,
    storeTimeout: 1000,
    retryAfter: 1,
    csrfHeader: 'x-requested-with',
    routes: null,
    sessionMaxLifetime: 30 * 86400,
    clientInfo: { ip: true, userAgent: true },
    hooks: {},
    cookies: { accessTokenName: 'access_token', refreshTokenName: 'refresh_token', path: '/', refreshPath: '/', secure: false, sameSite: 'strict' }
  })
  t.not((options.keys.access.active.verifyKey as Buffer).toString('hex'), options.keys.refresh.toString('hex'), 'one secret, two different keys')
  t.equal(resolveOptions({ store: MEMORY, secret: SECRET, routes: true }, {}).cookies?.refreshPath, '/auth', 'the refresh cookie is scoped to the routes')
  t.equal(resolveOptions({ store: MEMORY, secret: SECRET, routes: { prefix: '' } }, {}).cookies?.refreshPath, '/')
  const routes = (given: Record<string, unknown>) => resolveOptions({ store: MEMORY, secret: SECRET, routes: given }, {}).routes
  const limit = { config: { rateLimit: { max: 5 } } }
  t.same(routes({ refresh: limit })?.token, limit, 'the token route takes the refresh route\'s config (its rate limit) by default')
  t.equal(routes({ refresh: false })?.token, null, 'and is off when refresh is')
  t.same(routes({ refresh: false, token: true })?.token, {}, 'unless it is asked for')
  t.same(routes({})?.revoke, {}, 'revocation is on by default')
  t.equal(resolveOptions({ store: MEMORY, secret: SECRET }, { NODE_ENV: 'production' }).cookies?.secure, true)
  t.equal(resolveOptions({ store: MEMORY, secret: SECRET, csrfHeader: false, cookies: false }, {}).csrfHeader, null)
  const separate = resolveOptions({ store: MEMORY, accessTokenSecret: SECRET, refreshTokenSecret: `${SECRET}-2` }, {})
  t.not(separate.keys.refresh.toString('hex'), options.keys.refresh.toString('hex'), 'the refresh key comes from the refresh secret')
  t.ok(resolveOptions({ store: MEMORY, secret: Buffer.alloc(32, 1) }, {}), 'a Buffer secret')
})

t.test('routes are opt-in and each can be left out', async (t) => {
  const none = Fastify()
  await none.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
  t.teardown(() => none.close())
  t.equal((await none.inject({ method: 'POST', url: '/auth/refresh' })).statusCode, 404)
  const some = Fastify()
  await some.register(tokenSessions, { secret: SECRET, store: memoryStore(t), routes: { prefix: '/session', logoutAll: false } })
  t.teardown(() => some.close())
  some.post('/custom-refresh', some.refresh)
  t.equal((await some.inject({ method: 'POST', url: '/session/refresh' })).statusCode, 401)
  t.equal((await some.inject({ method: 'POST', url: '/session/logout' })).statusCode, 204)
  t.equal((await some.inject({ method: 'POST', url: '/session/logout-all' })).statusCode, 404)
  t.equal((await some.inject({ method: 'POST', url: '/custom-refresh' })).statusCode, 401, 'fastify.refresh mounts anywhere')
})

t.test('a route given options is on, and its config is the route\'s Fastify config', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const seen: Record<string, unknown> = {}
  app.addHook('onRoute', (route) => { seen[`${route.method as string} ${route.url}`] = route.config })
  await app.register(tokenSessions, {
    secret: SECRET,
    store: memoryStore(t),
    routes: { refresh: { config: { marker: 'refresh' } }, sessions: { config: { marker: 'sessions' } }, jwks: {}, logoutAll: false }
  })
  t.match(seen['POST /auth/refresh'], { marker: 'refresh' })
  t.match(seen['GET /auth/sessions'], { marker: 'sessions' }, 'both session routes get the config')
  t.match(seen['DELETE /auth/sessions/:id'], { marker: 'sessions' })
  t.ok('POST /auth/logout' in seen, 'logout is registered')
  t.equal((seen['POST /auth/logout'] as { marker?: string } | undefined)?.marker, undefined, 'other routes keep their own config')
  t.notOk('POST /auth/logout-all' in seen, 'a route set to false stays off')
  t.equal((await app.inject({ method: 'GET', url: '/auth/.well-known/jwks.json' })).statusCode, 200, 'options alone turn a route on')
  const refresh = app.inject({ method: 'POST', url: '/auth/refresh' })
  t.equal((await refresh).statusCode, 401, 'the route still runs the plugin\'s handler')
})

t.test('store ownership', async (t) => {
  const redis = await startRedis(t)

  t.test('an injected ioredis client is never closed', async (t) => {
    const client = redis.client()
    t.teardown(() => client.quit())
    const app = Fastify()
    await app.register(tokenSessions, { secret: SECRET, redis: client })
    await app.close()
    t.equal(await client.ping(), 'PONG')
  })

  t.test('an injected store is never closed', async (t) => {
    const store = new RedisStore({ url: redis.url })
    t.teardown(() => store.close())
    const app = Fastify()
    await app.register(tokenSessions, { secret: SECRET, store })
    await app.close()
    t.equal(await (store.client as Redis).ping(), 'PONG')
  })

  t.test('a client the plugin creates from a URL is closed with the app', async (t) => {
    const app = Fastify()
    await app.register(tokenSessions, { secret: SECRET, redis: redis.url, keyPrefix: 'mine:' })
    await app.ready()
    const store = app.tokenSessions.store as RedisStore
    await app.tokenSessions.issue('owner')
    t.match(store.sessionKey('owner', 'x'), /^mine:\{owner\}:s:x$/)
    await app.close()
    t.equal(store.client.status, 'end')
  })

  t.test('a MemoryStore is used only when chosen, and then with a warning in any environment', async (t) => {
    for (const env of [undefined, 'development', 'test', 'production']) {
      const previous = process.env.NODE_ENV
      if (env === undefined) delete process.env.NODE_ENV
      else process.env.NODE_ENV = env
      const warnings: string[] = []
      const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => warnings.push(line) } } })
      const store = memoryStore(t)
      await app.register(tokenSessions, { secret: SECRET, store })
      await app.ready()
      await app.close()
      if (previous === undefined) delete process.env.NODE_ENV
      else process.env.NODE_ENV = previous
      t.equal(app.tokenSessions.store, store, `NODE_ENV ${String(env)}: the store given`)
      t.match(warnings.join(''), /MemoryStore\).*development and tests only/, `NODE_ENV ${String(env)}: warned`)
    }
  })

  t.test('an app that decorated request.user already keeps its decorator', async (t) => {
    const app = Fastify()
    app.decorateRequest('user', null as never)
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
    t.teardown(() => app.close())
    await app.ready()
    t.ok(app.hasRequestDecorator('user'))
  })

  t.test('an app that registered @fastify/cookie itself keeps its registration', async (t) => {
    const { default: cookie } = await import('@fastify/cookie')
    const app = Fastify()
    await app.register(cookie, { secret: 'cookie-signing-secret' })
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
    t.teardown(() => app.close())
    await app.ready()
    t.ok(app.hasReplyDecorator('setCookie'))
  })
})

t.test('decorator clashes', async (t) => {
  // Loaded without its typings, which would declare `request.user` for this whole file.
  const fastifyJwt = createRequire(import.meta.url)('@fastify/jwt') as FastifyPluginCallback<Record<string, unknown>>
  const clash = async (setup: (app: FastifyInstance) => void, options: Record<string, unknown>, option: string, name: string): Promise<void> => {
    const app = Fastify()
    setup(app)
    const error = await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), ...options }).ready().then(() => undefined, (err: Error) => err)
    await app.close()
    t.match(error, { code: 'FTS_INVALID_OPTION', message: `Invalid option ${option}: "${name}" is a decorator here already` }, `${option}: the plugin's error, naming the option`)
    t.match(error?.message, /docs\/options\.md#decorators/, 'and where it is documented')
  }

  t.test('a name the app took first: the plugin\'s error names the decorators option', async () => {
    // @fastify/jwt's README recipe.
    await clash((app) => { app.decorate('authenticate', async () => {}) }, {}, 'decorators.authenticate', 'authenticate')
    await clash((app) => { app.decorate('refreshSession', null) }, { decorators: { refresh: 'refreshSession' } }, 'decorators.refresh', 'refreshSession')
    await clash((app) => { app.decorateReply('issueTokens', null as never) }, {}, 'decorators.issueTokens', 'issueTokens')
    await clash((app) => { app.decorateRequest('session', null) }, { decorators: { user: 'session' } }, 'decorators.user', 'session')
  })

  t.test('the plugin registered twice on one instance', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
    const error = await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) }).then(() => undefined, (err: Error) => err)
    t.match(error, { code: 'FTS_INVALID_OPTION', message: /^Invalid option decorators.tokenSessions: "tokenSessions" is a decorator here already .*registered twice/ })
  })

  t.test('in a child scope, the names of the parent\'s may be taken again, as Fastify allows', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
    let child: FastifyInstance | undefined
    await app.register(async (scope) => {
      await scope.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
      child = scope
    })
    await app.ready()
    t.not(child?.tokenSessions, app.tokenSessions, 'the child scope has its own')
  })

  t.test('@fastify/jwt registered after the plugin shares request.user', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), decorators: { authenticate: 'authenticateSession' } as never })
    // It declares `request.user` itself, from a plugin that is not async: a clash there
    // would escape the loader and end the process.
    await app.register(fastifyJwt, { secret: 'service-secret-0123456789-abcdefghijklmnopqrstuvwxyz' })
    const loose = app as unknown as Record<string, unknown>
    app.get('/me', { onRequest: loose.authenticateSession as never }, async (request) => ({ user: (request as unknown as { user: unknown }).user }))
    app.get('/anyone', async (request) => ({ user: (request as unknown as { user: unknown }).user }))
    app.post('/login', async (_request, reply) => await (reply as unknown as { issueTokens: (id: string) => Promise<{ accessToken: string }> }).issueTokens('alice'))
    await app.ready()
    const { accessToken } = (await app.inject({ method: 'POST', url: '/login', headers: { 'x-token-transport': 'body' } })).json() as { accessToken: string }
    t.match((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })).json(), { user: { id: 'alice' } })
    t.same((await app.inject({ method: 'GET', url: '/anyone' })).json(), { user: null }, 'null until authenticated')
  })

  t.test('an app that declares request.user after the plugin may; the plugin sets it null otherwise', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
    t.doesNotThrow(() => app.decorateRequest('user', null as never), 'no clash')
    const plain = Fastify()
    t.teardown(() => plain.close())
    await plain.register(tokenSessions, { secret: SECRET, store: memoryStore(t) })
    plain.get('/anyone', async (request) => ({ user: (request as unknown as { user: unknown }).user, declared: plain.hasRequestDecorator('user') }))
    t.same((await plain.inject({ method: 'GET', url: '/anyone' })).json(), { user: null, declared: false }, 'null before any authenticate, undeclared')
  })
})
