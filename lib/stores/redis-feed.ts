import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { Heartbeat } from './feed-heartbeat.js'
import type { BucketReader, HeartbeatWriter, RedisClient } from './redis.js'
import type { Revocation, RevocationFeed, RevocationListener, UserRevocation } from './store.js'

/** On a Cluster, how soon the revocation feed moves to the next node after losing one. */
const CLUSTER_RESUBSCRIBE_DELAY = 100

/** How many revocation buckets a reload reads at most at once (a command each, pipelined). */
const RELOAD_BATCH = 512
/** How many it reads first, before it knows how full the buckets are. */
const FIRST_BATCH = 16
/** About how many revocations each batch brings: what an instance adds between two turns of its event loop. */
const CHUNK_ENTRIES = 10_000
/** How many batches are on their way at once. */
const READ_AHEAD = 2
/** The most entries one command reads of a bucket: a larger bucket is read in pages. */
const BUCKET_PAGE = 500

/** Where the Redis store keeps and announces revocations. */
export interface RedisFeedOptions {
  /** The channel the scripts publish on (the client's key prefix included). */
  channel: string
  /** The revocation buckets (sorted sets): one per hash slot on a Cluster, bucket n in slot n. */
  buckets: readonly string[]
  /** The heartbeat key in hash slot n (on one server, the one key). */
  heartbeatKey: (slot: number) => string
  /** What each instance's heartbeat channel starts with (the client's key prefix included); its id follows. */
  heartbeatChannel: string
  /** How often heartbeats are sent (on a Cluster, to each primary in turn, each once an interval), in ms. */
  heartbeatInterval: number
  /** How long a heartbeat may take from its write to its arrival, in ms. */
  heartbeatTimeout: number
  /** Called with each error of the feed's own connections (ioredis prints those no one listens to). */
  onError: (error: Error) => void
}

/**
 * The revocation feed on Redis: pub/sub for what is announced, the revocation buckets for
 * a reload after every (re)connect, and on a Cluster a subscriber that moves from node to
 * node.
 */
export class RedisRevocationFeed implements RevocationFeed {
  readonly #client: Redis | Cluster
  readonly #cluster: boolean
  readonly #options: RedisFeedOptions
  readonly #channel: Buffer

  constructor (client: RedisClient, cluster: boolean, options: RedisFeedOptions) {
    // Typed as this package's ioredis; an app's client of ioredis 5 has the same API for
    // what the feed calls (pipeline, the bucket script's command, nodes, duplicate, subscribe and their events).
    this.#client = client as unknown as Redis | Cluster
    this.#cluster = cluster
    this.#options = options
    this.#channel = Buffer.from(options.channel)
  }

  /**
   * Every bucket's revocations (from `from` on, by how long they are remembered), a batch at a time: each batch is one pipeline (on a Cluster, of buckets
   * on one primary) and one chunk of about CHUNK_ENTRIES revocations, so a reload of a
   * million never holds them all at once nor blocks the event loop long, and no command
   * reads more than a page. The next batches are on their way while the caller adds a chunk.
   */
  async * revocations (from?: number): AsyncGenerator<Revocation[]> {
    const min = from === undefined ? '-inf' : String(from)
    // The buckets left to read, one list per primary, emptied from the front.
    const groups = this.#byPrimary()
    let batch = FIRST_BATCH
    const read = (): Promise<{ buckets: number, revocations: Revocation[] }> | undefined => {
      while (groups[0]?.length === 0) groups.shift()
      const buckets = groups[0]?.splice(0, batch)
      if (buckets === undefined) return undefined
      const reading = this.#readBatch(buckets, min).then((revocations) => ({ buckets: buckets.length, revocations }))
      // Handled here too: a reload given up after a failure leaves the next batch unread.
      reading.catch(() => {})
      return reading
    }
    // READ_AHEAD batches on their way: Redis reads them while the caller takes a chunk.
    const reading: Array<Promise<{ buckets: number, revocations: Revocation[] }>> = []
    const readAhead = (): void => {
      for (let next; reading.length < READ_AHEAD && (next = read()) !== undefined;) reading.push(next)
    }
    readAhead()
    for (let next; (next = reading.shift()) !== undefined;) {
      const { buckets, revocations } = await next
      // As many buckets next as would bring about CHUNK_ENTRIES, by how full these were.
      batch = Math.max(1, Math.min(RELOAD_BATCH, Math.floor(buckets * CHUNK_ENTRIES / Math.max(revocations.length, 1))))
      readAhead()
      yield revocations
    }
  }

