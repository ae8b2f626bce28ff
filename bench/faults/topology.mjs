// The real Redis topologies the fault harness runs the apps against, on loopback, and the
// faults it injects into them: a standalone Redis (killed, restarted, paused, its clients
// killed), a Sentinel group whose primary is cut off by a network partition, and a Cluster
// whose slots move and whose primary crashes. Every `at` is `performance.now()`, the
// harness's one clock.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { assertRedisInstalled, clusterNodeArgs, freePort, killProcess, spawnRedis } from '../../test/helpers/redis.mjs'
import { FaultProxy } from './proxy.mjs'

/** @typedef {import('node:child_process').ChildProcess} ChildProcess */

const run = promisify(execFile)
const POLL_MS = 100

/**
 * Polls `check` until it returns true; throws `what` after `ms`. A check that throws counts
 * as not yet (a node restarting refuses connections for a while).
 * @param {string} what
 * @param {number} ms
 * @param {() => Promise<boolean>} check
 * @returns {Promise<void>}
 */
async function until (what, ms, check) {
  const deadline = Date.now() + ms
  /** @type {unknown} */
  let lastError
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (error) {
      lastError = error
    }
    await sleep(POLL_MS)
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${lastError === undefined ? '' : ` (last error: ${lastError})`}`)
}

/**
 * Runs `fn` with a short-lived client to loopback `port`, which fails fast instead of
 * retrying, and is always disconnected.
 * @template T
 * @param {number} port
 * @param {(client: Redis) => Promise<T>} fn
 * @returns {Promise<T>}
 */
async function withClient (port, fn) {
  const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000, lazyConnect: true })
  client.on('error', () => {})
  try {
    await client.connect()
    return await fn(client)
  } finally {
    client.disconnect()
  }
}

/**
 * One field of an INFO answer.
 * @param {string} info
 * @param {string} field
 * @returns {string | undefined}
 */
function infoField (info, field) {
  return new RegExp(`^${field}:(.*)\r?$`, 'm').exec(info)?.[1]?.trim()
}

/**
 * The arguments every redis-server here starts with.
 * @param {number} port
 * @param {string} dir
 * @returns {string[]}
 */
function baseArgs (port, dir) {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning']
}

/**
 * The processes, proxies and folders of one topology, and their idempotent teardown.
 */
class Resources {
  /** @type {Set<ChildProcess>} */
  processes = new Set()
  /** @type {FaultProxy[]} */
  proxies = []
  /** @type {string[]} */
  dirs = []

  /** @returns {string} */
  tempDir () {
    const dir = mkdtempSync(join(tmpdir(), 'fts-faults-'))
    this.dirs.push(dir)
    return dir
  }

  /**
   * @param {number} port
   * @param {string[]} args
   * @returns {Promise<ChildProcess>}
   */
  async spawn (port, args) {
    const child = await spawnRedis(port, args)
    this.processes.add(child)
    return child
  }

  /** @param {ChildProcess | undefined} child */
  async kill (child) {
    if (child === undefined) return
    this.processes.delete(child)
    await killProcess(child)
  }

  /** @returns {Promise<void>} */
  async close () {
    for (const child of [...this.processes]) await this.kill(child)
    for (const proxy of this.proxies.splice(0)) await proxy.close()
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Builds a topology with `build`, closing whatever it started if it fails midway.
 * @template T
 * @param {(resources: Resources) => Promise<T>} build
 * @returns {Promise<T & { close: () => Promise<void> }>}
 */
async function withResources (build) {
  assertRedisInstalled()
  const resources = new Resources()
  try {
    return { ...await build(resources), close: () => resources.close() }
  } catch (error) {
    await resources.close()
    throw error
  }
}

/**
 * One redis-server behind a proxy. With `aof`, it persists as our docker-compose does
 * (appendonly yes, appendfsync everysec), so its data survives a kill and restart.
 * @param {{ aof: boolean }} options
 */
export async function startStandalone ({ aof }) {
  return await withResources(async (resources) => {
    const port = await freePort()
    const dir = resources.tempDir()
    const args = [
      ...baseArgs(port, dir), '--appendonly', aof ? 'yes' : 'no', '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction'
    ]
    /** @type {ChildProcess | undefined} */
    let child = await resources.spawn(port, args)
    const proxy = await FaultProxy.start(port)
    resources.proxies.push(proxy)
    const signal = (/** @type {NodeJS.Signals} */ name) => {
      if (child === undefined) throw new Error('redis-server is not running')
      child.kill(name)
    }
    return {
      proxy,
      port,
      connection: { host: '127.0.0.1', port: proxy.port },
      /** A client to the real server (not through the proxy); the caller quits it. */
      adminClient: () => new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 }),
      /** SIGKILL: a crash. */
      kill: async () => {
        const dead = child
        child = undefined
        await resources.kill(dead)
      },
      /** Starts it again on the same port and folder (it is killed first if still running). */
      restart: async () => {
        const dead = child
        child = undefined
        await resources.kill(dead)
        child = await resources.spawn(port, args)
      },
      pause: () => signal('SIGSTOP'),
      resume: () => signal('SIGCONT'),
      /**
       * CLIENT KILL TYPE `type`, sparing the admin connection that sends it.
       * @param {'pubsub' | 'normal'} type
       * @returns {Promise<number>} how many connections were killed
       */
      clientKill: (type) => withClient(port, async (client) => /** @type {number} */ (await client.call('CLIENT', 'KILL', 'TYPE', type, 'SKIPME', 'yes')))
    }
  })
}

/**
 * A primary, one replica and three Sentinels. Every link to a data node (the apps', the
 * Sentinels', the replica's to its primary) goes through that node's proxy, and each node
 * announces its proxy's address, so that the Sentinels, and the apps they answer, only ever
 * know the proxy ports: partitioning a node's proxy cuts it off from everyone.
 */
export async function startSentinel () {
  const name = 'primary'
  return await withResources(async (resources) => {
    const dir = resources.tempDir()
    /** @type {{ port: number, proxy: FaultProxy }[]} */
    const nodes = []
    for (let i = 0; i < 2; i++) {
      const port = await freePort()
      const proxy = await FaultProxy.start(port)
      resources.proxies.push(proxy)
      const args = [
        ...baseArgs(port, dir), '--appendonly', 'no', '--dbfilename', `dump-${port}.rdb`,
        '--replica-announce-ip', '127.0.0.1', '--replica-announce-port', String(proxy.port),
        ...(i === 1 ? ['--replicaof', '127.0.0.1', String(nodes[0].proxy.port)] : [])
      ]
      await resources.spawn(port, args)
      nodes.push({ port, proxy })
    }
    const [primary, replica] = nodes
    /** @type {{ host: string, port: number }[]} */
    const sentinels = []
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const config = join(dir, `sentinel-${port}.conf`)
      writeFileSync(config, [
        `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'daemonize no', 'loglevel warning',
        'sentinel resolve-hostnames no',
        `sentinel monitor ${name} 127.0.0.1 ${primary.proxy.port} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 2000`,
        `sentinel parallel-syncs ${name} 1`
      ].join('\n') + '\n')
      await resources.spawn(port, [config, '--sentinel'])
      sentinels.push({ host: '127.0.0.1', port })
    }
    await until('the replica to be in sync', 10_000, () => withClient(replica.port, async (client) =>
      infoField(await client.info('replication'), 'master_link_status') === 'up'))
    for (const sentinel of sentinels) {
      await until(`Sentinel ${sentinel.port} to know the replica`, 10_000, () => withClient(sentinel.port, async (client) =>
        /** @type {unknown[]} */ (await client.call('SENTINEL', 'REPLICAS', name)).length === 1))
    }

    /**
     * The proxy port of the primary, as a Sentinel answers it (what the apps' clients get).
     * @param {{ port: number }} [sentinel]
     * @returns {Promise<number>}
     */
    const currentPrimary = (sentinel = sentinels[0]) => withClient(sentinel.port, async (client) => {
      const address = /** @type {[string, string] | null} */ (await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name))
      if (address === null) throw new Error('the Sentinel knows no primary')
      return Number(address[1])
    })
    /** @param {number} proxyPort */
    const nodeAt = (proxyPort) => {
      const node = nodes.find((candidate) => candidate.proxy.port === proxyPort)
      if (node === undefined) throw new Error(`no data node behind proxy port ${proxyPort}`)
      return node
    }
    /** @type {{ port: number, proxy: FaultProxy } | undefined} */
    let isolated

    return {
      name,
      sentinels,
      nodes,
      currentPrimary: () => currentPrimary(),
      /**
       * Partitions the primary from everyone, and waits until every Sentinel names the
       * replica's proxy as the primary and the replica says it is a primary.
       * @returns {Promise<{ oldPrimaryProxyPort: number, newPrimaryProxyPort: number, at: number }>}
       */
      isolatePrimary: async () => {
        const oldPrimaryProxyPort = await currentPrimary()
        isolated = nodeAt(oldPrimaryProxyPort)
        isolated.proxy.partition()
        const at = performance.now()
        let newPrimaryProxyPort = oldPrimaryProxyPort
        await until('the Sentinels to promote the replica', 20_000, async () => {
          const answers = await Promise.all(sentinels.map((sentinel) => currentPrimary(sentinel)))
          newPrimaryProxyPort = answers[0]
          if (answers.some((answer) => answer !== newPrimaryProxyPort || answer === oldPrimaryProxyPort)) return false
          // Through its proxy, as the apps reach it; ROLE rather than a write, to leave the apps' data alone.
          return await withClient(newPrimaryProxyPort, async (client) => /** @type {unknown[]} */ (await client.call('ROLE'))[0] === 'master')
        })
        // The Sentinels must answer a proxy port, or the apps would bypass the proxies.
        nodeAt(newPrimaryProxyPort)
        return { oldPrimaryProxyPort, newPrimaryProxyPort, at }
      },
      /**
       * Heals the isolated primary's proxy and waits until the Sentinels have made it a
       * replica of the new primary (at its proxy port) with its link up.
       * @returns {Promise<void>}
       */
      heal: async () => {
        if (isolated === undefined) return
        const old = isolated
        isolated = undefined
        old.proxy.heal()
        const newPrimaryProxyPort = await currentPrimary()
        await until('the old primary to replicate from the new one', 30_000, () => withClient(old.port, async (client) => {
          const info = await client.info('replication')
          return infoField(info, 'role') === 'slave' && infoField(info, 'master_port') === String(newPrimaryProxyPort) &&
            infoField(info, 'master_link_status') === 'up'
        }))
      }
    }
  })
}

