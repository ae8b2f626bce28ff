import t, { type Test } from 'tap'
import type { Redis } from 'ioredis'
import { buildApp, login, refresh } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'
import { RevocationBuckets, STANDALONE_BUCKETS } from '../lib/stores/buckets.js'

/** Every key in the database with its remaining life and its contents flattened to text. */
async function dump (redis: Redis): Promise<Array<{ key: string, pttl: number, content: string }>> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return await Promise.all(keys.map(async (key) => {
    const type = await redis.type(key)
    const content = type === 'hash'
      ? JSON.stringify(await redis.hgetall(key))
      : type === 'string'
        ? JSON.stringify(await redis.get(key))
        : JSON.stringify(await redis.zrange(key, '0', '-1', 'WITHSCORES'))
    return { key, pttl: await redis.pttl(key), content }
  }))
}

/**
 * Counts the commands clients send (not those scripts run inside Redis) while
 * `operation` runs, as MONITOR sees them, but the feed's heartbeats (a script on the
 * heartbeat key, twice a second, whatever the requests). A PING from the inspecting
 * client marks the end.
 */
async function roundTrips (redis: Redis, operation: () => Promise<unknown>): Promise<string[]> {
  const monitor = await redis.monitor()
  const seen: string[] = []
  let marker = ''
  const done = new Promise<void>((resolve) => {
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (args[0]?.toLowerCase() === 'ping' && args[1] === marker) return resolve()
      if (source !== 'lua' && !isHeartbeat(args)) seen.push(String(args[0]).toLowerCase())
    })
  })
  await operation()
  marker = `end-${Date.now()}`
  await redis.ping(marker)
  await done
  monitor.disconnect()
  return seen
}

/** Whether a command is the feed's heartbeat: the script whose one key is the heartbeat key. */
function isHeartbeat (args: string[]): boolean {
  return /^eval(sha)?$/i.test(String(args[0])) && String(args[3]).endsWith(':heartbeat')
}

/** One command: the script, sent as EVAL the first time on a connection and EVALSHA after. */
function oneScript (t: Test, commands: string[], operation: string): void {
  t.equal(commands.length, 1, `${operation}: one round trip`)
  t.match(commands[0], /^eval(sha)?$/, `${operation}: a script`)
}

t.test('what Redis holds', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url, accessTokenTtl: 60, refreshTokenTtl: 600, reuseGrace: 0 })

  const secrets: string[] = []
  const keep = (tokens: { accessToken: string, refreshToken: string }): void => {
    secrets.push(tokens.accessToken, tokens.refreshToken, payloadOf(tokens.refreshToken).jti as string)
  }
  for (const user of ['u1', 'u2', 'u3']) {
    const first = await login(app, user)
    keep(first)
    const second = (await refresh(app, first.refreshToken)).json()
    keep(second)
  }
  const loggedOut = await login(app, 'u4')
  keep(loggedOut)
  await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: loggedOut.refreshToken } })

  const keys = await dump(inspect)
  const buckets = new RevocationBuckets('tsess:', STANDALONE_BUCKETS)
  const bucket = buckets.of('tsess:{u4}')
  const heartbeat = buckets.inSlot(0, 'heartbeat')
  t.same(keys.map((k) => k.key).sort().map((k) => k.replace(/:s:[\w-]{22}$/, ':s:<sid>')),
    [bucket, heartbeat, 'tsess:{u1}:idx', 'tsess:{u1}:s:<sid>', 'tsess:{u2}:idx', 'tsess:{u2}:s:<sid>', 'tsess:{u3}:idx', 'tsess:{u3}:s:<sid>'].sort(),
    'one hash and one index per user, each hash-tagged by user id; logout left only its revocation, in the bucket of the user\'s slot; the feed\'s heartbeat key')
  for (const { key, pttl, content } of keys) {
    for (const secret of secrets) t.notOk(content.includes(secret), `${key} holds no token or token id`)
    if (key === heartbeat) {
      t.ok(pttl > 0 && pttl <= 1000, `the heartbeat key lives as long as a heartbeat may take (${pttl} ms)`)
      continue
    }
    if (key === bucket) {
      t.ok(pttl > 85_000 && pttl <= 90_000, `the revocation is remembered as long as access tokens live, plus a margin (${pttl} ms)`)
      t.match(content, payloadOf(loggedOut.accessToken).sid as string, 'it names the logged-out session')
    } else {
      t.ok(pttl > 590_000 && pttl <= 600_000, `${key} expires with its refresh token (${pttl} ms)`)
    }
  }
})

t.test('the per-user index expires with its longest-lived session and is pruned', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const short = await buildApp(t, { redis: redis.url, accessTokenTtl: 1, refreshTokenTtl: 2 })
  const long = await buildApp(t, { redis: redis.url, accessTokenTtl: 60, refreshTokenTtl: 300 })
  await login(short, 'idx')
  t.ok(await inspect.pttl('tsess:{idx}:idx') <= 2000, 'index lives as long as its only session')
  const kept = await login(long, 'idx')
  t.ok(await inspect.pttl('tsess:{idx}:idx') > 290_000, 'index lives as long as its longest session')
  await new Promise((resolve) => setTimeout(resolve, 2100))
  await login(short, 'idx')
  t.equal(await inspect.zcount('tsess:{idx}:idx', '(0', '+inf'), 2, 'the expired session was pruned on the next write')
  t.equal(await inspect.zcard('tsess:{idx}:idx'), 4, 'each session twice: by expiry and by start')
  await long.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: kept.refreshToken } })
  const pttl = await inspect.pttl('tsess:{idx}:idx')
  t.ok(pttl > 0 && pttl <= 2000, `after logout the index shrinks back to its remaining session (${pttl} ms)`)
})

t.test('login, refresh and logout are one Redis round trip each', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url })
  const tokens = await login(app, 'trips')
  const other = await app.tokenSessions.issue('trips')
  oneScript(t, await roundTrips(inspect, async () => await login(app, 'trips')), 'login')
  oneScript(t, await roundTrips(inspect, async () => await refresh(app, tokens.refreshToken)), 'refresh')
  oneScript(t, await roundTrips(inspect, async () => await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: tokens.refreshToken } })), 'logout')
  oneScript(t, await roundTrips(inspect, async () => await app.inject({ method: 'POST', url: '/auth/logout-all', headers: { authorization: `Bearer ${other.accessToken}` } })), 'logout-all')
  t.same(await roundTrips(inspect, async () => await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })), [], 'authenticate reads nothing')
})
