import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemoryStore } from 'fastify-token-sessions'
import { buildApp } from '../example-app/src/app.js'
import { loadConfig } from '../example-app/src/config.js'
import { resolveOptions } from '../lib/options.js'
import { LogCapture, SECRET } from './helpers/common.js'
import { PASSWORD, appStarter, assertError, call, loginNative, register } from './helpers/example-app.js'
import { freePort, startRedis } from './helpers/redis.mjs'

// The example app's configuration, and how it starts, runs and closes with and without Redis.
const redis = await startRedis(t)
const startApp = appStarter(redis)

t.test('config', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), { name: 'ConfigError', message: /JWT_SECRET is required/ },
    'production without JWT_SECRET refuses')
  t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: '' }), { message: /JWT_SECRET is required/ },
    'an empty JWT_SECRET counts as missing')
  let shortSecretMessage = ''
  try {
    loadConfig({ JWT_SECRET: 'hunter2-hunter2' })
  } catch (error) {
    shortSecretMessage = (error as Error).message
  }
  t.match(shortSecretMessage, /JWT_SECRET is 15 bytes/, 'a short secret refuses')
  t.notOk(shortSecretMessage.includes('hunter2'), 'the message does not repeat the secret')

  for (const bad of ['abc', '15m', '-1', '0', '1.5', ' 900', '1e3', '0x10']) {
    t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: bad }), { name: 'ConfigError', message: /^ACCESS_TOKEN_TTL must be a whole number/ },
      `ACCESS_TOKEN_TTL=${JSON.stringify(bad)} refuses`)
  }
  t.throws(() => loadConfig({ PORT: '70000' }), { message: /^PORT/ }, 'a port out of range refuses')
  t.throws(() => loadConfig({ REFRESH_REUSE_GRACE: 'soon' }), { message: /^REFRESH_REUSE_GRACE/ }, 'a grace that is no number refuses')
  t.throws(() => loadConfig({ DPOP_NONCES: 'yes' }), { name: 'ConfigError', message: /^DPOP_NONCES must be true or false/ }, 'a flag that is neither refuses')
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: '900', REFRESH_TOKEN_TTL: '900' }), { message: /REFRESH_TOKEN_TTL .* greater than ACCESS_TOKEN_TTL/ },
    'a refresh token that dies with its access token refuses')
  for (const bad of ['abc', '30d', '0', '-1', '1.5', '31536001']) {
    t.throws(() => loadConfig({ SESSION_MAX_LIFETIME: bad }),
      { name: 'ConfigError', message: /^SESSION_MAX_LIFETIME must be a whole number from 1 to 31536000/ },
      `SESSION_MAX_LIFETIME=${JSON.stringify(bad)} refuses`)
  }
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: '900', SESSION_MAX_LIFETIME: '900' }),
    { name: 'ConfigError', message: /^SESSION_MAX_LIFETIME \(900\) must be greater than ACCESS_TOKEN_TTL \(900\)$/ },
    'a session that ends with its first access token refuses')
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL: '86401', REFRESH_TOKEN_TTL: '2600000' }),
    { name: 'ConfigError', message: /^ACCESS_TOKEN_TTL must be a whole number from 1 to 86400/ },
    'an access token of more than a day refuses, naming the variable (the plugin\'s MAX_ACCESS_TOKEN_TTL)')
  t.equal(loadConfig({ ACCESS_TOKEN_TTL: '900', SESSION_MAX_LIFETIME: '901' }).sessionMaxLifetime, 901, 'one second more is enough')
  t.equal(loadConfig({ SESSION_MAX_LIFETIME: '' }).sessionMaxLifetime, 2_592_000, 'empty counts as unset')
  t.throws(() => loadConfig({ LOG_LEVEL: 'verbose' }), { message: /^LOG_LEVEL/ }, 'an unknown log level refuses')
  t.throws(() => loadConfig({ REDIS_URL: 'http://redis:6379' }), { message: /^REDIS_URL/ }, 'a URL that is not redis:// refuses')
  t.throws(() => loadConfig({ KEY_PREFIX: 'a{b}' }), { message: /^KEY_PREFIX/ }, 'a key prefix with a hash tag refuses')

  const defaults = loadConfig({})
  t.match(defaults, {
    production: false,
    port: 3000,
    host: '127.0.0.1',
    redisUrl: 'redis://127.0.0.1:6379',
    accessTokenTtl: 900,
    refreshTokenTtl: 86_400,
    sessionMaxLifetime: 2_592_000,
    reuseGrace: undefined,
    keyPrefix: undefined,
    logLevel: 'info',
    jwtSecretGenerated: true
  }, 'defaults')
  t.equal(Buffer.from(defaults.jwtSecret, 'base64url').length, 48, 'a generated secret has 48 random bytes')
  t.not(loadConfig({}).jwtSecret, defaults.jwtSecret, 'a new one per process')

  const given = loadConfig({
    NODE_ENV: 'production',
    JWT_SECRET: SECRET,
    PORT: '8080',
    HOST: '0.0.0.0',
    REDIS_URL: 'redis://redis:6379',
    ACCESS_TOKEN_TTL: '60',
    REFRESH_TOKEN_TTL: '3600',
    SESSION_MAX_LIFETIME: '7200',
    REFRESH_REUSE_GRACE: '0',
    KEY_PREFIX: 'app:',
    LOG_LEVEL: 'warn',
    DPOP_NONCES: 'true'
  })
  t.match(given, {
    production: true,
    port: 8080,
    host: '0.0.0.0',
    redisUrl: 'redis://redis:6379',
    accessTokenTtl: 60,
    refreshTokenTtl: 3600,
    sessionMaxLifetime: 7200,
    reuseGrace: 0,
    keyPrefix: 'app:',
    logLevel: 'warn',
    jwtSecret: SECRET,
    jwtSecretGenerated: false,
    dpopNonces: true
  }, 'every variable is read')
  t.equal(loadConfig({ DPOP_NONCES: 'false' }).dpopNonces, false)
})

