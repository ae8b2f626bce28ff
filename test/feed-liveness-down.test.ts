// When an instance's revocation feed counts as down, proven by its heartbeat: a subscriber
// path gone silent and a store that refuses writes are found out within the heartbeat's
// bound, and an event-loop stall of the instance is not taken for an outage.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildApp, LogCapture, login, untilUp } from './helpers/app.js'
import { logout, me, within } from './helpers/feed.js'
import { startRedis } from './helpers/redis.mjs'
import { SilencingRelay } from './helpers/relay.js'

t.test('a subscriber path that goes silent (no FIN, no RST) is found out within the heartbeat\'s bound', async (t) => {
  const redis = await startRedis(t)
  const relay = await SilencingRelay.start(t, redis.port)
  const logs = new LogCapture()
  const b = await buildApp(t, { redis: redis.url })
  const c = await buildApp(t, { redis: relay.url }, { logs })
  t.ok(await untilUp(c, 'revocationFeed'), 'C\'s feed is up through the relay')
  const sessions = await Promise.all(Array.from({ length: 5 }, async (_, n) => await login(b, `silent-${n}`)))
  for (const session of sessions) t.same(await me(c, session.accessToken), { statusCode: 200 })

  relay.silence()
  const silencedAt = performance.now()
  for (const session of sessions) t.equal(await logout(b, session.refreshToken), 204)
  const refused = await within(3000, async () => {
    const answers = await Promise.all(sessions.map(async (session) => await me(c, session.accessToken)))
    return answers.every((answer) => answer.code === 'FTS_SESSION_REVOKED')
  })
  t.ok(refused !== undefined, `every revoked token refused on C within 3 s of the path going silent (${((performance.now() - silencedAt) / 1000).toFixed(2)} s)`)
  const health = await c.tokenSessions.health()
  t.equal(health.revocationFeed, 'down', 'and C reports its feed down')
  t.ok(performance.now() - silencedAt < 3000 + 500, 'within the same bound')
  t.equal(health.ok, true, 'yet C is ready: under check-store it serves correctly through the store')
  t.ok(logs.entries().some((entry) => entry.msg === 'revocation feed down: revocations on other instances may be missed'), 'and logs it')
  const live = await login(b, 'silent-live')
  t.same(await me(c, live.accessToken), { statusCode: 200 }, 'a live session still works on C meanwhile')

  relay.restore()
  t.ok(await untilUp(c, 'revocationFeed', 10_000), 'with the path restored, C\'s feed is up again after its reload')
  for (const session of sessions) t.same(await me(c, session.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' }, 'and the revocations are in its list')
  const after = await login(b, 'silent-after')
  t.equal(await logout(b, after.refreshToken), 204)
  t.ok(await within(1000, async () => (await me(c, after.accessToken)).statusCode === 401), 'and it hears new revocations again')
})

t.test('a store that refuses writes (a primary cut off from its replicas) leaves the feed unproven', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url })
  t.ok(await untilUp(app, 'revocationFeed'))
  // What an old primary does once it has lost its replicas: it refuses every write.
  await inspect.config('SET', 'min-replicas-to-write', '1')
  const down = await within(3000, async () => (await app.tokenSessions.health()).revocationFeed === 'down')
  t.ok(down !== undefined, `the feed counts as down within 3 s (${down?.toFixed(0)} ms): its heartbeat is a write`)
  await inspect.config('SET', 'min-replicas-to-write', '0')
  t.ok(await untilUp(app, 'revocationFeed'), 'and up again once writes succeed, on the same subscription')
})

t.test('an event-loop stall of the instance is not an outage', async (t) => {
  const redis = await startRedis(t)
  const logs = new LogCapture()
  const app = await buildApp(t, { redis: redis.url }, { logs })
  t.ok(await untilUp(app, 'revocationFeed'))
  await sleep(600)
  // Blocks this thread for 3 s, from a timer as a long task would: every heartbeat on its
  // way is overdue when it wakes, and its timer is due before its message is read.
  for (let stall = 0; stall < 3; stall++) {
    await new Promise<void>((resolve) => setTimeout(() => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500)
      resolve()
    }, 100 + stall * 170))
  }
  await sleep(300)
  t.notOk(logs.entries().some((entry) => entry.msg === 'revocation feed down: revocations on other instances may be missed'), 'the feed never went down')
  t.equal((await app.tokenSessions.health()).revocationFeed, 'up')
})
