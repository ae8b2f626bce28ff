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

/** A password's salt and scrypt hash, replaced together as one object. */
interface Credential {
  salt: Buffer
  hash: Buffer
}

interface StoredUser extends PublicUser {
  credential: Credential
}

/** A password change that has taken effect. */
export interface PasswordChange {
  /** Puts the previous password back, unless another change has replaced this one since. */
  revert (): void
}

/** `crypto.scrypt` as a promise; it runs on the libuv pool, so it does not block requests. */
async function derive (password: BinaryLike, salt: BinaryLike): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_BYTES, (error, key) => { if (error === null) resolve(key); else reject(error) })
  })
}

async function newCredential (password: BinaryLike): Promise<Credential> {
  const salt = randomBytes(SALT_BYTES)
  return { salt, hash: await derive(password, salt) }
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
 * await users.changePassword(id, 'correct horse battery', 'battery staple horse') // { revert } or undefined
 * ```
 */
export class UserStore {
  readonly #byName = new Map<string, StoredUser>()
  readonly #byId = new Map<string, StoredUser>()
  /** Hashed against when the username is unknown, so that case costs the same scrypt. */
  readonly #dummy: Promise<Credential>

  constructor () {
    this.#dummy = newCredential(randomBytes(32))
  }

  /** Adds a user. Resolves to undefined when the username is taken. */
  async register (username: string, password: string): Promise<PublicUser | undefined> {
    if (this.#byName.has(username)) return undefined
    const credential = await newCredential(password)
    // Checked again: a concurrent registration may have taken the name while we hashed.
    if (this.#byName.has(username)) return undefined
    const user: StoredUser = { id: randomUUID(), username, credential }
    this.#byName.set(username, user)
    this.#byId.set(user.id, user)
    return { id: user.id, username }
  }

  /**
   * Checks a password. Resolves to the user, or undefined for a wrong password or an
   * unknown user alike, after the same scrypt work, so neither the answer nor its timing
   * tells which usernames exist.
   */
  async verify (username: string, password: string): Promise<PublicUser | undefined> {
    const user = this.#byName.get(username)
    const { salt, hash } = user?.credential ?? await this.#dummy
    const candidate = await derive(password, salt)
    const matches = timingSafeEqual(candidate, hash)
    return user !== undefined && matches ? { id: user.id, username: user.username } : undefined
  }

  /**
   * Replaces a user's password after checking the current one. Resolves to undefined,
   * with nothing changed, when the current password is wrong or the user is unknown.
   * The caller is authenticated, so an unknown id reveals nothing and costs no dummy hash.
   */
  async changePassword (id: string, currentPassword: string, newPassword: string): Promise<PasswordChange | undefined> {
    const user = this.#byId.get(id)
    if (user === undefined) return undefined
    const previous = user.credential
    if (!timingSafeEqual(await derive(currentPassword, previous.salt), previous.hash)) return undefined
    const next = await newCredential(newPassword)
    // Another change may have landed while we hashed: the password we checked is no longer current.
    if (user.credential !== previous) return undefined
    user.credential = next
    return {
      revert: () => {
        if (user.credential === next) user.credential = previous
      }
    }
  }
}