/**
 * The primaries and replicas of a Cluster, as CLUSTER NODES tells them.
 * @param {number} port any node's
 * @returns {Promise<{ id: string, port: number, primary: boolean, primaryId: string, failed: boolean }[]>}
 */
async function clusterNodes (port) {
  const text = await withClient(port, async (client) => /** @type {string} */ (await client.call('CLUSTER', 'NODES')))
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, primaryId] = line.split(' ')
    return {
      id,
      port: Number(address.split('@')[0].split(':')[1]),
      primary: flags.split(',').includes('master'),
      primaryId,
      failed: /fail/.test(flags)
    }
  })
}

/**
 * Three primaries with one replica each.
 */
export async function startCluster () {
  return await withResources(async (resources) => {
    const dir = resources.tempDir()
    /** @type {Map<number, ChildProcess>} */
    const running = new Map()
    const argsOf = (/** @type {number} */ port) => [...clusterNodeArgs(port, dir), '--daemonize', 'no', '--loglevel', 'warning']
    /** @type {number[]} */
    const ports = []
    for (let i = 0; i < 6; i++) {
      const port = await freePort()
      running.set(port, await resources.spawn(port, argsOf(port)))
      ports.push(port)
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 })

    /** Waits until every running node says ok and every replica's link is up. */
    const settled = async () => {
      for (const port of running.keys()) {
        await until(`node ${port} to be ok`, 20_000, () => withClient(port, async (client) => {
          const state = infoField(/** @type {string} */ (await client.call('CLUSTER', 'INFO')), 'cluster_state')
          const replication = await client.info('replication')
          return state === 'ok' && (infoField(replication, 'role') === 'master' || infoField(replication, 'master_link_status') === 'up')
        }))
      }
    }
    await settled()
    /** @type {number | undefined} */
    let killedPort

    /** @param {number} port */
    const keyCount = (port) => withClient(port, async (client) => await client.dbsize())
    const livePrimaries = async () => {
      const someNode = [...running.keys()][0]
      return (await clusterNodes(someNode)).filter((node) => node.primary && !node.failed && running.has(node.port))
    }

    return {
      nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
      /**
       * Moves `count` slots, those holding the most keys first, from the primary with the most
       * keys to another, as `redis-cli --cluster reshard` does.
       * @param {number} count
       * @returns {Promise<{ slots: number[], from: number, to: number }>}
       */
      migrateSlots: async (count) => {
        const primaries = await livePrimaries()
        const counts = await Promise.all(primaries.map((node) => keyCount(node.port)))
        const fromIndex = counts.indexOf(Math.max(...counts))
        const from = primaries[fromIndex]
        const to = primaries[(fromIndex + 1) % primaries.length]
        const slots = await slotsToMove(from.port, count)
        for (const slot of slots) await moveSlot(slot, from, to, primaries)
        await until('every node to agree on the moved slots', 10_000, async () => {
          for (const port of running.keys()) {
            const owners = await withClient(port, (client) => Promise.all(slots.map((slot) => ownerOf(client, slot))))
            if (owners.some((owner) => owner !== to.port)) return false
          }
          return true
        })
        return { slots, from: from.port, to: to.port }
      },
      /**
       * SIGKILLs the primary holding the most keys and waits until its replica has taken over.
       * @returns {Promise<{ killedPort: number, at: number }>}
       */
      failoverPrimary: async () => {
        if (killedPort !== undefined) throw new Error('restart the killed node first')
        const primaries = await livePrimaries()
        const counts = await Promise.all(primaries.map((node) => keyCount(node.port)))
        const victim = primaries[counts.indexOf(Math.max(...counts))]
        const replica = (await clusterNodes(victim.port)).find((node) => node.primaryId === victim.id)
        if (replica === undefined) throw new Error(`primary ${victim.port} has no replica`)
        await resources.kill(running.get(victim.port))
        running.delete(victim.port)
        killedPort = victim.port
        const at = performance.now()
        await until(`replica ${replica.port} to be promoted`, 20_000, () => withClient(replica.port, async (client) =>
          /** @type {unknown[]} */ (await client.call('ROLE'))[0] === 'master'))
        await settled()
        return { killedPort: victim.port, at }
      },
      /**
       * Starts the killed node again from its nodes.conf: it rejoins as a replica.
       * @returns {Promise<void>}
       */
      restartKilled: async () => {
        if (killedPort === undefined) return
        const port = killedPort
        running.set(port, await resources.spawn(port, argsOf(port)))
        killedPort = undefined
        await until(`node ${port} to rejoin as a replica`, 20_000, () => withClient(port, async (client) =>
          /** @type {unknown[]} */ (await client.call('ROLE'))[0] === 'slave'))
        await settled()
      }
    }
  })
}

