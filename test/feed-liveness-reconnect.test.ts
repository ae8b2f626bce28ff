// The revocation feed lost and back: its subscriptions killed while another instance logs
// a session out, Redis down for a while (access tokens keep working, revocation works after),
// and the reload after a short outage reading only what the list may have missed.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { RevocationFeed, RevocationListener } from '../lib/index.js'
import { StoreClock } from '../lib/clock.js'
import { RevocationList } from '../lib/revocations.js'
import { buildApp, login, untilUp } from './helpers/app.js'
import { logout, me, silent } from './helpers/feed.js'
import { startRedis } from './helpers/redis.mjs'

t.test('CLIENT KILL TYPE pubsub, then a logout on another instance at once: no instance accepts the token (20 trials)', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const a = await buildApp(t, { redis: redis.url })
  const b = await buildApp(t, { redis: redis.url })
  let accepted = 0
  let answers = 0
  for (let trial = 0; trial < 20; trial++) {
    t.ok(await untilUp(a, 'revocationFeed') && await untilUp(b, 'revocationFeed'), `trial ${trial}: both feeds up`)
    const tokens = await login(a, `killed-${trial}`)
    await inspect.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    await logout(b, tokens.refreshToken)
    // Until both feeds are back, and once more after.
    for (let round = 0; round < 500; round++) {
      const up = (await a.tokenSessions.health()).revocationFeed === 'up' && (await b.tokenSessions.health()).revocationFeed === 'up'
      for (const app of [a, b]) {
        answers++
        if ((await me(app, tokens.accessToken)).statusCode === 200) accepted++
      }
      if (up) break
    }
  }
  t.equal(accepted, 0, `no acceptance anywhere (${answers} requests while the feeds reconnected)`)
})

t.test('access tokens keep working while Redis is down (store and feed), and revocation works after', async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { redis: redis.url, storeTimeout: 300 })
  const tokens = await login(app, 'down-user')
  await redis.stop()
  const statuses: number[] = []
  const slowest = { ms: 0 }
  for (let n = 0; n < 30; n++) {
    const start = performance.now()
    statuses.push((await me(app, tokens.accessToken)).statusCode)
    if (n > 0) slowest.ms = Math.max(slowest.ms, performance.now() - start)
    await sleep(50)
  }
  t.same(new Set(statuses), new Set([200]), 'every request answered 200 while Redis was down')
  t.ok(slowest.ms < 300, `only the first waited for the store's timeout (the slowest after it took ${slowest.ms.toFixed(0)} ms)`)
  t.equal((await app.tokenSessions.health()).ok, false, 'health says the store is down')
  await redis.start()
  t.ok(await untilUp(app, 'revocationFeed'), 'the feed comes back')
  // The restarted Redis kept nothing (no persistence here): a session of its own.
  const after = await login(app, 'down-user')
  t.equal(await logout(app, after.refreshToken), 204)
  t.same(await me(app, after.accessToken), { statusCode: 401, code: 'FTS_SESSION_REVOKED' })
})

t.test('after a short outage the list reloads only what it may have missed', async (t) => {
  const froms: Array<number | undefined> = []
  const listeners: RevocationListener[] = []
  const feed: RevocationFeed = {
    watch: async (listener) => { listeners.push(listener); return async () => {} },
    revocations: async (from?: number) => { froms.push(from); return [] }
  }
  const list = new RevocationList(feed, new StoreClock(async () => Date.now(), silent), { maxOutageMs: 0, onOutage: 'check-store', rememberMs: 60_000 }, silent)
  const started = list.start(1000)
  listeners[0]?.connected()
  await started
  t.same(froms, [undefined], 'the first load reads everything')
  listeners[0]?.disconnected(1_000_000)
  listeners[0]?.disconnected(1_500_000)
  t.equal(list.checkFeed(), true, 'down: the store is asked')
  listeners[0]?.connected()
  await sleep(20)
  t.same(froms, [undefined, 1_000_000 + 60_000 - 5000], 'from the first miss on, less the clock tolerance')
  t.equal(list.checkFeed(), false, 'up again')
  listeners[0]?.disconnected()
  listeners[0]?.connected()
  await sleep(20)
  t.same(froms.at(-1), undefined, 'a feed that cannot say since when: everything')
  await list.close()
})
