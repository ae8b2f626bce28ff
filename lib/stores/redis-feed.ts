import type { Cluster, Redis } from 'ioredis'
import type { RedisClient } from './redis.js'
import type { Revocation, RevocationFeed, RevocationListener } from './store.js'

/** On a Cluster, how soon the revocation feed moves to the next node after losing one. */
const CLUSTER_RESUBSCRIBE_DELAY = 100

/** Where the Redis store keeps and announces revocations. */
export interface RedisFeedOptions {
  /** The channel the scripts publish on (the client's key prefix included). */
  channel: string
  /** Standalone: the store-wide sorted set of revocations. */
  revokedKey: string
  /** Cluster: the pattern of the per-user sorted sets to scan on every primary. */
  clusterPattern: string
}

/**
 * The revocation feed on Redis: pub/sub for what is announced, the sorted sets of
 * revocations for a reload after every (re)connect, and on a Cluster a subscriber that
 * moves from node to node.
 */
export class RedisRevocationFeed implements RevocationFeed {
  readonly #client: Redis | Cluster
  readonly #cluster: boolean
  readonly #options: RedisFeedOptions

  constructor (client: RedisClient, cluster: boolean, options: RedisFeedOptions) {
    // Typed as this package's ioredis; an app's client of ioredis 5 has the same API for
    // what the feed calls (zrange, scan, nodes, duplicate, subscribe and their events).
    this.#client = client as unknown as Redis | Cluster
    this.#cluster = cluster
    this.#options = options
  }

  async revocations (): Promise<Revocation[]> {
    if (!this.#cluster) return pairs(await this.#client.zrange(this.#options.revokedKey, '0', '-1', 'WITHSCORES'))
    // On a Cluster the revocations are spread over the users' slots: scan every primary.
    const revocations: Revocation[] = []
    for (const node of (this.#client as Cluster).nodes('master')) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', this.#options.clusterPattern, 'COUNT', 1000)
        cursor = next
        for (const key of keys) revocations.push(...pairs(await node.zrange(key, '0', '-1', 'WITHSCORES')))
      } while (cursor !== '0')
    }
    return revocations
  }

  /**
   * Watches the revocation channel on a connection of its own (a subscribed connection
   * can do nothing else). After every (re)connect it subscribes again and waits for Redis
   * to confirm before it reports `connected`, so a reload that follows misses nothing.
   */
  async watch (listener: RevocationListener): Promise<() => Promise<void>> {
    const { channel } = this.#options
    const watch = (subscriber: Redis): Redis => {
      subscriber.on('error', () => {})
      subscriber.on('close', () => listener.disconnected())
      subscriber.on('message', (from: string, message: string) => {
        if (from === channel) listener.revoked(parseAnnouncement(message))
      })
      // subscribe() never rejects: a connection lost meanwhile comes back through 'ready'.
      subscriber.on('ready', () => { subscribe(subscriber) })
      // A copy of a lazyConnect client is lazy too, and nothing else would make it connect.
      if (subscriber.status === 'wait') subscriber.connect().catch(() => {})
      return subscriber
    }
    const subscribe = async (subscriber: Redis): Promise<void> => {
      try {
        await subscriber.subscribe(channel)
        listener.connected()
      /* c8 ignore start -- only when the connection drops between 'ready' and the reply to
         SUBSCRIBE, which no test can time; 'close', then 'ready' (subscribing again), follow. */
      } catch {}
      /* c8 ignore stop */
    }
    if (!this.#cluster) {
      const subscriber = watch((this.#client as Redis).duplicate(SUBSCRIBER))
      return async () => {
        subscriber.removeAllListeners('close')
        subscriber.disconnect()
      }
    }
    return this.#watchCluster(watch)
  }

  /**
   * On a Cluster, a message published on any node reaches every node, so one connection
   * to any node serves. It is the feed's own, not the Cluster client's subscriber: that
   * one moves to another node by itself when its node goes away, and resubscribes, but
   * tells no one, and what was published meanwhile would be missed without a reload.
   * Here each move is a new connection, whose 'close' and 'ready' reach the listener as a
   * standalone client's do: down, then up and reloaded. Nodes are taken in turn, so a
   * dead one is not picked twice in a row.
   */
  #watchCluster (watch: (subscriber: Redis) => Redis): () => Promise<void> {
    const cluster = this.#client as Cluster
    let subscriber: Redis | undefined
    let retry: NodeJS.Timeout | undefined
    let turn = 0
    const next = (): void => {
      const nodes = cluster.nodes('all')
      // Before the client has learnt its nodes: wait until it has. A lazyConnect client
      // connects on its first command; this watch is one.
      if (nodes.length === 0) {
        cluster.once('ready', next)
        if (cluster.status === 'wait') cluster.connect().catch(() => {})
        return
      }
      subscriber = watch((nodes[turn++ % nodes.length] as Redis).duplicate(SUBSCRIBER))
      subscriber.once('end', () => { retry = setTimeout(next, CLUSTER_RESUBSCRIBE_DELAY) })
    }
    next()
    return async () => {
      cluster.off('ready', next)
      clearTimeout(retry)
      if (subscriber === undefined) return
      subscriber.removeAllListeners('close')
      subscriber.removeAllListeners('end')
      subscriber.disconnect()
    }
  }
}

/**
 * The feed's connection resubscribes itself on 'ready' (and reports it). ioredis's own
 * resubscription sends a SUBSCRIBE whose promise nothing awaits: a connection closed before
 * its reply (a refused reconnect, a shutdown) rejected it as an unhandled rejection.
 */
const SUBSCRIBER = { autoResubscribe: false } as const

/** A ZRANGE WITHSCORES reply as revocations. */
function pairs (flat: string[]): Revocation[] {
  const revocations: Revocation[] = []
  for (let i = 0; i < flat.length; i += 2) revocations.push(revocationOf(flat[i] as string, Number(flat[i + 1])))
  return revocations
}

/**
 * A member of the revoked set: a session id, or a stamp, `u:<time>:<spared id>:<user id>`
 * (a session id never holds a colon; a user id may, so it comes last).
 */
function revocationOf (member: string, until: number): Revocation {
  if (!member.startsWith('u:')) return { sessionId: member, until }
  const [, startedBefore, except] = member.split(':', 3) as [string, string, string]
  const userId = member.slice(4 + startedBefore.length + except.length)
  return except === '' ? { userId, startedBefore: Number(startedBefore), until } : { userId, startedBefore: Number(startedBefore), except, until }
}

/** "<until> <id> <id> ..." or "<until> <stamp>" as the scripts publish them. */
function parseAnnouncement (message: string): Revocation[] {
  const space = message.indexOf(' ')
  const until = Number(message.slice(0, space))
  const rest = message.slice(space + 1)
  if (rest.startsWith('u:')) return [revocationOf(rest, until)]
  return rest.split(' ').map((sessionId) => ({ sessionId, until }))
}
