// The browser's DPoP prover (client/dpop.ts) in Node: Node's WebCrypto, and an IndexedDB
// reduced to what the prover uses. Its proofs are checked by the plugin's own verifier;
// the same prover against the plugin in real Chromium is in browser-dpop.test.ts.
import { createSecretKey } from 'node:crypto'
import t, { type Test } from 'tap'
import type { FastifyRequest } from 'fastify'
import { createDpopProver } from '../client/dpop.js'
import { DpopVerifier } from '../lib/dpop.js'

/** An IndexedDB request: settles on a later turn, as the browser's do. */
class FakeRequest<T> {
  result: T | undefined
  error: Error | null = null
  onsuccess: (() => void) | null = null
  onerror: (() => void) | null = null
  onupgradeneeded: (() => void) | null = null

  settle (run: () => T): this {
    setImmediate(() => {
      try {
        this.result = run()
        this.onsuccess?.()
      } catch (error) {
        this.error = error as Error
        this.onerror?.()
      }
    })
    return this
  }
}

/** The databases of one origin: object stores of values by key. */
class FakeIndexedDB {
  readonly databases = new Map<string, Map<string, Map<string, unknown>>>()
  closed = 0
  broken = false

  open (name: string): FakeRequest<unknown> {
    const request = new FakeRequest<unknown>()
    return request.settle(() => {
      if (this.broken) throw new Error('IndexedDB is not available here')
      let stores = this.databases.get(name)
      const db = {
        createObjectStore: (store: string) => { stores?.set(store, new Map()) },
        transaction: (store: string) => ({ objectStore: () => this.#store(stores?.get(store) as Map<string, unknown>) }),
        close: () => { this.closed++ }
      }
      if (stores === undefined) {
        stores = new Map()
        this.databases.set(name, stores)
        request.result = db
        request.onupgradeneeded?.()
      }
      return db
    })
  }

  #store (values: Map<string, unknown>) {
    return {
      get: (key: string) => new FakeRequest().settle(() => values.get(key)),
      add: (value: unknown, key: string) => new FakeRequest().settle(() => {
        if (values.has(key)) throw Object.assign(new Error('Key already exists in the object store.'), { name: 'ConstraintError' })
        values.set(key, value)
        return key
      })
    }
  }
}

function install (t: Test): FakeIndexedDB {
  const db = new FakeIndexedDB()
  Object.defineProperty(globalThis, 'indexedDB', { value: db, configurable: true })
  t.teardown(() => { Reflect.deleteProperty(globalThis, 'indexedDB') })
  return db
}

const verifier = new DpopVerifier({ proofLifetimeMs: 60_000, nonceLifetimeMs: null, sharedReplayCheck: false }, createSecretKey(Buffer.alloc(32, 1)), undefined, () => Date.now())

/** The refresh request a proof was made for, as the server sees it. */
function refreshRequest (dpop: string): FastifyRequest {
  return { headers: { dpop }, method: 'POST', url: '/auth/refresh', protocol: 'https', host: 'app.example' } as unknown as FastifyRequest
}

function claimsOf (proof: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(proof.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
}

t.test('a key made once per origin, kept, non-extractable; proofs the server accepts', async (t) => {
  const db = install(t)
  const prover = await createDpopProver()
  const proof = await prover.proof('post', 'https://app.example/auth/refresh?x=1#y')
  t.equal(verifier.check(refreshRequest(proof), 'grant')?.jkt, prover.thumbprint, 'the server binds to the thumbprint the prover names')
  t.match(claimsOf(proof), { htm: 'POST', htu: 'https://app.example/auth/refresh', jti: /^[A-Za-z0-9_-]{22}$/ }, 'no query nor fragment in htu')
  t.not(claimsOf(await prover.proof('POST', 'https://app.example/auth/refresh')).jti, claimsOf(proof).jti, 'a new jti each time')
  const kept = db.databases.get('fts-dpop')?.get('keys')?.get('key') as CryptoKeyPair
  t.equal(kept.privateKey.extractable, false, 'the private key cannot be exported')
  t.equal((await createDpopProver()).thumbprint, prover.thumbprint, 'the next page load finds the same key')
  t.not((await createDpopProver({ name: 'other-kind' })).thumbprint, prover.thumbprint, 'another name, another key')
  t.equal(db.closed, 3, 'the database is closed after each use')
})

t.test('two tabs making the key at once end up with the same one', async (t) => {
  install(t)
  const [a, b] = await Promise.all([createDpopProver(), createDpopProver()])
  t.equal(a.thumbprint, b.thumbprint)
  const proof = await b.proof('POST', 'https://app.example/auth/refresh')
  t.equal(verifier.check(refreshRequest(proof), 'grant')?.jkt, a.thumbprint, 'the losing tab signs with the kept key')
})

t.test('the server\'s nonce and clock, learnt from its answers', async (t) => {
  install(t)
  const prover = await createDpopProver()
  t.equal(claimsOf(await prover.proof('POST', 'https://app.example/x')).nonce, undefined, 'no nonce before the server names one')
  const later = new Date(Date.now() + 120_000)
  prover.seen(new Response(null, { headers: { 'dpop-nonce': 'n-1', date: later.toUTCString() } }))
  const claims = claimsOf(await prover.proof('POST', 'https://app.example/x'))
  t.equal(claims.nonce, 'n-1')
  t.ok(Math.abs((claims.iat as number) - Math.floor(later.getTime() / 1000)) <= 1, 'iat by the server\'s clock, two minutes ahead of this one')
  prover.seen(new Response(null))
  t.equal(claimsOf(await prover.proof('POST', 'https://app.example/x')).nonce, 'n-1', 'an answer without a nonce keeps the last one')
})

t.test('without IndexedDB the prover is refused, and the app goes on without DPoP', async (t) => {
  const db = install(t)
  db.broken = true
  await t.rejects(createDpopProver(), /IndexedDB is not available/)
})