  /**
   * The buckets grouped by the primary that serves their slot, as the client last learnt
   * it: a pipeline goes to one node. (Slots that move meanwhile fail the reload, and the
   * list tries again.)
   */
  #byPrimary (): string[][] {
    const { buckets } = this.#options
    if (!this.#cluster) return [[...buckets]]
    const slots = (this.#client as Cluster).slots
    const groups = new Map<string, string[]>()
    buckets.forEach((bucket, slot) => {
      // The slot's primary and replicas, as the client knows them (none yet: one group).
      const node = String(slots[slot])
      const group = groups.get(node)
      if (group === undefined) groups.set(node, [bucket])
      else group.push(bucket)
    })
    return [...groups.values()]
  }

  /** The first page of each of `buckets`, in one pipeline, and the rest of the larger ones, side by side. */
  async #readBatch (buckets: readonly string[], min: string): Promise<Revocation[]> {
    const pipeline = this.#client.pipeline() as unknown as BucketReader & { exec: () => Promise<Array<[Error | null, Buffer]>> }
    for (const bucket of buckets) pipeline.tokenSessionsRevocationsBuffer(bucket, min, '+inf', 0, BUCKET_PAGE)
    const replies = await pipeline.exec()
    const revocations: Revocation[] = []
    const larger: Array<Promise<void>> = []
    const failures: Error[] = []
    for (const [n, [error, flat]] of replies.entries()) {
      if (error !== null) {
        failures.push(error)
        continue
      }
      const read = pageOf(flat, revocations)
      if (read.full) larger.push(this.#readRest(buckets[n] as string, read, revocations))
    }
    // Every read started is awaited, even after a failure: none is left to reject unheard.
    await Promise.all(larger)
    if (failures.length > 0) throw failures[0]
    return revocations
  }

  /**
   * The rest of a bucket larger than a page, a page at a time by score. A full page ends
   * at some score: every entry of that score is read again, whole, and those not seen yet
   * kept (an offset past the ones seen would skip one if an entry before them went
   * meanwhile), then the next page starts above it. Entries added meanwhile come through
   * the channel. A score's entries are few: the ids one script revoked at once (at most a
   * hundred), or revocations of one millisecond in one bucket.
   */
  async #readRest (bucket: string, first: Page, into: Revocation[]): Promise<void> {
    const reader = this.#client as unknown as BucketReader
    for (let read = first; read.full;) {
      const { last } = read
      const seen = new Set(read.atLast.map(keyOf))
      const ties: Revocation[] = []
      pageOf(await reader.tokenSessionsRevocationsBuffer(bucket, last, last, 0, -1), ties)
      for (const revocation of ties) if (!seen.has(keyOf(revocation))) into.push(revocation)
      read = pageOf(await reader.tokenSessionsRevocationsBuffer(bucket, `(${last}`, '+inf', 0, BUCKET_PAGE), into)
    }
  }

