import { createSecretKey, generateKeyPairSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyPluginCallback } from 'fastify'
import { Redis } from 'ioredis'
import tokenSessions, { MemoryStore, RedisStore, type TokenSessionsOptions } from '../lib/index.js'
import { resolveOptions } from '../lib/options.js'
import { LogCapture, SECRET, memoryStore } from './helpers/app.js'
import { freePort, startRedis } from './helpers/redis.mjs'

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
    [{ ...bare, redis: 'redis://127.0.0.1:abc' }, 'redis'],
    [{ ...bare, redis: 'redis://127.0.0.1:99999' }, 'redis'],
    [{ ...bare, redis: 'redis://127.0.0.1:1/abc' }, 'redis'],
    [{ ...bare, redis: 'redis://:pa%zz@127.0.0.1:1' }, 'redis'],
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
    [{ ...ok, cookies: { domain: 'example.com' }, publicOrigin: 'https://app.example.org' }, 'cookies.domain'],
    [{ ...ok, cookies: { domain: 'app.example.com' }, publicOrigin: 'https://example.com' }, 'cookies.domain'],
    [{ ...ok, cookies: { domain: 'localhost' }, publicOrigin: 'http://127.0.0.1:3000' }, 'cookies.domain'],
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
    [{ ...ok, accessTokenTtl: 86_401 }, 'accessTokenTtl'],
    [{ ...ok, accessTokenTtl: 86_400 }, 'accessTokenTtl'],
    [{ ...ok, accessTokenTtl: 3600, refreshTokenTtl: 1800 }, 'refreshTokenTtl'],
    [{ ...ok, accessTokenTtl: 86_400, refreshTokenTtl: 90_000, sessionMaxLifetime: 86_400 }, 'sessionMaxLifetime'],
    [{ ...ok, sessionMaxLifetime: 0 }, 'sessionMaxLifetime'],
    [{ ...ok, browserSessionMaxLifetime: 900 }, 'browserSessionMaxLifetime'],
    [{ ...ok, sessionMaxLifetime: 3600, browserSessionMaxLifetime: 3601 }, 'browserSessionMaxLifetime'],
    [{ ...ok, browserSessionMaxLifetime: '12h' }, 'browserSessionMaxLifetime'],
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

t.test('a cookies.domain that publicOrigin\'s host cannot receive is refused at registration, with both named', async (t) => {
  const error = await registered({ secret: SECRET, store: MEMORY, cookies: { domain: 'example.com' }, publicOrigin: 'https://app.example.org' })
  t.match(error?.message, /^Invalid option cookies\.domain: "example\.com" does not match app\.example\.org, the host of publicOrigin: browsers would drop every token cookie/)
  for (const [domain, publicOrigin] of [['example.com', 'https://app.example.com'], ['.example.com', 'https://EXAMPLE.com:8443'], ['127.0.0.1', 'http://127.0.0.1:3000']]) {
    t.equal(await registered({ secret: SECRET, store: MEMORY, cookies: { domain }, publicOrigin }), undefined, `${domain} for ${publicOrigin}`)
  }
  t.equal(await registered({ secret: SECRET, store: MEMORY, cookies: false, publicOrigin: 'https://app.example.org' }), undefined, 'no cookies, nothing to check')
})

t.test('a bad redis URL fails naming redis, and never quotes the URL (it may hold a password)', async (t) => {
  for (const url of ['redis://:hunter2@127.0.0.1:abc', 'redis://:hunter2@127.0.0.1:1/abc', 'redis://:hunter2%zz@127.0.0.1:1', 'redis://:hunter2@127.0.0.1:70000']) {
    const error = await registered({ secret: SECRET, redis: url })
    t.match(error, { code: 'FTS_INVALID_OPTION', message: /^Invalid option redis: .*redis:\/\/\[\[user\]:password@\]host/ }, `${url.replace('hunter2', '…')}: names redis and the URL's shape`)
    t.notMatch(`${String(error?.message)} ${String(error?.stack)} ${String((error as { cause?: unknown } | undefined)?.cause)}`, /hunter2/, 'the password appears nowhere')
  }
  t.throws(() => new RedisStore({ url: 'redis://:hunter2@127.0.0.1:abc' }), { code: 'FTS_INVALID_OPTION', message: /^Invalid option url: / }, 'RedisStore names its own option')
  t.ok(resolveOptions({ secret: SECRET, redis: 'rediss://user:p%40ss@127.0.0.1:6380/3' }, {}), 'a TLS URL with a user, an escaped password and a database')
})

