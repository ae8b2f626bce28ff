import { randomBytes, randomUUID } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { inStore } from './errors.js'
import { hashPassword, verifyPassword } from './passwords.js'

/** What the app may show of a user: never the password hash. */
export interface PublicUser {
  id: string
  username: string
}

/** A user as kept. */
export interface UserRecord {
  /** As registered; names are unique whatever their case. */
  username: string
  /** The password's hash (see passwords.ts). */
  hash: string
}

/** A password change that has taken effect. */
export interface PasswordChange {
  /** Puts the previous password back, unless another change has replaced this one since. */
  revert (): Promise<void>
}

/**
 * How long a registration holds its username before the user record exists and the
 * claim is made permanent. A registration interrupted meanwhile (a crash, a lost
 * connection) leaves the name free again after this, never taken for good.
 */
export const NAME_CLAIM_MS = 30_000

/**
 * Where users live, one operation per call: the Redis of the sessions (so every instance
 * sees every user, and they survive restarts) or this process's memory. Each call touches
 * one key (or keys sharing a hash tag), so it works on a Redis Cluster; registration,
 * which needs two (the name and the record), is ordered so that no interruption between
 * its calls blocks or hijacks a name (see {@link Users.register}).
 */
export interface UserRecords {
  /** Claims `name` for `id` for `ms`; false when it is taken (or claimed). */
  claim (name: string, id: string, ms: number): Promise<boolean>
  /** Makes `id`'s claim on `name` permanent; false when the claim has lapsed. */
  confirm (name: string, id: string): Promise<boolean>
  /** The id a name belongs to. */
  idOf (name: string): Promise<string | undefined>
  read (id: string): Promise<UserRecord | undefined>
  /** Writes a new user's record. */
  create (id: string, record: UserRecord): Promise<void>
  remove (id: string): Promise<void>
  /** Replaces the password hash if it is still `expected`; false (and nothing changed) otherwise. */
  swapHash (id: string, expected: string, next: string): Promise<boolean>
}

/**
 * The key of a username: names are unique whatever their case. The login gate counts
 * attempts by it too, so that `Alice` and `alice` share one budget.
 */
export function nameKey (username: string): string {
  return username.toLowerCase()
}

/**
 * Users and their passwords over a {@link UserRecords}: registration, password checks and
 * changes. The logic is the same whichever the records' home.
 *
 * @example
 * ```ts
 * const users = new Users(new MemoryUserRecords())
 * await users.register('alice', 'correct horse battery')  // { id, username } or undefined if taken
 * await users.verify('alice', 'correct horse battery')    // { id, username } or undefined
 * const checked = await users.checkPassword(id, 'correct horse battery')  // the hash, or undefined
 * const change = await users.replacePassword(id, checked, 'battery staple horse')
 * ```
 */
export class Users {
  readonly #records: UserRecords
  /** Checked against when the username is unknown, so that case costs the same hash. */
  readonly #dummy: Promise<string>

  constructor (records: UserRecords) {
    this.#records = records
    this.#dummy = hashPassword(randomBytes(32).toString('base64'))
    // Made now, and waited for by the first unknown name; it cannot fail but for memory.
    this.#dummy.catch(() => {})
  }