  /**
   * Watches the revocation channel on a connection of its own (a subscribed connection
   * can do nothing else), and proves it with heartbeats (see {@link Heartbeat}) on a
   * channel of this watch alone, so that what each instance hears does not grow with the
   * number of instances. After every (re)connect it subscribes again, and reports
   * `connected` only once a heartbeat written after Redis confirmed the subscription has
   * arrived: a reload that follows misses nothing, and a connection that stays open but
   * delivers nothing (a dead NAT entry, a proxy that lost its upstream) is found out
   * within the heartbeat's interval and timeout, reported down and connected again.
   */
  async watch (listener: RevocationListener): Promise<() => Promise<void>> {
    const { channel, heartbeatTimeout } = this.#options
    const beats = `${this.#options.heartbeatChannel}${randomBytes(9).toString('base64url')}`
    const beatsChannel = Buffer.from(beats)
    // The last proof covers its own primary; on a Cluster another primary's may be up to
    // an interval older, and announcements a timeout on their way.
    const missedSince = (since: number | undefined): number | undefined =>
      since === undefined ? undefined : since - this.#options.heartbeatInterval - heartbeatTimeout
    const watch = (subscriber: Redis, restart: () => void): Redis => {
      const heartbeat = new Heartbeat({
        send: async (beat) => { await this.#beat(beats, beat) },
        proven: () => listener.connected(),
        alive: (at) => listener.alive?.(at),
        late: (since, silent) => {
          listener.disconnected(missedSince(since))
          if (silent) restart()
        }
      }, () => this.#beatInterval(), heartbeatTimeout)
      // From the connection to the confirmed subscription: a path that died silently
      // hangs there (the ready check's or SUBSCRIBE's reply never comes).
      let subscribing: NodeJS.Timeout | undefined
      subscriber.on('error', this.#options.onError)
      subscriber.on('connect', () => {
        clearTimeout(subscribing)
        subscribing = setTimeout(restart, heartbeatTimeout)
        subscribing.unref()
      })
      subscriber.on('close', () => {
        clearTimeout(subscribing)
        const since = heartbeat.since
        heartbeat.unsubscribed()
        listener.disconnected(missedSince(since))
      })
      // As bytes: what is remembered is sliced out of them as strings of their own, not as
      // slices of the message, which would keep every message alive as long.
      subscriber.on('messageBuffer', (from: Buffer, message: Buffer) => {
        if (from.equals(this.#channel)) listener.revoked(parseAnnouncement(message))
        else if (from.equals(beatsChannel)) heartbeat.received(...parseBeat(message))
      })
      // subscribe() never rejects: a connection lost meanwhile comes back through 'ready'.
      subscriber.on('ready', () => { subscribe(subscriber, heartbeat, () => clearTimeout(subscribing)) })
      // A copy of a lazyConnect client is lazy too, and nothing else would make it connect.
      if (subscriber.status === 'wait') subscriber.connect().catch(() => {})
      stops.push(() => {
        clearTimeout(subscribing)
        heartbeat.stop()
      })
      return subscriber
    }
    const stops: Array<() => void> = []
    const subscribe = async (subscriber: Redis, heartbeat: Heartbeat, confirmed: () => void): Promise<void> => {
      try {
        await subscriber.subscribe(channel, beats)
        confirmed()
        heartbeat.subscribed()
      /* c8 ignore start -- only when the connection drops between 'ready' and the reply to
         SUBSCRIBE, which no test can time; 'close', then 'ready' (subscribing again), follow. */
      } catch {}
      /* c8 ignore stop */
    }
    const stopAll = (): void => { for (const stop of stops.splice(0)) stop() }
    if (!this.#cluster) {
      const subscriber: Redis = watch((this.#client as Redis).duplicate(SUBSCRIBER), () => { subscriber.disconnect(true) })
      return async () => {
        stopAll()
        subscriber.removeAllListeners('close')
        subscriber.disconnect()
      }
    }
    const stop = this.#watchCluster(watch)
    return async () => {
      stopAll()
      await stop()
    }
  }

  /**
   * Writes heartbeat `beat`, which the store publishes on `channel`: on a Cluster through
   * each primary in turn (a key in a slot it serves), since each publishes the revocations
   * of its own slots.
   */
  async #beat (channel: string, beat: number): Promise<void> {
    const slots = this.#heartbeatSlots()
    const slot = slots[beat % slots.length] as number
    await (this.#client as unknown as HeartbeatWriter).tokenSessionsHeartbeat(this.#options.heartbeatKey(slot), channel, beat, this.#options.heartbeatTimeout)
  }

  /** How long until the next heartbeat: on a Cluster, the interval shared by its primaries. */
  #beatInterval (): number {
    return Math.max(1, Math.floor(this.#options.heartbeatInterval / this.#heartbeatSlots().length))
  }

  /** One slot of each primary, as the client last learnt them (on one server, or before it has: one). */
  #heartbeatSlots (): number[] {
    if (!this.#cluster) return ONE_SLOT
    const slots = (this.#client as Cluster).slots
    const primaries = new Map<string, number>()
    slots.forEach((nodes, slot) => {
      const primary = nodes[0]
      if (primary !== undefined && !primaries.has(primary)) primaries.set(primary, slot)
    })
    /* c8 ignore next -- heartbeats start once a node confirmed the subscription, when the client knows its slots */
    return primaries.size === 0 ? ONE_SLOT : [...primaries.values()]
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
  #watchCluster (watch: (subscriber: Redis, restart: () => void) => Redis): () => Promise<void> {
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
      // Connecting again here means moving on: the 'end' of a connection closed on purpose.
      const current: Redis = watch((nodes[turn++ % nodes.length] as Redis).duplicate(SUBSCRIBER), () => { current.disconnect() })
      current.once('end', () => { retry = setTimeout(next, CLUSTER_RESUBSCRIBE_DELAY) })
      subscriber = current
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

/** The heartbeat's slot on one server, where any key serves. */
const ONE_SLOT = [0]

/** "<beat> <store time>" as heartbeat.lua publishes it. */
function parseBeat (message: Buffer): [number, number] {
  const text = message.toString('latin1')
  const space = text.indexOf(' ')
  return [Number(text.slice(0, space)), Number(text.slice(space + 1))]
}

/** What one read of a bucket found: whether it was a full page, its last score, and its entries of that score. */
interface Page {
  full: boolean
  last: string
  atLast: Revocation[]
}

/** What tells two entries of a bucket apart: a session id, or a stamp's user (a bucket holds one stamp per user). */
function keyOf (revocation: Revocation): string {
  return 'sessionId' in revocation ? revocation.sessionId : `u:${revocation.userId}`
}

/** Adds the revocations of a page as revocations.lua gives it ("<score> <length> <member> ...") to `into`. */
function pageOf (reply: Buffer, into: Revocation[]): Page {
  let last = ''
  let lastFrom = into.length
  let count = 0
  for (let at = 0; at < reply.length; count++) {
    const scoreEnd = reply.indexOf(SPACE, at)
    const score = reply.toString('latin1', at, scoreEnd)
    let length = 0
    for (at = scoreEnd + 1; reply[at] !== SPACE; at++) length = length * 10 + (reply[at] as number) - 0x30
    const member = at + 1
    at = member + length + 1
    const until = Number(score)
    into.push(isStampAt(reply, member) ? stampOf(reply.subarray(member, member + length), until) : { sessionId: reply.toString('latin1', member, member + length), until })
    if (score !== last) lastFrom = into.length - 1
    last = score
  }
  return { full: count === BUCKET_PAGE, last, atLast: into.slice(lastFrom) }
}

/** The byte of the space between an announcement's parts. */
const SPACE = 0x20
/** The byte of the colon between a stamp's parts. */
const COLON = 0x3a

/** Whether the member at `at` is a stamp, `u:…` (a session id never holds a colon). */
function isStampAt (bytes: Buffer, at: number): boolean {
  return bytes[at] === 0x75 && bytes[at + 1] === COLON
}

/** A stamp, `u:<time>:<spared id>:<user id>` (a user id may hold a colon, so it comes last). */
function stampOf (member: Buffer, until: number): UserRevocation {
  const timeEnd = member.indexOf(COLON, 2)
  const exceptEnd = member.indexOf(COLON, timeEnd + 1)
  const userId = member.toString('utf8', exceptEnd + 1)
  const startedBefore = Number(member.toString('latin1', 2, timeEnd))
  if (exceptEnd === timeEnd + 1) return { userId, startedBefore, until }
  return { userId, startedBefore, except: member.toString('latin1', timeEnd + 1, exceptEnd), until }
}

/** "<until> <id> <id> ..." or "<until> <stamp>" as the scripts publish them. */
function parseAnnouncement (message: Buffer): Revocation[] {
  const space = message.indexOf(SPACE)
  const until = Number(message.toString('latin1', 0, space))
  const rest = message.subarray(space + 1)
  if (isStampAt(rest, 0)) return [stampOf(rest, until)]
  const revocations: Revocation[] = []
  for (let start = 0; start < rest.length;) {
    const end = rest.indexOf(SPACE, start)
    const stop = end === -1 ? rest.length : end
    revocations.push({ sessionId: rest.toString('latin1', start, stop), until })
    start = stop + 1
  }
  return revocations
}
