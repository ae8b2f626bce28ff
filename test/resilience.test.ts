import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { RedisStore, type TokenSessionsOptions } from '../lib/index.js'
import { hashId } from '../lib/tokens.js'
import { LogCapture, buildApp, login, refresh, untilUp } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'
import { startSentinel } from './helpers/topology.js'
import { FaultProxy } from '../bench/faults/proxy.mjs'

t.test('Sentinel: refresh answers 503 during a failover, then works without a restart', async (t) => {
  const { primary, sentinels } = await startSentinel(t)
  const client = new Redis({ sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: 'primary', commandTimeout: 500, maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const app = await buildApp(t, { redis: client, storeTimeout: 500 })
  let tokens = await login(app, 'failover')
  tokens = (await refresh(app, tokens.refreshToken)).json()
  await primary.kill()
  const statuses: number[] = []
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const response = await refresh(app, tokens.refreshToken)
    statuses.push(response.statusCode)
    if (response.statusCode === 200) {
      tokens = response.json()
      break
    }
    await sleep(200)
  }
  t.ok(statuses.every((status) => status === 503 || status === 200), `only 503 then 200: ${statuses.join(' ')}`)
  t.ok(statuses.includes(503), 'refresh answered 503 while the failover ran')
  t.equal(statuses.at(-1), 200, 'and works after it, on the new primary')
  t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200, 'the chain goes on')
  t.type((await login(app, 'after-failover')).accessToken, 'string')
})

t.test('waitForReplicas: writes wait for a replica, and fail as 503 without one', async (t) => {
  const { primary, replica } = await startSentinel(t)
  const direct = new Redis(primary.port, '127.0.0.1', { commandTimeout: 2000 })
  t.teardown(() => direct.disconnect())
  const durable = await buildApp(t, { store: new RedisStore({ client: direct, waitForReplicas: 1, waitTimeout: 300 }) })
  const plain = await buildApp(t, { store: new RedisStore({ client: direct, keyPrefix: 'plain:' }) })
  const time = async (app: typeof durable): Promise<number> => {
    const sessions = await Promise.all(Array.from({ length: 50 }, async (_, i) => await login(app, `wait-${i}`)))
    const start = performance.now()
    for (const session of sessions) t.equal((await refresh(app, session.refreshToken)).statusCode, 200)
    return (performance.now() - start) / sessions.length
  }
  const withWait = await time(durable)
  const without = await time(plain)
  t.comment(`refresh: ${without.toFixed(2)} ms without WAIT, ${withWait.toFixed(2)} ms with WAIT 1 (sequential, loopback)`)
  await replica.kill()
  const response = await durable.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'no-replica' } })
  t.equal(response.statusCode, 503, 'no replica acknowledged: the write is not trusted')
  t.throws(() => new RedisStore({ client: direct, waitForReplicas: -1 }), /waitForReplicas/)
})

t.test('CLIENT PAUSE longer than the timeout: 503, and a retry never leaves two live refresh tokens', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 300 })
  const first = await login(app, 'paused')
  await inspect.call('CLIENT', 'PAUSE', '1000', 'ALL')
  const during = await refresh(app, first.refreshToken)
  t.equal(during.statusCode, 503)
  await sleep(1000)
  const retry = await refresh(app, first.refreshToken)
  t.equal(retry.statusCode, 200, 'the retry within the grace window gets the successor the paused request created')
  const [key] = await inspect.keys('*{paused}:s:*')
  const stored = await inspect.hmget(key ?? '', 'c', 'p')
  t.same(stored, [hashId(String(payloadOf(retry.json().refreshToken).jti)), hashId(String(payloadOf(first.refreshToken).jti))],
    'one chain: the current token is the one handed out, the previous one only within the grace window')
})

/** Two instances on one Redis, `a`'s link to it through a proxy that can be slowed down. */
async function twoInstancesOneSlow (t: Test) {
  const redis = await startRedis(t)
  const slowLink = await FaultProxy.start(redis.port)
  t.teardown(() => slowLink.close())
  const a = await buildApp(t, { redis: `redis://127.0.0.1:${slowLink.port}`, storeTimeout: 300 })
  const b = await buildApp(t, { redis: redis.url, storeTimeout: 300 })
  return { a, b, slowLink }
}

