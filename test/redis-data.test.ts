import t, { type Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Redis } from 'ioredis'
import { DPoP, type CryptoKeyPair } from 'oauth4webapi'
import { buildApp, cookiesOf, login, refresh } from './helpers/app.js'
import { payloadOf } from './helpers/jwt.js'
import { startRedis } from './helpers/redis.mjs'
import { RevocationBuckets, STANDALONE_BUCKETS } from '../lib/stores/buckets.js'

/** Every key in the database, by SCAN (KEYS would block a shared server). */
async function keysOf (redis: Redis): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

/** Every key in the database with its remaining life and its contents flattened to text. */
async function dump (redis: Redis): Promise<Array<{ key: string, pttl: number, content: string }>> {
  const keys = await keysOf(redis)
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
  t.same(keys.map((k) => k.key.replace(/:s:[\w-]{22}$/, ':s:<sid>').replace(/:w:[\w.-]+$/, ':w:<write>')).sort(),
    [bucket, heartbeat, 'tsess:{u1}:idx', 'tsess:{u1}:s:<sid>', 'tsess:{u2}:idx', 'tsess:{u2}:s:<sid>', 'tsess:{u3}:idx', 'tsess:{u3}:s:<sid>', 'tsess:{u4}:w:<write>'].sort(),
    'one hash and one index per user, each hash-tagged by user id; logout left only its revocation, in the bucket of the user\'s slot, and its outcome for a resend; the feed\'s heartbeat key')
  for (const { key, pttl, content } of keys) {
    for (const secret of secrets) t.notOk(content.includes(secret), `${key} holds no token or token id`)
    if (key === heartbeat) {
      t.ok(pttl > 0 && pttl <= 1000, `the heartbeat key lives as long as a heartbeat may take (${pttl} ms)`)
      continue
    }
    if (key.startsWith('tsess:{u4}:w:')) {
      t.ok(pttl > 0 && pttl <= 1100, `the logout's outcome is kept until its deadline, for a resend of it (${pttl} ms)`)
      t.equal(content, '"1"', 'the outcome alone: revoked')
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

  // The claims hook is the app's: it adds no store work of the plugin's own.
  const withClaims = await buildApp(t, { redis: redis.url, claims: async () => ({ role: 'member' }) })
  const asked = await login(withClaims, 'trips')
  oneScript(t, await roundTrips(inspect, async () => await login(withClaims, 'trips')), 'login with a claims hook')
  oneScript(t, await roundTrips(inspect, async () => await refresh(withClaims, asked.refreshToken)), 'refresh with a claims hook')

  // A step-up (reply.stepUp) raises the session's login time and rotates its pair in one script.
  const stepping = await buildApp(t, { redis: redis.url }, {
    setup: (app) => app.post('/reauthenticate', { onRequest: app.authenticate }, async (_request, reply) => await reply.stepUp({ amr: ['pwd'] }))
  })
  const old = await login(stepping, 'trips')
  oneScript(t, await roundTrips(inspect, async () => {
    const answer = await stepping.inject({ method: 'POST', url: '/reauthenticate', headers: { authorization: `Bearer ${old.accessToken}`, 'x-token-transport': 'body' } })
    t.equal(answer.statusCode, 200, 'stepped up')
  }), 'step-up')
})

/** What oauth4webapi's DPoP handle does beside what its typings show: it signs a proof for any request. */
interface ProofMaker { addProof: (url: URL, headers: Headers, htm: string) => Promise<void> }

/** A proof by `key` for a POST to `path` of an injected request (whose origin is http://localhost). */
async function proof (key: CryptoKeyPair, path: string): Promise<string> {
  const headers = new Headers()
  await (DPoP({}, key) as unknown as ProofMaker).addProof(new URL(`http://localhost${path}`), headers, 'POST')
  return headers.get('dpop') as string
}

/** Posts an OAuth form (RFC 6749 §6, RFC 7009) to one of the plugin's routes. */
async function form (app: FastifyInstance, path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({
    method: 'POST', url: path, payload: new URLSearchParams(fields).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }
  })
}

