// A TCP proxy on loopback in front of one Redis port, through which the fault harness makes
// the network misbehave: latency, silent subscriber connections, a partition, a cut.
import { createServer, connect } from 'node:net'

/** @typedef {import('node:net').Socket} Socket */

/**
 * Chunks waiting to be written to one side of a connection, in order, each with its due time.
 * @typedef {object} Lane
 * @property {Socket} to
 * @property {{ due: number, chunk: Buffer }[]} queue
 * @property {NodeJS.Timeout | undefined} timer
 */

/**
 * One proxied connection.
 * @typedef {object} Link
 * @property {Socket} client
 * @property {Socket} upstream
 * @property {boolean} subscriber whether the client has sent a (P|S)SUBSCRIBE
 * @property {string} tail the end of what the client sent, to find a command split across chunks
 * @property {Lane} toUpstream
 * @property {Lane} toClient
 */

// The command name of a RESP array: `*<n>\r\n$<len>\r\n(p|s)?subscribe\r\n`. UNSUBSCRIBE does
// not match: its name does not start right after the length line with "subscribe".
const SUBSCRIBE = /\*\d+\r\n\$\d+\r\n[ps]?subscribe\r\n/i
// Longer than any match of SUBSCRIBE, so that one split across two chunks is still found.
const TAIL_LENGTH = 64

export class FaultProxy {
  /** @type {import('node:net').Server} */
  #server
  /** @type {Set<Link>} */
  #links = new Set()
  /** @type {number} */
  #target
  #latencyMs = 0
  #subscribersSilent = false
  #partitioned = false

  /**
   * Use {@link FaultProxy.start}.
   * @param {number} targetPort
   */
  constructor (targetPort) {
    this.#target = targetPort
    this.#server = createServer((client) => this.#relay(client))
    this.#server.on('error', () => {})
  }

  /**
   * A proxy on a free loopback port forwarding to `targetPort` on loopback.
   * @param {number} targetPort
   * @returns {Promise<FaultProxy>}
   */
  static async start (targetPort) {
    const proxy = new FaultProxy(targetPort)
    await new Promise((resolve, reject) => {
      proxy.#server.once('error', reject)
      proxy.#server.listen(0, '127.0.0.1', () => resolve(undefined))
    })
    return proxy
  }

  /** @returns {number} */
  get port () {
    const address = this.#server.address()
    return typeof address === 'object' && address !== null ? address.port : 0
  }

  /** @returns {number} */
  get target () {
    return this.#target
  }

  /**
   * Forwards new connections to another port; current ones stay where they are.
   * @param {number} port
   */
  set target (port) {
    this.#target = port
  }

  /**
   * Delays every chunk, both ways, by `ms` (0 turns it off); order is kept per connection.
   * @param {number} ms
   */
  setLatency (ms) {
    this.#latencyMs = ms
  }

  /** Connections that have subscribed (or subscribe from now on) forward nothing and close nothing. */
  silenceSubscribers () {
    this.#subscribersSilent = true
  }

  /** Every connection, current and new, forwards nothing and closes nothing. */
  partition () {
    this.#partitioned = true
  }

  /** Destroys every current connection, both sides at once; new ones are forwarded. */
  cut () {
    for (const link of this.#links) this.#end(link)
  }

  /**
   * Plain forwarding again. What was dropped while silent is lost, and a connection that was
   * silent is destroyed rather than resumed: its two ends no longer agree on what was said
   * (replies lost mid-stream), and a destroyed connection lets its client reconnect cleanly,
   * which is what it would do once it noticed the silence.
   */
  heal () {
    for (const link of this.#links) if (this.#silent(link)) this.#end(link)
    this.#latencyMs = 0
    this.#subscribersSilent = false
    this.#partitioned = false
  }

  /**
   * Destroys every connection and stops listening.
   * @returns {Promise<void>}
   */
  async close () {
    this.cut()
    await new Promise((resolve) => this.#server.close(() => resolve(undefined)))
  }

  /**
   * @param {Link} link
   * @returns {boolean}
   */
  #silent (link) {
    return this.#partitioned || (this.#subscribersSilent && link.subscriber)
  }

  /** @param {Socket} client */
  #relay (client) {
    const upstream = connect(this.#target, '127.0.0.1')
    /** @type {Link} */
    const link = {
      client,
      upstream,
      subscriber: false,
      tail: '',
      toUpstream: { to: upstream, queue: [], timer: undefined },
      toClient: { to: client, queue: [], timer: undefined }
    }
    this.#links.add(link)
    client.on('data', (chunk) => {
      if (!link.subscriber) this.#watchForSubscribe(link, chunk)
      this.#forward(link, link.toUpstream, chunk)
    })
    upstream.on('data', (chunk) => this.#forward(link, link.toClient, chunk))
    const end = () => this.#end(link)
    for (const socket of [client, upstream]) {
      socket.on('error', end)
      socket.on('close', end)
    }
  }

  /**
   * @param {Link} link
   * @param {Buffer} chunk
   */
  #watchForSubscribe (link, chunk) {
    const text = link.tail + chunk.toString('latin1')
    if (SUBSCRIBE.test(text)) link.subscriber = true
    link.tail = text.slice(-TAIL_LENGTH)
  }

  /**
   * Writes now, or queues behind earlier chunks when there is latency or a queue already.
   * @param {Link} link
   * @param {Lane} lane
   * @param {Buffer} chunk
   */
  #forward (link, lane, chunk) {
    if (this.#silent(link)) return
    if (this.#latencyMs === 0 && lane.queue.length === 0) {
      lane.to.write(chunk)
      return
    }
    lane.queue.push({ due: Date.now() + this.#latencyMs, chunk })
    this.#schedule(link, lane)
  }

  /**
   * @param {Link} link
   * @param {Lane} lane
   */
  #schedule (link, lane) {
    if (lane.timer !== undefined || lane.queue.length === 0) return
    const wait = Math.max(0, lane.queue[0].due - Date.now())
    lane.timer = setTimeout(() => {
      lane.timer = undefined
      const now = Date.now()
      while (lane.queue.length > 0 && lane.queue[0].due <= now) {
        const { chunk } = /** @type {{ chunk: Buffer }} */ (lane.queue.shift())
        // Silenced while it waited: dropped like the chunks that arrive now.
        if (!this.#silent(link)) lane.to.write(chunk)
      }
      this.#schedule(link, lane)
    }, wait)
  }

  /** @param {Link} link */
  #end (link) {
    if (!this.#links.delete(link)) return
    for (const lane of [link.toUpstream, link.toClient]) {
      clearTimeout(lane.timer)
      lane.queue.length = 0
    }
    link.client.destroy()
    link.upstream.destroy()
  }
}