t.test('a refresh that reaches Redis after its 503 changes nothing: a late replay is not taken for theft', async (t) => {
  // Found by the fault-injection harness (a Sentinel failover): instance a's refresh with
  // the previous token (a replay within the grace window) timed out and was answered 503;
  // its command reached Redis seconds later, after the client had refreshed again through
  // instance b, and was judged reuse: the session ended as stolen. Here a's link to Redis
  // is slow instead.
  const { a, b, slowLink } = await twoInstancesOneSlow(t)
  const first = await login(b, 'late')
  const second = (await refresh(b, first.refreshToken)).json()
  slowLink.setLatency(800)
  const replay = await refresh(a, first.refreshToken)
  t.equal(replay.statusCode, 503, 'the slow instance answers 503 within storeTimeout')
  const third = await refresh(b, second.refreshToken)
  t.equal(third.statusCode, 200, 'the client refreshes again through another instance')
  // Let the late command reach Redis and run.
  await sleep(2000)
  slowLink.setLatency(0)
  const fourth = await refresh(b, third.json().refreshToken)
  t.equal(fourth.statusCode, 200, 'the session lives: the late replay did nothing')
})

t.test('a revoke-all that reaches Redis after its 503 does not end the sessions started since', async (t) => {
  // Found by the fault-injection harness (Redis stopped with SIGSTOP): a password change's
  // revoke-all answered 503, ran when Redis resumed, and ended the session the user had
  // started meanwhile.
  const { a, b, slowLink } = await twoInstancesOneSlow(t)
  await login(b, 'late-all')
  slowLink.setLatency(800)
  await t.rejects(a.tokenSessions.revokeAllSessions('late-all'), { code: 'FTS_STORE_UNAVAILABLE' }, 'the slow instance gives up within storeTimeout')
  const since = await login(b, 'late-all')
  await sleep(2000)
  slowLink.setLatency(0)
  t.equal((await refresh(b, since.refreshToken)).statusCode, 200, 'the session started since lives: the late revoke-all did nothing')
})

/**
 * An app whose link to Redis a test can cut while a command's answer is on its way back:
 * `lose(send, ran)` sends a request over a link that delays everything 300 ms, waits until
 * `ran` sees on a direct connection that Redis has run its command, cuts the link before
 * the answer arrives, and resolves to the app's answer, which comes from the command
 * ioredis resends once it has reconnected, run a second time (over a second later).
 */
async function answerLostToACut (t: Test, options: Partial<TokenSessionsOptions> = {}) {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const link = await FaultProxy.start(redis.port)
  t.teardown(() => link.close())
  const app = await buildApp(t, { redis: `redis://127.0.0.1:${link.port}`, storeTimeout: 3000, ...options })
  const lose = async <T> (send: () => Promise<T>, ran: (redis: Redis) => Promise<boolean>): Promise<T> => {
    link.setLatency(300)
    const answer = send()
    const sent = Date.now()
    while (!await ran(inspect)) {
      if (Date.now() - sent > 2000) throw new Error('the command did not run')
      await sleep(5)
    }
    link.cut()
    // The new connection is as slow: the resend runs over a second after the first run.
    const response = await answer
    link.setLatency(0)
    return response
  }
  return { app, lose }
}

/** The one session key of a user, on a direct connection. */
async function sessionKey (redis: Redis, userId: string): Promise<string | undefined> {
  return (await redis.keys(`tsess:{${userId}}:s:*`))[0]
}