/**
 * The loopback port of the primary serving `slot`, as this node sees it.
 * @param {Redis} client
 * @param {number} slot
 * @returns {Promise<number | undefined>}
 */
async function ownerOf (client, slot) {
  const ranges = /** @type {[number, number, [string, number]][]} */ (await client.call('CLUSTER', 'SLOTS'))
  return ranges.find(([first, last]) => first <= slot && slot <= last)?.[2][1]
}

/**
 * `count` of the slots the primary on `port` serves, those holding the most keys first.
 * @param {number} port
 * @param {number} count
 * @returns {Promise<number[]>}
 */
async function slotsToMove (port, count) {
  return await withClient(port, async (client) => {
    const myId = /** @type {string} */ (await client.call('CLUSTER', 'MYID'))
    const ranges = /** @type {[number, number, [string, number, string]][]} */ (await client.call('CLUSTER', 'SLOTS'))
    /** @type {number[]} */
    const owned = []
    for (const [first, last, [, , id]] of ranges) {
      if (id === myId) for (let slot = first; slot <= last; slot++) owned.push(slot)
    }
    const pipeline = client.pipeline()
    for (const slot of owned) pipeline.call('CLUSTER', 'COUNTKEYSINSLOT', slot)
    const keys = (await pipeline.exec() ?? []).map(([error, value]) => error === null ? Number(value) : 0)
    return owned.map((slot, i) => ({ slot, keys: keys[i] }))
      .sort((a, b) => b.keys - a.keys)
      .slice(0, count)
      .map(({ slot }) => slot)
  })
}

