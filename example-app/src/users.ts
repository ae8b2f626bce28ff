import { randomBytes, randomUUID, scrypt, timingSafeEqual, type BinaryLike } from 'node:crypto'

/** Bytes of random salt per password. */
const SALT_BYTES = 16
/** Bytes of scrypt output kept per password. */
const KEY_BYTES = 64

/** What the app may show of a user: never the password hash. */
export interface PublicUser {
  id: string
  username: string
}

interface StoredUser extends PublicUser {
  salt: Buffer
  hash: Buffer
}

/** `crypto.scrypt` as a promise; it runs on the libuv pool, so it does not block requests. */
async function derive (password: BinaryLike, salt: BinaryLike): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_BYTES, (error, key) => { if (error === null) resolve(key); else reject(error) })
  })
}

/**
 * Users in this process's memory, with scrypt-hashed passwords. An example only: a real
 * service keeps users in a database (and sessions survive restarts in Redis, users not).
 *
 * @example
 * ```ts
 * const users = new UserStore()
 * await users.register('alice', 'correct horse battery')  // { id, username } or undefined if taken
 * await users.verify('alice', 'correct horse battery')    // { id, username } or undefined
 * ```
 */
export class UserStore {
  readonly #byName = new Map<string, StoredUser>()
  /** Hashed against when the username is unknown, so that case costs the same scrypt. */
  readonly #dummy: Promise<{ salt: Buffer, hash: Buffer }>

  constructor () {
    const salt = randomBytes(SALT_BYTES)
    this.#dummy = derive(randomBytes(32), salt).then((hash) => ({ salt, hash }))
  }

  /** Adds a user. Resolves to undefined when the username is taken. */
  async register (username: string, password: string): Promise<PublicUser | undefined> {
    if (this.#byName.has(username)) return undefined
    const salt = randomBytes(SALT_BYTES)
    const hash = await derive(password, salt)
    // Checked again: a concurrent registration may have taken the name while we hashed.
    if (this.#byName.has(username)) return undefined
    const user: StoredUser = { id: randomUUID(), username, salt, hash }
    this.#byName.set(username, user)
    return { id: user.id, username }
  }

  /**
   * Checks a password. Resolves to the user, or undefined for a wrong password or an
   * unknown user alike, after the same scrypt work, so neither the answer nor its timing
   * tells which usernames exist.
   */
  async verify (username: string, password: string): Promise<PublicUser | undefined> {
    const user = this.#byName.get(username)
    const { salt, hash } = user ?? await this.#dummy
    const candidate = await derive(password, salt)
    const matches = timingSafeEqual(candidate, hash)
    return user !== undefined && matches ? { id: user.id, username: user.username } : undefined
  }
}