t.test('every key the plugin writes expires, after every route and API that writes', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url, reuseGrace: 0, maxSessionsPerUser: 2 })
  const bearer = (accessToken: string): Record<string, string> => ({ authorization: `Bearer ${accessToken}` })
  const sid = (accessToken: string): string => payloadOf(accessToken).sid as string
  const expect = (response: LightMyRequestResponse, status: number, step: string): void => {
    t.equal(response.statusCode, status, step)
  }
  /** After `step`, every key in this test's Redis has a time to live; resolves to the keys. */
  const everyKeyExpires = async (step: string): Promise<string[]> => {
    const keys = await keysOf(inspect)
    const lives = await Promise.all(keys.map(async (key) => [key, await inspect.pttl(key)] as const))
    t.same(lives.filter(([, pttl]) => !(pttl > 0)).map(([key, pttl]) => `${key} (PTTL ${pttl})`), [], `after ${step}: every key expires`)
    return keys
  }

  await login(app, 'ann')
  await everyKeyExpires('a login (POST /auth/login, body transport)')
  const issued = await app.tokenSessions.issue('ann')
  await everyKeyExpires('tokenSessions.issue()')

  expect(await refresh(app, issued.refreshToken), 200, 'refresh, body')
  await everyKeyExpires('a refresh (body)')

  const browser = cookiesOf(await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'bea' } }))
  const cookies = { refresh_token: browser.get('refresh_token')?.value ?? '', session_binding: browser.get('session_binding')?.value ?? '' }
  expect(await app.inject({ method: 'POST', url: '/auth/refresh', headers: { 'x-requested-with': 'fetch' }, cookies }), 200, 'refresh, cookie')
  await everyKeyExpires('a refresh (cookies)')

  const native = await login(app, 'cal')
  const granted = await form(app, '/auth/token', { grant_type: 'refresh_token', refresh_token: native.refreshToken })
  expect(granted, 200, 'the refresh grant')
  await everyKeyExpires('the refresh grant (POST /auth/token)')

  const key = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as unknown as CryptoKeyPair
  const bound = await app.inject({
    method: 'POST', url: '/auth/login', headers: { 'x-token-transport': 'body', dpop: await proof(key, '/auth/login') }, payload: { userId: 'dan' }
  })
  expect(bound, 200, 'a DPoP-bound login')
  t.equal(bound.json().tokenType, 'DPoP', 'the session is bound to the key')
  await everyKeyExpires('a DPoP-bound login')
  const boundGrant = await form(app, '/auth/token', { grant_type: 'refresh_token', refresh_token: bound.json().refreshToken }, { dpop: await proof(key, '/auth/token') })
  expect(boundGrant, 200, 'the refresh grant with a DPoP proof')
  const afterProof = await everyKeyExpires('the refresh grant with a DPoP proof')
  t.ok(afterProof.some((k) => k.startsWith('tsess:{dan}:dp:')), 'the proof\'s id is among the keys checked')

  expect(await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: granted.json().refresh_token } }), 204, 'logout')
  await everyKeyExpires('a logout')

  const [first, second] = [await login(app, 'eve'), await login(app, 'eve')]
  expect(await app.inject({ method: 'DELETE', url: `/auth/sessions/${sid(first.accessToken)}`, headers: bearer(second.accessToken) }), 204, 'DELETE /auth/sessions/:id')
  await everyKeyExpires('DELETE /auth/sessions/:id')

  const revoked = await login(app, 'fay')
  expect(await form(app, '/auth/revoke', { token: revoked.refreshToken }), 200, 'the revocation endpoint')
  await everyKeyExpires('a revocation (POST /auth/revoke)')

  const everywhere = await login(app, 'gus')
  await login(app, 'gus')
  expect(await app.inject({ method: 'POST', url: '/auth/logout-all', payload: { refreshToken: everywhere.refreshToken } }), 204, 'logout-all')
  const afterStamp = await everyKeyExpires('a logout-all')
  t.ok(afterStamp.includes('tsess:{gus}:st'), 'the stamp is among the keys checked')

  const kept = await login(app, 'hal')
  await login(app, 'hal')
  await app.tokenSessions.revokeAllSessions('hal', { except: sid(kept.accessToken) })
  await everyKeyExpires('revokeAllSessions() with except')

  const stolen = await login(app, 'ida')
  expect(await refresh(app, stolen.refreshToken), 200, 'the first refresh')
  expect(await refresh(app, stolen.refreshToken), 401, 'the replayed refresh token')
  await everyKeyExpires('reuse detection')

  for (let i = 0; i < 3; i++) await login(app, 'joe')
  t.equal((await app.tokenSessions.listSessions('joe')).sessions.length, 2, 'the cap ended a session')
  await everyKeyExpires('a login past maxSessionsPerUser')
})