t.test('a database number Redis cannot have is refused at registration, in the path or as ?db= (ioredis reads both)', async (t) => {
  const urls = [
    'redis://:hunter2@127.0.0.1:1/2147483648', 'redis://:hunter2@127.0.0.1:1/99999999999999999999',
    'redis://:hunter2@127.0.0.1:1?db=abc', 'redis://:hunter2@127.0.0.1:1/?db=', 'redis://:hunter2@127.0.0.1:1?db=-1',
    'redis://:hunter2@127.0.0.1:1?db=2147483648', 'redis://:hunter2@127.0.0.1:1/2?db=x'
  ]
  for (const url of urls) {
    const error = await registered({ secret: SECRET, redis: url })
    t.match(error, { code: 'FTS_INVALID_OPTION', message: /^Invalid option redis: must name a database by a whole number from 0 to 2147483647/ }, `${url.replace('hunter2', '…')}: refused`)
    t.notMatch(`${String(error?.message)} ${String(error?.stack)}`, /hunter2/, 'the password appears nowhere')
  }
  t.throws(() => new RedisStore({ url: 'redis://127.0.0.1:1?db=abc' }), { code: 'FTS_INVALID_OPTION', message: /^Invalid option url: / }, 'RedisStore names its own option')
  for (const url of ['redis://127.0.0.1:1/2147483647', 'redis://127.0.0.1:1?db=2', 'redis://127.0.0.1:1/0']) {
    t.ok(resolveOptions({ secret: SECRET, redis: url }, {}), `${url}: accepted`)
  }
})

t.test('an uppercase scheme means what it says: REDISS:// turns TLS on, REDIS:// connects in plain', async (t) => {
  const redis = await startRedis(t)
  const tls = new RedisStore({ url: `REDISS://127.0.0.1:${redis.port}` })
  t.teardown(() => tls.close())
  t.ok((tls.client as Redis).options.tls, 'REDISS://: the store\'s client uses TLS')
  const resolved = resolveOptions({ secret: SECRET, redis: `ReDiSs://127.0.0.1:${redis.port}/2` }, {}).store
  t.match(resolved, { kind: 'redis', options: { url: `rediss://127.0.0.1:${redis.port}/2` } }, 'the plugin hands on the URL with its scheme in lowercase, the rest as given')
  const app = Fastify()
  await app.register(tokenSessions, { secret: SECRET, redis: `REDIS://127.0.0.1:${redis.port}/3` }).ready()
  t.teardown(() => app.close())
  const client = (app.tokenSessions.store as RedisStore).client as Redis
  t.notOk(client.options.tls, 'REDIS://: no TLS')
  t.equal(client.options.db, 3, 'and the rest of the URL as given')
  t.equal(await client.ping(), 'PONG', 'it connects')
})

