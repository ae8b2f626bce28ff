// What the benchmarks read of Redis's own counters.

/**
 * Redis's `used_memory`, in bytes.
 * @param {import('ioredis').Redis} client
 */
export async function usedMemory (client) {
  return Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1])
}

/**
 * The usec and calls of every script a Redis server ran so far (EVAL and EVALSHA, from
 * INFO commandstats).
 * @param {import('ioredis').Redis} client
 */
export async function scriptStats (client) {
  const info = await client.info('commandstats')
  let usec = 0
  let calls = 0
  for (const match of info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/g)) {
    calls += Number(match[1])
    usec += Number(match[2])
  }
  return { usec, calls }
}
