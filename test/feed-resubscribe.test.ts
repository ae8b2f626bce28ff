// The revocation feed's connection, cut again and again just as it subscribes, then shut
// down while its subscription is on the way: each cut comes back as "down", then "up" once a
// subscription holds, and none of it as an unhandled rejection (ioredis's own
// resubscription, which nothing awaits, made one when the feed was shut down meanwhile).
import { createServer, connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { RedisStore } from '../lib/index.js'
import { startRedis } from './helpers/redis.mjs'

/** Waits until `condition` holds, at most `ms`. */
async function until (condition: () => boolean, ms: number): Promise<void> {
  for (let waited = 0; !condition() && waited < ms; waited += 20) await sleep(20)
}

t.test('a feed whose connection drops while it subscribes: no unhandled rejection, and it comes back', async (t) => {
  const redis = await startRedis(t)
  // A proxy to Redis that, while `cutting`, closes any connection that sends SUBSCRIBE,
  // and while `holding`, keeps SUBSCRIBE from Redis (no answer ever comes).
  let cutting = false
  let holding = false
  let cuts = 0
  let held = 0
  const sockets = new Set<Socket>()
  const proxy = createServer((client) => {
    const upstream = connect(redis.port, '127.0.0.1')
    sockets.add(client)
    const close = (): void => {
      sockets.delete(client)
      client.destroy()
      upstream.destroy()
    }
    client.on('data', (chunk: Buffer) => {
      if (cutting && /subscribe/i.test(chunk.toString())) {
        cuts++
        close()
        return
      }
      if (holding && /subscribe/i.test(chunk.toString())) {
        held++
        return
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
    client.on('error', close)
    upstream.on('error', close)
    client.on('close', close)
    upstream.on('close', close)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    proxy.close()
  })

  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  const store = new RedisStore({ url: `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}` })
  t.teardown(() => store.close())
  const events: string[] = []
  const stop = await store.revocationFeed.watch({ revoked: () => {}, connected: () => events.push('up'), disconnected: () => events.push('down') })
  t.teardown(stop)
  await until(() => events.includes('up'), 5000)
  t.same(events, ['up'], 'subscribed')

  cutting = true
  for (const socket of sockets) socket.destroy()
  await until(() => cuts >= 3, 10_000)
  t.ok(cuts >= 3, `the subscription was cut ${cuts} times`)
  cutting = false
  await until(() => events.at(-1) === 'up', 10_000)
  t.match(events.join(' '), /^up( down)+( up)+$/, 'down while every subscription was cut, up again once one held')

  // Cut once more, and shut the feed down while its new subscription waits for Redis.
  holding = true
  for (const socket of sockets) socket.destroy()
  await until(() => held > 0, 5000)
  t.ok(held > 0, 'a subscription is on its way')
  await stop()
  await sleep(200)
  t.same(unhandled, [], 'no unhandled rejection')
})