t.test('REVOCATION_OUTAGE_POLICY: read, checked, and handed to the plugin', async (t) => {
  t.equal(loadConfig({}).revocationOutagePolicy, undefined, 'unset by default: the plugin\'s default applies')
  t.equal(loadConfig({ REVOCATION_OUTAGE_POLICY: '' }).revocationOutagePolicy, undefined, 'empty counts as unset')
  for (const policy of ['check-store', 'accept', 'reject']) {
    t.equal(loadConfig({ REVOCATION_OUTAGE_POLICY: policy }).revocationOutagePolicy, policy, `${policy} is read`)
  }
  for (const bad of ['Reject', 'check_store', 'deny', ' accept', 'true']) {
    t.throws(() => loadConfig({ REVOCATION_OUTAGE_POLICY: bad }),
      { name: 'ConfigError', message: /^REVOCATION_OUTAGE_POLICY must be one of check-store, accept, reject, got / }, `${JSON.stringify(bad)} refuses`)
  }

  // What each policy does is the plugin's to test; here, that the plugin gets the one set:
  // when the feed drops, its warning names the policy in force.
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  const pluginDefault = resolveOptions({ secret: SECRET, store: memory }, {}).revocationFeed.onOutage
  const outage = await startRedis(t)
  const given = await startApp(t, { REDIS_URL: outage.url, REVOCATION_OUTAGE_POLICY: 'reject' })
  const unset = await startApp(t, { REDIS_URL: outage.url })
  await outage.stop()
  const policyInForce = async (logs: LogCapture): Promise<unknown> => {
    for (let i = 0; i < 100; i++) {
      const warning = logs.entries().find((entry) => 'onOutage' in entry)
      if (warning !== undefined) return warning.onOutage
      await sleep(20)
    }
    return undefined
  }
  t.equal(await policyInForce(given.logs), 'reject', 'REVOCATION_OUTAGE_POLICY=reject reaches the plugin')
  t.equal(await policyInForce(unset.logs), pluginDefault, `unset, the plugin's default (${String(pluginDefault)})`)
})