  /**
   * Adds a user; undefined when the name is taken. The password is hashed first (slow),
   * then three short steps: claim the name for {@link NAME_CLAIM_MS}, write the record
   * under a fresh id, make the claim permanent. Racing registrations of one name: one
   * claim wins. An interruption after the claim leaves the name free again when the claim
   * lapses; after the record, an orphan record no name points to, which nothing can reach.
   * A claim that lapsed before it was confirmed (a stall longer than the claim) loses the
   * name: its record is removed and the registration fails.
   */
  async register (username: string, password: string): Promise<PublicUser | undefined> {
    const hash = await hashPassword(password)
    const id = randomUUID()
    const name = nameKey(username)
    if (!await this.#records.claim(name, id, NAME_CLAIM_MS)) return undefined
    await this.#records.create(id, { username, hash })
    if (!await this.#records.confirm(name, id)) {
      await this.#records.remove(id)
      return undefined
    }
    return { id, username }
  }

  /**
   * Checks a password; the user, or undefined for a wrong password and an unknown user
   * alike, after the same hashing work, so that neither the answer nor its timing tells
   * which names exist. A hash of an older kind is replaced on the way.
   */
  async verify (username: string, password: string): Promise<PublicUser | undefined> {
    const id = await this.#records.idOf(nameKey(username))
    const record = id === undefined ? undefined : await this.#records.read(id)
    const verdict = await verifyPassword(record?.hash ?? await this.#dummy, password)
    if (id === undefined || record === undefined || !verdict.matches) return undefined
    // Lost to a password change meanwhile: the change wins.
    if (verdict.outdated) await this.#records.swapHash(id, record.hash, await hashPassword(password))
    return { id, username: record.username }
  }

  /**
   * Checks a user's current password: the stored hash it matched (to replace with
   * {@link replacePassword}), or undefined for a wrong password or an unknown user. The
   * caller is authenticated, so an unknown id reveals nothing and costs no dummy hash.
   */
  async checkPassword (id: string, password: string): Promise<string | undefined> {
    const record = await this.#records.read(id)
    if (record === undefined || !(await verifyPassword(record.hash, password)).matches) return undefined
    return record.hash
  }

  /**
   * Replaces the password whose hash {@link checkPassword} returned; undefined, with nothing
   * changed, when another change landed meanwhile.
   */
  async replacePassword (id: string, checked: string, newPassword: string): Promise<PasswordChange | undefined> {
    const next = await hashPassword(newPassword)
    if (!await this.#records.swapHash(id, checked, next)) return undefined
    return {
      revert: async () => { await this.#records.swapHash(id, next, checked) }
    }
  }
}

/** Users in this process's memory: for running without Redis (development). */
export class MemoryUserRecords implements UserRecords {
  readonly #names = new Map<string, { id: string, until: number }>()
  readonly #users = new Map<string, UserRecord>()

  async claim (name: string, id: string, ms: number): Promise<boolean> {
    const held = this.#names.get(name)
    if (held !== undefined && held.until > Date.now()) return false
    this.#names.set(name, { id, until: Date.now() + ms })
    return true
  }

  async confirm (name: string, id: string): Promise<boolean> {
    const held = this.#names.get(name)
    if (held?.id !== id || held.until <= Date.now()) return false
    held.until = Number.POSITIVE_INFINITY
    return true
  }

  async idOf (name: string): Promise<string | undefined> {
    const held = this.#names.get(name)
    return held !== undefined && held.until > Date.now() ? held.id : undefined
  }

  async read (id: string): Promise<UserRecord | undefined> {
    const record = this.#users.get(id)
    return record === undefined ? undefined : { ...record }
  }

  async create (id: string, record: UserRecord): Promise<void> {
    this.#users.set(id, { ...record })
  }

  async remove (id: string): Promise<void> {
    this.#users.delete(id)
  }

  async swapHash (id: string, expected: string, next: string): Promise<boolean> {
    const record = this.#users.get(id)
    if (record?.hash !== expected) return false
    record.hash = next
    return true
  }
}

/** Compare-and-set scripts: one key each, so they run on a Cluster too. */
const SCRIPTS = {
  /** KEYS[1] name key, ARGV[1] id: PERSIST if the claim is still the id's. */
  exampleConfirmName: { numberOfKeys: 1, lua: "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PERSIST', KEYS[1]) + 1 end return 0" },
  /** KEYS[1] user key, ARGV[1] expected hash, ARGV[2] new hash. */
  exampleSwapHash: { numberOfKeys: 1, lua: "if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] then redis.call('HSET', KEYS[1], 'hash', ARGV[2]) return 1 end return 0" }
} as const

interface Scripted {
  exampleConfirmName (key: string, id: string): Promise<number>
  exampleSwapHash (key: string, expected: string, next: string): Promise<number>
}

/**
 * Users in Redis, beside the sessions: `<prefix>users:name:{<name, lower case>}` holds a
 * user's id, `<prefix>users:{<id>}` a hash of `username` and `hash`. The two live in
 * different Cluster slots; see {@link Users.register} for why no interruption matters.
 */
export class RedisUserRecords implements UserRecords {
  readonly #redis: (Redis | Cluster) & Scripted
  readonly #prefix: string

  constructor (redis: Redis | Cluster, prefix: string) {
    for (const [name, definition] of Object.entries(SCRIPTS)) redis.defineCommand(name, definition)
    this.#redis = redis as (Redis | Cluster) & Scripted
    this.#prefix = `${prefix}users:`
  }

  #name (name: string): string {
    return `${this.#prefix}name:{${name}}`
  }

  #user (id: string): string {
    return `${this.#prefix}{${id}}`
  }

  async claim (name: string, id: string, ms: number): Promise<boolean> {
    return await inStore(this.#redis.set(this.#name(name), id, 'PX', ms, 'NX')) === 'OK'
  }

  async confirm (name: string, id: string): Promise<boolean> {
    // 1 + PERSIST's reply: 1 when the claim had a TTL, 2 when it was already permanent.
    return await inStore(this.#redis.exampleConfirmName(this.#name(name), id)) > 0
  }

  async idOf (name: string): Promise<string | undefined> {
    return await inStore(this.#redis.get(this.#name(name))) ?? undefined
  }

  async read (id: string): Promise<UserRecord | undefined> {
    const [username, hash] = await inStore(this.#redis.hmget(this.#user(id), 'username', 'hash'))
    return username === null || username === undefined || hash === null || hash === undefined ? undefined : { username, hash }
  }

  async create (id: string, record: UserRecord): Promise<void> {
    await inStore(this.#redis.hset(this.#user(id), 'username', record.username, 'hash', record.hash))
  }

  async remove (id: string): Promise<void> {
    await inStore(this.#redis.del(this.#user(id)))
  }

  async swapHash (id: string, expected: string, next: string): Promise<boolean> {
    return await inStore(this.#redis.exampleSwapHash(this.#user(id), expected, next)) === 1
  }
}