t.test('every message docs/troubleshooting.md quotes under FTS_INVALID_OPTION is one registration gives', async (t) => {
  const redis = await startRedis(t)
  const page = readFileSync(new URL('../docs/troubleshooting.md', import.meta.url), 'utf8')
  const section = page.slice(page.indexOf('## FTS_INVALID_OPTION'), page.indexOf('\n## ', page.indexOf('## FTS_INVALID_OPTION') + 1))
  // Quotes that begin the message, or its end after "…"; <name> and N stand for a name and a number.
  const quotes = [...section.replaceAll(/\s*\n\s*/g, ' ').matchAll(/`((?:Invalid option |… )[^`]+)`/g)].map((match) => match[1] as string)
    .filter((quote) => !quote.includes('<what is wrong>'))
  t.ok(quotes.length >= 8, `${quotes.length} messages quoted`)
  const taken = Fastify()
  taken.decorate('authenticate', async () => {})
  const cases: Array<[Record<string, unknown>, FastifyInstance?]> = [
    [{ secret: SECRET }], [{}], [{ secret: SECRET, redis: 'redis://127.0.0.1:abc' }], [{ secret: SECRET, redis: 'redis://127.0.0.1:1/abc' }],
    [{ secret: SECRET, redis: `${redis.url}/99` }], [{ secret: SECRET, store: MEMORY, accessTokenTtl: 900_000 }],
    [{ secret: SECRET, store: MEMORY, accessTokenTtl: 3600, refreshTokenTtl: 1800 }], [{ secret: SECRET, store: MEMORY }, taken]
  ]
  const messages: string[] = []
  for (const [options, app = Fastify()] of cases) {
    messages.push(await app.register(tokenSessions, options as TokenSessionsOptions).ready().then(() => '', (err: Error) => err.message))
    await app.close()
  }
  for (const quote of quotes) {
    const pattern = quote.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&').replaceAll('…', '.*').replaceAll(/<[^>]+>/g, '\\S+').replaceAll(/\bN\b/g, '\\d+')
    const shape = new RegExp(quote.startsWith('…') ? pattern : `^${pattern}`)
    t.ok(messages.some((message) => shape.test(message)), `"${quote}" is a message given`)
  }
})

t.test('lifetime errors say seconds and blame the lifetime that is wrong', async (t) => {
  const lifetime = async (options: Record<string, unknown>): Promise<string> => String((await registered({ secret: SECRET, store: MEMORY, ...options }))?.message)
  t.match(await lifetime({ accessTokenTtl: 900_000 }), /^Invalid option accessTokenTtl: must be a whole number of seconds from 1 to 86400: 900000 seconds is 10\.4 days \(milliseconds given for seconds\?\)/,
    '15 minutes in milliseconds: accessTokenTtl, not refreshTokenTtl')
  t.match(await lifetime({ accessTokenTtl: 86_400 }), /^Invalid option accessTokenTtl: is 86400 seconds, not less than refreshTokenTtl \(86400 seconds, its default\)/,
    'the default refresh lifetime is not what was set')
  t.match(await lifetime({ accessTokenTtl: 3600, refreshTokenTtl: 1800 }), /^Invalid option refreshTokenTtl: is 1800 seconds: it must exceed accessTokenTtl \(3600 seconds\)/)
  t.match(await lifetime({ refreshTokenTtl: 86_400_000 }), /^Invalid option refreshTokenTtl: .* 86400000 seconds is 1000\.0 days \(milliseconds given for seconds\?\)/)
  t.match(await lifetime({ sessionMaxLifetime: 400 * 86_400 * 1000 }), /^Invalid option sessionMaxLifetime: must be a whole number of seconds from 1 to 31536000$/, 'too long even in milliseconds: no guess')
  t.equal(resolveOptions({ secret: SECRET, store: MEMORY, accessTokenTtl: 86_400, refreshTokenTtl: 86_401 }, {}).accessTokenTtl, 86_400, 'a day is the longest access-token lifetime')
})

t.test('a session not remembered lives 12 hours by default, shorter than a remembered one, and a default never fails valid options', async (t) => {
  const resolved = (options: Record<string, unknown>): number => resolveOptions({ secret: SECRET, store: MEMORY, ...options }, {}).browserSessionMaxLifetime
  t.equal(resolved({}), 12 * 3600, '12 hours')
  t.equal(resolved({ sessionMaxLifetime: 3600 }), 3600, 'sessionMaxLifetime when shorter')
  t.equal(resolved({ accessTokenTtl: 86_400, refreshTokenTtl: 90_000 }), 90_000, 'access tokens of a day: one idle timeout, not a refusal, nor as long as a remembered session')
  t.equal(resolved({ accessTokenTtl: 86_400, refreshTokenTtl: 90_000, sessionMaxLifetime: 86_401 }), 86_401, 'and never longer than sessionMaxLifetime')
  t.equal(resolved({ browserSessionMaxLifetime: 7200 }), 7200, 'as given')
  t.equal(resolved({ sessionMaxLifetime: 3600, browserSessionMaxLifetime: 3600 }), 3600, 'as long as a remembered one at most')
  const lifetime = async (options: Record<string, unknown>): Promise<string> => String((await registered({ secret: SECRET, store: MEMORY, ...options }))?.message)
  t.match(await lifetime({ sessionMaxLifetime: 3600, browserSessionMaxLifetime: 7200 }),
    /^Invalid option browserSessionMaxLifetime: is 7200 seconds: a session not remembered cannot outlive sessionMaxLifetime \(3600 seconds\)/)
  t.match(await lifetime({ browserSessionMaxLifetime: 600 }), /^Invalid option browserSessionMaxLifetime: is 600 seconds: it must exceed accessTokenTtl \(900 seconds\)/)
  t.match(await lifetime({ browserSessionMaxLifetime: 43_200_000 }), /milliseconds given for seconds\?/)
})

t.test('a secret that meets the length minimum but looks guessable is accepted with one warning, naming the option and why', async (t) => {
  const warnings = async (options: Record<string, unknown>): Promise<Array<Record<string, unknown>>> => {
    const logs = new LogCapture()
    const app = Fastify({ logger: { level: 'warn', stream: logs } })
    await app.register(tokenSessions, { store: MEMORY, ...options } as TokenSessionsOptions).ready()
    await app.close()
    const logged = logs.entries().filter((entry) => String(entry.msg).includes('looks guessable'))
    for (const entry of logged) {
      for (const value of Object.values(options)) {
        if (typeof value === 'string') t.notOk(String(entry.msg).includes(value), 'the warning never holds the secret')
      }
    }
    return logged
  }
  const repeated = 'a'.repeat(32)
  t.match(await warnings({ secret: repeated }), [{ option: 'secret', msg: /secret looks guessable: it has 1 distinct byte value \(fewer than 6\)\..*openssl rand/ }])
  t.match(await warnings({ secret: '0123'.repeat(8) }), [{ option: 'secret', msg: /it has 4 distinct byte values/ }])
  t.match(await warnings({ secret: 'secret12'.repeat(4) }), [{ option: 'secret', msg: /it is its first 8 bytes repeated/ }])
  t.match(await warnings({ secret: '0123456789abcdef'.repeat(2) }), [{ option: 'secret', msg: /it is its first 16 bytes repeated/ }], 'twice is enough')
  t.match(await warnings({ secret: `${'0123456789abcdef'.repeat(2)}01234` }), [{ option: 'secret', msg: /first 16 bytes repeated/ }], 'a repeat cut short counts')
  t.same(await warnings({ secret: `${'0123456789abcdef'.repeat(2)}x` }), [], 'a run repeated with one byte changed is not called weak')
  t.same(await warnings({ secret: `${'0123456789abcdef'}${'fedcba9876543210'}` }), [], 'no run repeated')
  t.same(await warnings({ secret: SECRET }), [], 'the tests\' own secret passes')
  t.same(await warnings({ secret: randomBytes(32) }), [], 'random bytes pass')
  t.same(await warnings({ secret: randomBytes(16).toString('hex') }), [], '16 random bytes as hex (32 characters) pass')
  const options = async (given: Record<string, unknown>): Promise<unknown[]> => (await warnings(given)).map((entry) => entry.option)
  t.same(await options({ secret: repeated }), ['secret'], 'one warning for one secret')
  t.same(await options({ accessTokenSecret: repeated, refreshTokenSecret: 'b'.repeat(32) }), ['accessTokenSecret', 'refreshTokenSecret'], 'each secret option, once')
  const { privateKey } = generateKeyPairSync('ed25519')
  const keys = [
    { kid: 'weak-text', algorithm: 'HS256', key: repeated },
    { kid: 'weak-object', algorithm: 'HS384', key: createSecretKey(Buffer.alloc(48, 7)) },
    { kid: 'strong', algorithm: 'HS256', key: randomBytes(32) },
    { kid: 'signing', algorithm: 'EdDSA', key: privateKey }
  ]
  t.same(await options({ secret: SECRET, accessTokenKeys: keys, activeKid: 'signing' }),
    ['accessTokenKeys[0].key', 'accessTokenKeys[1].key'], 'the HMAC signing keys too, as text or KeyObject')
})

/** What registering the plugin with these options fails with, if it does. */
async function registered (options: Record<string, unknown>): Promise<(Error & { code?: string }) | undefined> {
  const app = Fastify()
  const error = await app.register(tokenSessions, options as TokenSessionsOptions).ready().then(() => undefined, (err: Error) => err)
  await app.close()
  return error
}

/** Every method of a session store, and `revocationFeed` as given (a store missing its feed). */
function storeWithFeed (revocationFeed: unknown): Record<string, unknown> {
  const store = new MemoryStore()
  store.close().catch(() => {})
  const methods = ['create', 'rotate', 'stepUp', 'revoke', 'revokeAll', 'list', 'isLive', 'time', 'ping', 'close'] as const
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

  t.test('a database the Redis does not have fails start-up, naming the option; one it has is used', async (t) => {
    const inspect = redis.client()
    t.teardown(() => inspect.quit())
    const connections = async (): Promise<number> => String(await inspect.call('CLIENT', 'LIST')).split('\n').filter(Boolean).length
    const before = await connections()
    t.match(await registered({ secret: SECRET, redis: `${redis.url}/99` }), { code: 'FTS_INVALID_OPTION', message: /^Invalid option redis: names database 99, which this Redis does not have/ })
    t.equal(await connections(), before, 'the refused store closed its connection')
    const client = new Redis(redis.port, '127.0.0.1', { db: 99 })
    client.on('error', () => {})
    t.teardown(() => client.disconnect())
    t.match(await registered({ secret: SECRET, redis: client }), { message: /^Invalid option redis: names database 99/ }, 'a client\'s db too')
    t.equal(client.status, 'ready', 'the client given stays open')
    await t.rejects(new RedisStore({ client }).checkSetup(), { message: /^Invalid option client: names database 99/ }, 'RedisStore names its own option: client')
    const store = new RedisStore({ url: `${redis.url}/99` })
    t.teardown(() => store.close())
    await t.rejects(store.checkSetup(), { message: /^Invalid option url: names database 99/ }, 'RedisStore names its own option')

    const app = Fastify()
    await app.register(tokenSessions, { secret: SECRET, redis: `${redis.url}/1` }).ready()
    await app.tokenSessions.issue('in-db-1')
    await app.close()
    t.same(await inspect.keys('*{in-db-1}*'), [], 'nothing in database 0')
    await inspect.select(1)
    t.ok((await inspect.keys('*{in-db-1}*')).length > 0, 'the session is in database 1')
    await inspect.select(0)

    const beyond: Array<[number, string]> = [
      [2147483648, 'which Redis refuses as "value is out of range", not "DB index is out of range"'],
      [1e20, 'which Redis refuses as "value is not an integer or out of range"'],
      [-1, 'negative, which ioredis selects all the same']
    ]
    for (const [db, why] of beyond) {
      const client = new Redis(redis.port, '127.0.0.1', { db })
      client.on('error', () => {})
      t.teardown(() => client.disconnect())
      t.match(await registered({ secret: SECRET, redis: client }), { code: 'FTS_INVALID_OPTION', message: `Invalid option redis: names database ${db}, which this Redis does not have` },
        `a client's db ${db}, ${why}`)
    }
    const lazy = new Redis(redis.port, '127.0.0.1', { db: 99, lazyConnect: true })
    lazy.on('error', () => {})
    t.teardown(() => lazy.disconnect())
    t.match(await registered({ secret: SECRET, redis: lazy }), { message: /^Invalid option redis: names database 99/ }, 'a client not connected yet too')

    const down = `redis://127.0.0.1:${await freePort()}/99`
    t.equal(await registered({ secret: SECRET, redis: down, storeTimeout: 500 }), undefined, 'a Redis that does not answer cannot be checked: the app starts')
  })

  t.test('the database check leaves a client the app switched with select() on the database it switched to', async (t) => {
    const client = new Redis(redis.port, '127.0.0.1', { db: 2 })
    t.teardown(() => client.quit())
    await client.select(5)
    const app = Fastify()
    await app.register(tokenSessions, { secret: SECRET, redis: client }).ready()
    await app.close()
    t.match(String(await client.call('CLIENT', 'INFO')), / db=5 /, 'the connection is still on database 5')
    const store = new RedisStore({ client })
    await store.checkSetup()
    t.match(String(await client.call('CLIENT', 'INFO')), / db=5 /, 'RedisStore.checkSetup too')
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

  t.test('request.user null costs no hook of its own: the plugin adds one onRequest hook to the app\'s routes, with @fastify/jwt before, after or absent', async (t) => {
    for (const [jwt, user] of [['absent', 'user'], ['before', 'user'], ['after', 'user'], ['absent', 'session']] as const) {
      const app = Fastify()
      t.teardown(() => app.close())
      const register = async (): Promise<void> => { await app.register(fastifyJwt, { secret: 'service-secret-0123456789-abcdefghijklmnopqrstuvwxyz' }) }
      if (jwt === 'before') await register()
      await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), routes: false, decorators: { authenticate: 'authenticateSession', user } as never })
      if (jwt === 'after') await register()
      app.get('/plain', async (request) => ({ user: (request as unknown as Record<string, unknown>)[user] }))
      await app.ready()
      const hooks = /\(onRequest\) (\[.*\])/.exec(app.printRoutes({ includeHooks: true, commonPrefix: false }))?.[1]
      const names: string[] = JSON.parse(hooks ?? '[]')
      t.equal(names.length, 1, `@fastify/jwt ${jwt}, decorators.user ${user}: one hook`)
      const needed = jwt !== 'before' && user === 'user'
      t.equal(names[0], needed ? 'noteArrivalNullUser()' : 'noteArrival()', needed ? 'the one that notes arrivals sets request.user' : 'request.user declared: the plain one')
      t.same((await app.inject({ method: 'GET', url: '/plain' })).json(), { user: null }, `request.${user} null`)
    }
  })

  t.test('a request.user an earlier hook of the app set is left as it is', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.addHook('onRequest', async (request) => { (request as unknown as { user: unknown }).user = { service: 'billing' } })
    await app.register(tokenSessions, { secret: SECRET, store: memoryStore(t), routes: false })
    app.get('/plain', async (request) => ({ user: (request as unknown as { user: unknown }).user }))
    t.same((await app.inject({ method: 'GET', url: '/plain' })).json(), { user: { service: 'billing' } })
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
