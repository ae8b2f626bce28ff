import calculateSlot from 'cluster-key-slot'

/** Redis Cluster's hash slots: every key hashes to one of them; a Cluster store has a bucket for each. */
export const SLOTS = 16384
/**
 * The buckets of a store on one Redis server, where a script may touch any key: fewer, so
 * that a reload reads few keys when few revocations are remembered (about a thousand
 * entries each with a million).
 */
export const STANDALONE_BUCKETS = 1024

let tags: readonly string[] | undefined

/**
 * For each hash slot, the shortest hash tag that hashes to it (the first base-36 number,
 * counting up, that does): the same table in every process, built once, on first use.
 */
function slotTags (): readonly string[] {
  if (tags !== undefined) return tags
  const table = new Array<string>(SLOTS)
  let left = SLOTS
  for (let n = 0; left > 0; n++) {
    const tag = n.toString(36)
    const slot = calculateSlot(tag)
    if (table[slot] === undefined) {
      table[slot] = tag
      left--
    }
  }
  tags = table
  return table
}

/**
 * The revocation buckets of a store, sorted sets named `<prefix>{<tag>}:revoked`, and which
 * of them holds a user's revocations: on a Cluster, one bucket per hash slot, whose tag
 * hashes to that slot, and a user's is the one in the user's own slot, so that a script
 * that ends a session and records its revocation touches one slot, and stays atomic; on
 * one server, `count` buckets, by the user's slot. A reload reads a fixed set of keys,
 * small ones (on a Cluster, each primary's in turn).
 */
export class RevocationBuckets {
  /** Every bucket: bucket n is in slot n. */
  readonly all: readonly string[]
  readonly #prefix: string

  /** `count`: SLOTS on a Cluster, a power of two up to it elsewhere. */
  constructor (prefix: string, count: number) {
    this.#prefix = prefix
    this.all = slotTags().slice(0, count).map((tag) => `${prefix}{${tag}}:revoked`)
  }

  /** A key named `name` in hash slot `slot` (on a Cluster, where bucket `slot` is). */
  inSlot (slot: number, name: string): string {
    return `${this.#prefix}{${slotTags()[slot] as string}}:${name}`
  }

  /** The bucket of the user whose key is `key` (hash tag included): on a Cluster, in the same slot. */
  of (key: string): string {
    return this.all[calculateSlot(key) % this.all.length] as string
  }
}
