import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { assertRedisInstalled, clusterNodeArgs, freePort, joinCluster, killProcess, spawnRedis } from './redis.mjs'

type Teardown = { teardown: (fn: () => unknown) => void }

/** One redis-server (or sentinel) process of a topology, which a test may kill. */
export class Node {
  #process: ChildProcess | undefined
  constructor (readonly port: number, readonly args: string[]) {}

  async start (): Promise<void> {
    this.#process = await spawnRedis(this.port, this.args)
  }

  /** SIGKILL: a crash, not a shutdown. */
  async kill (): Promise<void> {
    const child = this.#process
    this.#process = undefined
    await killProcess(child)
  }
}

async function startNodes (t: Teardown, count: number, argsFor: (port: number, dir: string) => string[]): Promise<Node[]> {
  assertRedisInstalled()
  const dir = mkdtempSync(join(tmpdir(), 'fts-topology-'))
  const nodes: Node[] = []
  t.teardown(async () => {
    for (const node of nodes) await node.kill()
    rmSync(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < count; i++) {
    const port = await freePort()
    const node = new Node(port, argsFor(port, dir))
    nodes.push(node)
    await node.start()
  }
  return nodes
}

/** Three primaries with `cluster-enabled yes`, joined by `redis-cli --cluster create`. */
export async function startCluster (t: Teardown): Promise<Node[]> {
  const nodes = await startNodes(t, 3, clusterNodeArgs)
  await joinCluster(nodes.map((node) => node.port))
  return nodes
}

export async function startSentinel (t: Teardown): Promise<{ primary: Node, replica: Node, sentinels: Node[] }> {
  const plain = (port: number, dir: string): string[] => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
  const [primary] = await startNodes(t, 1, plain) as [Node]
  const [replica] = await startNodes(t, 1, (port, dir) => [...plain(port, dir), '--replicaof', '127.0.0.1', String(primary.port)]) as [Node]
  const sentinels = await startNodes(t, 3, (port, dir) => {
    const config = join(dir, `sentinel-${port}.conf`)
    writeFileSync(config, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor primary 127.0.0.1 ${primary.port} 2`,
      'sentinel down-after-milliseconds primary 1000',
      'sentinel failover-timeout primary 5000',
      'sentinel parallel-syncs primary 1'
    ].join('\n') + '\n')
    return [config, '--sentinel']
  })
  // Wait until the replica is in sync and every sentinel knows it.
  const replicaClient = new Redis(replica.port, '127.0.0.1')
  for (let i = 0; i < 100 && !/master_link_status:up/.test(await replicaClient.info('replication')); i++) await sleep(100)
  replicaClient.disconnect()
  for (const sentinel of sentinels) {
    const client = new Redis(sentinel.port, '127.0.0.1')
    for (let i = 0; i < 100 && (await client.call('SENTINEL', 'REPLICAS', 'primary') as unknown[]).length === 0; i++) await sleep(100)
    client.disconnect()
  }
  return { primary, replica, sentinels }
}