const MIGRATE_BATCH = 100
const MIGRATE_TIMEOUT_MS = 5000
// Bounds the batches of one slot: far more keys than a fault run puts in one.
const MAX_BATCHES = 10_000

/**
 * Moves one slot and its keys: IMPORTING on the target, MIGRATING on the source, MIGRATE
 * the keys in batches, then SETSLOT NODE on the target, the source and the other primaries.
 * @param {number} slot
 * @param {{ id: string, port: number }} from
 * @param {{ id: string, port: number }} to
 * @param {{ id: string, port: number }[]} primaries
 * @returns {Promise<void>}
 */
async function moveSlot (slot, from, to, primaries) {
  await withClient(to.port, (client) => client.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id))
  await withClient(from.port, async (client) => {
    await client.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id)
    for (let batch = 0; batch < MAX_BATCHES; batch++) {
      const keys = /** @type {string[]} */ (await client.call('CLUSTER', 'GETKEYSINSLOT', slot, MIGRATE_BATCH))
      if (keys.length === 0) return
      await client.call('MIGRATE', '127.0.0.1', to.port, '', 0, MIGRATE_TIMEOUT_MS, 'KEYS', ...keys)
    }
    throw new Error(`slot ${slot} still has keys after ${MAX_BATCHES} batches`)
  })
  for (const node of [to, from, ...primaries.filter((node) => node.id !== to.id && node.id !== from.id)]) {
    await withClient(node.port, (client) => client.call('CLUSTER', 'SETSLOT', slot, 'NODE', to.id))
  }
}