t.test('a logout-all whose answer a cut connection lost, resent by the client library, answers as it first ran', async (t) => {
  // Found by the fault-injection harness (connections cut): Redis ran the revoke-all script,
  // the connection broke before its answer came back, ioredis resent the script on the new
  // connection, and the second run found the caller's session over: a logout-all that had
  // ended every session answered 401 FTS_SESSION_REVOKED.
  const { app, lose } = await answerLostToACut(t)
  const logoutAll = async (accessToken: string) => await app.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${accessToken}` } })
  // Once, so that the script is loaded and the command below is the script alone.
  t.equal((await logoutAll((await login(app, 'resent-warm-up')).accessToken)).statusCode, 204)
  const caller = await login(app, 'resent')
  const other = await login(app, 'resent')
  const response = await lose(async () => await logoutAll(caller.accessToken), async (redis) => await redis.exists('tsess:{resent}:st') === 1)
  t.equal(response.statusCode, 204, 'the answer of the run that ended the sessions')
  t.equal((await refresh(app, other.refreshToken)).statusCode, 401, 'every session is over')
})

t.test('a strict refresh whose answer a cut connection lost is not taken for reuse when it is resent', async (t) => {
  const { app, lose } = await answerLostToACut(t, { reuseGrace: 0 })
  await refresh(app, (await login(app, 'resent-warm-up')).refreshToken)
  const tokens = await login(app, 'resent-refresh')
  const rotated = async (redis: Redis): Promise<boolean> => await redis.hexists(await sessionKey(redis, 'resent-refresh') ?? '', 'p') === 1
  const response = await lose(async () => await refresh(app, tokens.refreshToken), rotated)
  t.equal(response.statusCode, 200, 'rotated once, not ended as stolen')
  t.equal((await refresh(app, response.json().refreshToken)).statusCode, 200, 'the session lives on its new token')
})

t.test('a refresh replayed at the end of the grace window, whose answer a cut connection lost, is not taken for reuse when it is resent', async (t) => {
  const { app, lose } = await answerLostToACut(t, { reuseGrace: 1 })
  const tokens = await login(app, 'resent-replay')
  const next = (await refresh(app, tokens.refreshToken)).json()
  await sleep(500)
  // The replay runs within the second of grace; its resend, after the cut, past it.
  const replayKept = async (redis: Redis): Promise<boolean> => (await redis.keys('tsess:{resent-replay}:w:*')).length === 1
  const response = await lose(async () => await refresh(app, tokens.refreshToken), replayKept)
  t.equal(response.statusCode, 200, 'the replay\'s answer')
  t.equal(payloadOf(response.json().refreshToken).jti, payloadOf(next.refreshToken).jti, 'the one shared successor')
  t.equal((await refresh(app, next.refreshToken)).statusCode, 200, 'the session lives')
})

t.test('a logout whose answer a cut connection lost still tells the audit hooks, once', async (t) => {
  const logouts: string[] = []
  const { app, lose } = await answerLostToACut(t, { onLogout: (event) => { logouts.push(event.sessionId ?? '') } })
  const logout = async (refreshToken: string) => await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken } })
  await logout((await login(app, 'resent-warm-up')).refreshToken)
  const tokens = await login(app, 'resent-logout')
  const ended = async (redis: Redis): Promise<boolean> => await sessionKey(redis, 'resent-logout') === undefined
  t.equal((await lose(async () => await logout(tokens.refreshToken), ended)).statusCode, 204)
  t.same(logouts.length, 2, 'one onLogout for each logout, the one whose answer was lost included')
  t.equal((await refresh(app, tokens.refreshToken)).statusCode, 401, 'the session is over')
})

t.test('Redis killed under load and restarted: no 500, no unhandled rejection, recovery without restart', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 300 })
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => process.off('unhandledRejection', onUnhandled))
  const statuses = new Map<number, number>()
  // An object, so that the workers' loop sees the change made while they await.
  const run = { stop: false }
  const worker = async (id: number): Promise<void> => {
    let tokens: { accessToken: string, refreshToken: string } | undefined
    while (!run.stop) {
      const response = tokens === undefined
        ? await app.inject({ method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body' }, payload: { userId: `load-${id}` } })
        : id % 2 === 0
          ? await refresh(app, tokens.refreshToken)
          : await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
      if (response.statusCode === 200 && 'refreshToken' in response.json()) tokens = response.json()
      await sleep(5)
    }
  }
  const workers = Array.from({ length: 20 }, async (_, id) => await worker(id))
  await sleep(500)
  await redis.stop()
  await sleep(1000)
  await redis.start()
  await sleep(2500)
  run.stop = true
  await Promise.all(workers)
  const summary = [...statuses].map(([status, count]) => `${status}×${count}`).join(' ')
  t.ok([...statuses.keys()].every((status) => [200, 401, 503].includes(status)), `only 200, 401 (sessions lost with the unpersisted Redis) and 503: ${summary}`)
  t.ok((statuses.get(503) ?? 0) > 0, 'the outage was seen')
  t.same(unhandled, [], 'no unhandled rejection')
  t.type((await login(app, 'after-restart')).accessToken, 'string', 'recovered')
})

t.test('readiness: health() tells the truth, and start-up neither hangs nor crashes without Redis', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 300 })
  t.match(await app.tokenSessions.health(), { ok: true, store: 'up', revocationFeed: 'up', clockOffsetMs: Number })
  await redis.stop()
  await sleep(200)
  t.match(await app.tokenSessions.health(), { ok: false, store: 'down', revocationFeed: 'down' })
  await redis.start()
  await untilUp(app, 'store')
  await untilUp(app, 'revocationFeed')
  t.match(await app.tokenSessions.health(), { ok: true, store: 'up', revocationFeed: 'up' }, 'back without a restart')
})

t.test('an eviction policy other than noeviction is warned about at start-up', async (t) => {
  for (const [args, expected] of [
    [['--maxmemory-policy', 'allkeys-lru'], 'allkeys-lru'],
    [['--maxmemory-policy', 'volatile-ttl'], 'volatile-ttl'],
    [[], undefined],
    [['--rename-command', 'CONFIG', ''], undefined]
  ] as Array<[string[], string | undefined]>) {
    const redis = await startRedis(t, args)
    const logs = new LogCapture()
    await buildApp(t, { redis: redis.url }, { logs })
    await sleep(200)
    const warning = logs.entries().find((entry) => String(entry.msg).includes('maxmemory-policy noeviction'))
    t.equal(warning?.maxmemoryPolicy, expected, `${args.join(' ') || 'default'}: ${expected === undefined ? 'no warning' : 'a warning'}`)
  }
})
