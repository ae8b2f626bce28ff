// A TCP relay in front of a Redis that can make its subscriber connections go silent, with no FIN and no RST.
import { createServer, connect, type Server, type Socket } from 'node:net'

/** One relayed connection: the client's side, Redis's side, and whether it has subscribed. */
interface Link {
  client: Socket
  upstream: Socket
  subscriber: boolean
}

/**
 * Forwards every connection to Redis on `port`. `silence()` stops forwarding, both ways,
 * on every connection that has sent SUBSCRIBE (and on any that subscribes later), and
 * closes nothing: what a NAT or a load balancer whose entry timed out, or a proxy that lost
 * its upstream, does to an idle pub/sub connection. `restore()` forwards again (what was
 * sent meanwhile is lost, as it would be). Other connections are untouched.
 */
export class SilencingRelay {
  readonly #server: Server
  readonly #links = new Set<Link>()
  #silent = false

  private constructor (server: Server) {
    this.#server = server
  }

  static async start (t: { teardown: (fn: () => unknown) => void }, port: number): Promise<SilencingRelay> {
    const server = createServer()
    const relay = new SilencingRelay(server)
    server.on('connection', (client) => relay.#relay(client, port))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => relay.close())
    return relay
  }

  get url (): string {
    const address = this.#server.address()
    return `redis://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  }

  silence (): void {
    this.#silent = true
  }

  restore (): void {
    this.#silent = false
  }

  async close (): Promise<void> {
    for (const { client, upstream } of this.#links) {
      client.destroy()
      upstream.destroy()
    }
    await new Promise((resolve) => this.#server.close(resolve))
  }

  #relay (client: Socket, port: number): void {
    const upstream = connect(port, '127.0.0.1')
    const link: Link = { client, upstream, subscriber: false }
    this.#links.add(link)
    const dropped = (): boolean => link.subscriber && this.#silent
    client.on('data', (chunk: Buffer) => {
      if (/subscribe/i.test(chunk.toString('latin1'))) link.subscriber = true
      if (!dropped()) upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (!dropped()) client.write(chunk)
    })
    const end = (): void => {
      this.#links.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', end)
    upstream.on('error', end)
  }
}
