// DPoP proofs (RFC 9449). In a browser's cookie session: a P-256 key made by WebCrypto with
// its private half not extractable, kept in IndexedDB, and a proof signed with it for the
// login and each refresh. The server binds the session to the key at login; a refresh
// cookie copied out of this browser profile cannot refresh without it. Script running in
// the page can still use the key (not read it): DPoP does not stop that. A native client
// (Node 20+, or a browser app keeping its own key) passes its key pair instead, and makes a
// proof for any request: the login, a refresh, an API call, logout and revocation.

/** Makes the proofs; give it to `createSessionClient({ dpop })` and use it for the login. */
export interface DpopProver {
  /**
   * A proof for one request: `url` absolute (its query and fragment are left out). With
   * `accessToken`, the proof names the token's hash (`ath`), as a request that presents an
   * access token needs (an API call, a logout with one).
   */
  proof: (method: string, url: string, options?: { accessToken?: string }) => Promise<string>
  /** Learns from a response: the server's nonce (`DPoP-Nonce`) and its clock (`Date`). */
  seen: (response: Response) => void
  /** The RFC 7638 thumbprint of the public key: what the server binds the session to. */
  readonly thumbprint: string
}

export interface DpopProverOptions {
  /** The IndexedDB database that keeps the key: one per session kind on an origin. Default `fts-dpop`. */
  name?: string
  /**
   * A P-256 ECDSA key pair of your own (its private key may be non-extractable): no
   * IndexedDB is used, so the prover works wherever WebCrypto does, Node 20+ included.
   */
  keyPair?: CryptoKeyPair
}

const STORE = 'keys'
const ENTRY = 'key'

/** SHA-256 of a string's UTF-8. */
async function sha256 (text: string): Promise<ArrayBuffer> {
  return await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
}

/** base64url of bytes or of a string's UTF-8. */
function b64u (input: ArrayBuffer | Uint8Array | string): string {
  const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : new Uint8Array(input)
  let text = ''
  for (const byte of bytes) text += String.fromCharCode(byte)
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** An IndexedDB request as a promise. */
async function done<T> (request: IDBRequest<T>): Promise<T> {
  return await new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
}

/**
 * This origin's key pair, made on first use. Two tabs making one at once both try to add
 * theirs; the second add fails, and both then read the one that was kept.
 */
async function keyPair (name: string): Promise<CryptoKeyPair> {
  const open = indexedDB.open(name, 1)
  open.onupgradeneeded = () => open.result.createObjectStore(STORE)
  const db = await done(open)
  try {
    const read = async (): Promise<CryptoKeyPair | undefined> => await done(db.transaction(STORE).objectStore(STORE).get(ENTRY))
    const kept = await read()
    if (kept !== undefined) return kept
    const made = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
    await done(db.transaction(STORE, 'readwrite').objectStore(STORE).add(made, ENTRY)).catch(() => undefined)
    return await read() as CryptoKeyPair
  } finally {
    db.close()
  }
}

/**
 * The prover of this origin's key, or of `options.keyPair`. Without a key pair it rejects
 * where the browser has no WebCrypto (a page not served over HTTPS or from localhost) or no
 * IndexedDB (some private modes): the app then goes on without DPoP, as a plain cookie
 * session.
 *
 * @example
 * ```js
 * // A browser page: the key is made once and kept in IndexedDB.
 * const dpop = await createDpopProver().catch(() => undefined)
 * const headers = { 'content-type': 'application/json' }
 * if (dpop) headers.DPoP = await dpop.proof('POST', new URL('/auth/login', location.href).href)
 * const answer = await fetch('/auth/login', { method: 'POST', headers, body })
 * dpop?.seen(answer)
 * const session = createSessionClient({ refreshPath: '/auth/refresh', dpop })
 *
 * // A native client (Node 20+): its own key pair, and a proof naming the access token.
 * const keyPair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
 * const prover = await createDpopProver({ keyPair })
 * const me = await fetch(url, { headers: { authorization: `DPoP ${accessToken}`, DPoP: await prover.proof('GET', url, { accessToken }) } })
 * ```
 */
export async function createDpopProver (options: DpopProverOptions = {}): Promise<DpopProver> {
  const { privateKey, publicKey } = options.keyPair ?? await keyPair(options.name ?? 'fts-dpop')
  const { crv, kty, x, y } = await crypto.subtle.exportKey('jwk', publicKey)
  const jwk = { crv, kty, x, y }
  const header = b64u(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk }))
  const thumbprint = b64u(await sha256(JSON.stringify(jwk)))
  let nonce: string | undefined
  /** The server's clock minus this one (ms), from the last `Date` header seen. */
  let skew = 0
  return {
    thumbprint,
    async proof (method, url, { accessToken } = {}) {
      const { origin, pathname } = new URL(url)
      const claims = {
        jti: b64u(crypto.getRandomValues(new Uint8Array(16))),
        htm: method.toUpperCase(),
        htu: origin + pathname,
        iat: Math.floor((Date.now() + skew) / 1000),
        nonce,
        ath: accessToken === undefined ? undefined : b64u(await sha256(accessToken))
      }
      const input = `${header}.${b64u(JSON.stringify(claims))}`
      // WebCrypto's ECDSA signature is r and s side by side, as JWS wants it.
      return `${input}.${b64u(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, new TextEncoder().encode(input)))}`
    },
    seen (response) {
      nonce = response.headers.get('dpop-nonce') ?? nonce
      const date = Date.parse(response.headers.get('date') ?? '')
      if (date > 0) skew = date - Date.now()
    }
  }
}