t.test('without Redis, development falls back to MemoryStore', async (t) => {
  const closedPort = await freePort()
  const { app, url, logs } = await startApp(t, { REDIS_URL: `redis://127.0.0.1:${closedPort}`, JWT_SECRET: '' })
  t.ok(app.tokenSessions.store instanceof MemoryStore, 'sessions live in memory')
  const warnings = logs.entries().filter((entry) => entry.level === 40).map((entry) => String(entry.msg))
  t.ok(warnings.some((msg) => msg.includes('IN MEMORY')), 'a loud warning says so')
  t.ok(warnings.some((msg) => msg.includes('JWT_SECRET is not set')), 'and one about the generated secret')

  await register(url, 'alice')
  const login = await loginNative(url, 'alice')
  const refreshed = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: login.refreshToken } })
  t.equal(refreshed.status, 200, 'sessions work on the memory store')
  const logout = await call(url, 'POST', '/auth/logout', { json: { refreshToken: refreshed.body.refreshToken } })
  t.equal(logout.status, 204)
  assertError(t, await call(url, 'POST', '/auth/refresh', { json: { refreshToken: refreshed.body.refreshToken } }),
    401, 'FTS_SESSION_REVOKED', 'logout ends the in-memory session')
})

t.test('without Redis, production refuses to start', async (t) => {
  const closedPort = await freePort()
  const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, REDIS_URL: `redis://user:pa55word@127.0.0.1:${closedPort}` })
  const logs = new LogCapture()
  let failure: Error | undefined
  try {
    const app = await buildApp(config, { logStream: logs })
    t.teardown(() => app.close())
  } catch (error) {
    failure = error as Error
  }
  t.equal(failure?.name, 'StartupError', 'buildApp rejects')
  t.match(failure?.message, new RegExp(`127\\.0\\.0\\.1:${closedPort} \\(REDIS_URL\\) is not reachable`), 'naming where it looked')
  t.notOk(failure?.message.includes('pa55word'), 'without the password in REDIS_URL')
  t.notOk(logs.text.includes('pa55word'), 'nor in the log')
})

t.test('with Redis, the app uses it and quits its client on close', async (t) => {
  const client = redis.client()
  t.teardown(() => client.quit())
  const before = await clientCount(client)
  const { app } = await startApp(t)
  t.notOk(app.tokenSessions.store instanceof MemoryStore, 'not the memory store')
  t.equal(await clientCount(client), before + 2, 'the app holds two Redis connections: its probe, handed to the plugin, and the revocation feed')
  await app.close()
  // Redis sees the QUIT asynchronously.
  for (let i = 0; i < 50 && await clientCount(client) !== before; i++) await sleep(20)
  t.equal(await clientCount(client), before, 'closing the app quits both connections')
})

t.test('a Redis outage gives 503 in the same error shape, and the app still closes', async (t) => {
  const outage = await startRedis(t)
  const { app, url, logs } = await startApp(t, { REDIS_URL: outage.url })
  await register(url, 'alice')
  const login = await loginNative(url, 'alice')

  await outage.stop()
  const refresh = await call(url, 'POST', '/auth/refresh', { json: { refreshToken: login.refreshToken } })
  assertError(t, refresh, 503, 'FTS_STORE_UNAVAILABLE', 'refresh without Redis')
  t.equal(refresh.headers.get('retry-after'), '1', 'with a hint when to retry')
  assertError(t, await call(url, 'POST', '/auth/login', { json: { username: 'alice', password: PASSWORD } }),
    503, 'FTS_STORE_UNAVAILABLE', 'login without Redis')
  t.ok(logs.entries().some((entry) => entry.msg === 'redis connection error'), 'the drop is logged')

  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, 'close does not wait for Redis to come back')
})

async function clientCount (client: ReturnType<typeof redis.client>): Promise<number> {
  const list = await client.client('LIST') as string
  return list.trim().split('\n').length
}
