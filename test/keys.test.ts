import { createHmac, createPublicKey, createSecretKey, generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import t from 'tap'
import Fastify from 'fastify'
import tokenSessions, { type AccessTokenKey, type TokenSessionsOptions } from '../lib/index.js'
import { SECRET, buildApp, login, memoryStore, refresh } from './helpers/app.js'
import { now } from './helpers/jwt.js'

function pem (key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string
}
function publicPem (key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }) as string
}
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const rsa2 = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const ed = generateKeyPairSync('ed25519')
/** The armour of a PEM certificate: refused as it is, whatever its body. */
const CERTIFICATE = '-----BEGIN CERTIFICATE-----\nMIIBfzCCASWgAwIBAgIUQ2yl6G3QbWdRr8MYKhD8jk2Z8k8wCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----'

function header (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as Record<string, unknown>
}
function part (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}
const payload = (): Record<string, unknown> => ({ sub: 'mallory', sid: 'AAAAAAAAAAAAAAAAAAAAAA', iat: now(), exp: now() + 600 })

async function me (app: Awaited<ReturnType<typeof buildApp>>, token: string): Promise<number> {
  return (await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })).statusCode
}

t.test('every supported algorithm signs and verifies, with its kid in the header', async (t) => {
  const cases: AccessTokenKey[] = [
    { kid: 'hs256', algorithm: 'HS256', key: randomBytes(32) },
    { kid: 'hs384', algorithm: 'HS384', key: randomBytes(48) },
    { kid: 'hs512', algorithm: 'HS512', key: randomBytes(64) },
    { kid: 'rs256', algorithm: 'RS256', key: pem(rsa.privateKey) },
    { kid: 'ps256', algorithm: 'PS256', key: pem(rsa.privateKey) },
    { kid: 'es256', algorithm: 'ES256', key: pem(ec.privateKey) },
    { kid: 'eddsa', algorithm: 'EdDSA', key: pem(ed.privateKey) }
  ]
  for (const key of cases) {
    const app = await buildApp(t, { accessTokenKeys: [key] })
    const tokens = await login(app, `alg-${key.kid}`)
    t.match(header(tokens.accessToken), { alg: key.algorithm, kid: key.kid, typ: 'JWT' }, key.algorithm)
    t.equal(await me(app, tokens.accessToken), 200, `${key.algorithm} verifies`)
    t.equal((await refresh(app, tokens.refreshToken)).statusCode, 200, `${key.algorithm}: refresh tokens still work`)
  }
})

t.test('no algorithm confusion', async (t) => {
  const app = await buildApp(t, { accessTokenKeys: [{ kid: 'rsa', algorithm: 'RS256', key: pem(rsa.privateKey) }, { kid: 'ec', algorithm: 'ES256', key: pem(ec.privateKey) }] })
  const publicKeyPem = publicPem(rsa.publicKey)
  const input = (h: Record<string, unknown>): string => `${part(h)}.${part(payload())}`
  const hmacWithPublicKey = input({ alg: 'HS256', typ: 'JWT', kid: 'rsa' })
  t.equal(await me(app, `${hmacWithPublicKey}.${createHmac('sha256', publicKeyPem).update(hmacWithPublicKey).digest('base64url')}`), 401, 'HS256 signed with the RSA public key')
  t.equal(await me(app, `${input({ alg: 'none', typ: 'JWT', kid: 'rsa' })}.`), 401, 'alg none')
  const rsOnEc = input({ alg: 'RS256', typ: 'JWT', kid: 'ec' })
  t.equal(await me(app, `${rsOnEc}.${cryptoSign('sha256', Buffer.from(rsOnEc), rsa.privateKey).toString('base64url')}`), 401, 'a real RS256 signature under the ES256 key\'s kid')
  const unknownKid = input({ alg: 'RS256', typ: 'JWT', kid: 'nope' })
  t.equal(await me(app, `${unknownKid}.${cryptoSign('sha256', Buffer.from(unknownKid), rsa.privateKey).toString('base64url')}`), 401, 'an unknown kid')
  const numericKid = input({ alg: 'RS256', typ: 'JWT', kid: 7 })
  t.equal(await me(app, `${numericKid}.${cryptoSign('sha256', Buffer.from(numericKid), rsa.privateKey).toString('base64url')}`), 401, 'a kid that is not a string')
  const noKid = input({ alg: 'RS256', typ: 'JWT' })
  t.equal(await me(app, `${noKid}.${cryptoSign('sha256', Buffer.from(noKid), rsa.privateKey).toString('base64url')}`), 401, 'no kid, when keys have kids')
  t.equal(await me(app, 'bm90IGpzb24.e30.sig'), 401, 'a header that is not JSON')
})

t.test('jku, x5u, jwk and x5c headers are never fetched nor trusted', async (t) => {
  let fetched = 0
  const server = createServer((_request, response) => { fetched++; response.end('{}') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const address = server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/jwks.json`
  const app = await buildApp(t, { accessTokenKeys: [{ kid: 'rsa', algorithm: 'RS256', key: pem(rsa.privateKey) }] })
  const attacker = rsa2
  const attackerJwk = { ...attacker.publicKey.export({ format: 'jwk' }), kid: 'rsa', alg: 'RS256' }
  for (const extra of [{ jku: url }, { x5u: url }, { jwk: attackerJwk }, { x5c: ['MIIB'] }]) {
    const input = `${part({ alg: 'RS256', typ: 'JWT', kid: 'rsa', ...extra })}.${part(payload())}`
    const token = `${input}.${cryptoSign('sha256', Buffer.from(input), attacker.privateKey).toString('base64url')}`
    t.equal(await me(app, token), 401, `signed by the attacker's key, announced by ${Object.keys(extra)[0] ?? ''}`)
  }
  t.equal(fetched, 0, 'no URL was fetched')
})

t.test('key rotation with kid, step by step', async (t) => {
  const old: AccessTokenKey = { kid: '2026-01', algorithm: 'ES256', key: pem(ec.privateKey) }
  const next: AccessTokenKey = { kid: '2026-02', algorithm: 'EdDSA', key: pem(ed.privateKey) }
  const before = await buildApp(t, { accessTokenKeys: [old] })
  const issuedBefore = await login(before, 'rotating')
  // Step 1: deploy the new key next to the old one, the old one still active.
  const step1 = await buildApp(t, { accessTokenKeys: [old, next], activeKid: '2026-01' })
  t.equal(header((await login(step1, 'rotating')).accessToken).kid, '2026-01')
  // Step 2: make the new key active; keep the old one, public key only, to verify.
  const step2 = await buildApp(t, { accessTokenKeys: [next, { ...old, key: publicPem(ec.publicKey) }], activeKid: '2026-02' })
  const issuedAfter = await login(step2, 'rotating')
  t.equal(header(issuedAfter.accessToken).kid, '2026-02', 'new tokens are signed by the new key')
  t.equal(await me(step2, issuedBefore.accessToken), 200, 'tokens signed by the retired key keep working')
  // Step 3: once every old token has expired, remove the old key.
  const step3 = await buildApp(t, { accessTokenKeys: [next] })
  t.equal(await me(step3, issuedBefore.accessToken), 401, 'after removal, the old key\'s tokens are rejected')
  t.equal(await me(step3, issuedAfter.accessToken), 200)
})

t.test('JWKS publishes the public keys only', async (t) => {
  const app = await buildApp(t, {
    routes: { jwks: true },
    accessTokenKeys: [
      { kid: 'rsa', algorithm: 'RS256', key: pem(rsa.privateKey) },
      { kid: 'ec', algorithm: 'ES256', key: publicPem(ec.publicKey) },
      { kid: 'hmac', algorithm: 'HS256', key: randomBytes(32) }
    ]
  })
  const response = await app.inject({ method: 'GET', url: '/auth/.well-known/jwks.json' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['cache-control'], /max-age/)
  const { keys } = response.json() as { keys: Array<Record<string, string>> }
  t.same(keys.map((key) => [key.kid, key.alg, key.use, key.kty]), [['rsa', 'RS256', 'sig', 'RSA'], ['ec', 'ES256', 'sig', 'EC']], 'no HMAC key')
  for (const key of keys) for (const secretPart of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) t.notOk(secretPart in key, `${key.kid ?? ''} has no ${secretPart}`)
  t.same(app.tokenSessions.jwks(), response.json())
  // Another service verifies an access token with the published key alone.
  const tokens = await login(app, 'jwks-user')
  const [h, p, s] = tokens.accessToken.split('.') as [string, string, string]
  const rsaJwk = keys.find((key) => key.kid === header(tokens.accessToken).kid)
  const verifier = createPublicKey({ key: rsaJwk as unknown as import('node:crypto').JsonWebKey, format: 'jwk' })
  t.ok(cryptoVerify('sha256', Buffer.from(`${h}.${p}`), verifier, Buffer.from(s, 'base64url')), 'the signature verifies with the JWK')
  const plain = await buildApp(t, { routes: true })
  t.equal((await plain.inject({ method: 'GET', url: '/auth/.well-known/jwks.json' })).statusCode, 404, 'off by default')
  t.same(plain.tokenSessions.jwks(), { keys: [] })
})

t.test('bad keys fail registration and name the option', async (t) => {
  const rsaSmall = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
  const good: AccessTokenKey = { kid: 'k', algorithm: 'HS256', key: randomBytes(32) }
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ accessTokenKeys: [] }, 'accessTokenKeys'],
    [{ accessTokenKeys: 'k' as never }, 'accessTokenKeys'],
    [{ accessTokenKeys: [null as never] }, 'accessTokenKeys[0]'],
    [{ accessTokenKeys: [{ ...good, kid: 'bad kid' }] }, 'accessTokenKeys[0].kid'],
    [{ accessTokenKeys: [good, good] }, 'accessTokenKeys'],
    [{ accessTokenKeys: [{ ...good, algorithm: 'RS512' as never }] }, 'accessTokenKeys[0].algorithm'],
    [{ accessTokenKeys: [{ ...good, key: 42 as never }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ ...good, algorithm: 'HS512', key: randomBytes(32) }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'e', algorithm: 'ES256', key: pem(rsa.privateKey) }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'e', algorithm: 'ES256', key: pem(p384.privateKey) }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'r', algorithm: 'RS256', key: pem(rsaSmall.privateKey) }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'r', algorithm: 'RS256', key: 'not a pem' }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [good], activeKid: 'other' }, 'activeKid'],
    [{ accessTokenKeys: [{ kid: 'pub', algorithm: 'ES256', key: publicPem(ec.publicKey) }] }, 'activeKid'],
    [{ accessTokenKeys: [good, { kid: 'pub', algorithm: 'ES256', key: publicPem(ec.publicKey) }], activeKid: 'pub' }, 'activeKid'],
    [{ activeKid: 'k' }, 'activeKid'],
    [{ accessTokenKeys: [good], secret: undefined, refreshTokenSecret: 'short' }, 'refreshTokenSecret'],
    [{ accessTokenKeys: [good], secret: undefined, accessTokenSecret: SECRET, refreshTokenSecret: `${SECRET}!` }, 'accessTokenSecret'],
    [{ accessTokenKeys: [good], secret: undefined }, 'secret']
  ]
  for (const [options, option] of cases) {
    const app = Fastify()
    const error = await app.register(tokenSessions, { secret: SECRET, ...options } as unknown as TokenSessionsOptions).ready().then(() => undefined, (err: Error) => err)
    await app.close()
    t.match(error, { code: 'FTS_INVALID_OPTION' }, option)
    t.match(error?.message, `Invalid option ${option}:`, `names ${option}`)
  }
  const separate = Fastify()
  await separate.register(tokenSessions, { refreshTokenSecret: SECRET, accessTokenKeys: [good], store: memoryStore(t) })
  t.teardown(() => separate.close())
  t.type((await separate.tokenSessions.issue('x')).accessToken, 'string', 'keys with a refresh secret of their own')
})

t.test('an HMAC key can never be a public key: the key-confusion forgery is refused at registration', async (t) => {
  const rsaPublicPem = publicPem(rsa.publicKey)
  // What the review did: an RSA public key registered as an HS256 secret, then a token
  // HMAC'd with that (public) PEM, sub admin.
  const app = Fastify()
  const error = await app.register(tokenSessions, { secret: SECRET, accessTokenKeys: [{ kid: 'old', algorithm: 'HS256', key: rsaPublicPem }] })
    .ready().then(() => undefined, (err: Error) => err)
  await app.close()
  t.match(error, { code: 'FTS_INVALID_OPTION', message: /accessTokenKeys\[0\]\.key: is a public or private key/ })

  const jwk = JSON.stringify(rsa.publicKey.export({ format: 'jwk' }))
  const der = rsa.publicKey.export({ type: 'spki', format: 'der' })
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ accessTokenKeys: [{ kid: 'k', algorithm: 'HS256', key: pem(ec.privateKey) }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'k', algorithm: 'HS512', key: jwk }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'k', algorithm: 'HS256', key: der }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'k', algorithm: 'HS256', key: rsa.publicKey }] }, 'accessTokenKeys[0].key'],
    [{ accessTokenKeys: [{ kid: 'k', algorithm: 'ES256', key: createSecretKey(randomBytes(32)) }] }, 'accessTokenKeys[0].key'],
    [{ secret: rsaPublicPem }, 'secret'],
    [{ secret: undefined, accessTokenSecret: jwk, refreshTokenSecret: SECRET }, 'accessTokenSecret'],
    [{ secret: undefined, accessTokenSecret: SECRET, refreshTokenSecret: der }, 'refreshTokenSecret'],
    [{ secret: CERTIFICATE }, 'secret'],
    [{ secret: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0dsrKSjsGVl3hQhDQkVyZrV6z9F9mF0oC3C3u1QzQ user@host' }, 'secret'],
    [{ secret: rsaPublicPem.replace(/-----[A-Z ]+-----/g, '') }, 'secret'],
    [{ secret: rsa.publicKey.export({ type: 'pkcs1', format: 'der' }) }, 'secret'],
    [{ secret: ec.privateKey.export({ type: 'sec1', format: 'der' }) }, 'secret'],
    [{ secret: JSON.stringify({ keys: [rsa.publicKey.export({ format: 'jwk' })] }) }, 'secret'],
    [{ accessTokenKeys: [{ kid: 'k', algorithm: 'HS256', key: createSecretKey(Buffer.from(rsaPublicPem)) }] }, 'accessTokenKeys[0].key']
  ]
  // Secrets that only look like keys at first sight are taken.
  for (const secret of ['{not JSON, but 32 bytes or more of secret}', Buffer.concat([Buffer.from([0x30]), randomBytes(47)]), '{"kty": 1, "padding": "to 32 bytes"}']) {
    const app = Fastify()
    await app.register(tokenSessions, { secret, store: memoryStore(t) })
    t.type((await app.tokenSessions.issue('x')).accessToken, 'string', `a secret like ${JSON.stringify(secret.toString().slice(0, 12))} is a secret`)
    await app.close()
  }
  for (const [options, option] of cases) {
    const app = Fastify()
    const refused = await app.register(tokenSessions, { secret: SECRET, ...options } as unknown as TokenSessionsOptions).ready().then(() => undefined, (err: Error) => err)
    await app.close()
    t.match(refused?.message, `Invalid option ${option}:`, `names ${option}`)
  }

  const keyObjects = Fastify()
  t.teardown(() => keyObjects.close())
  await keyObjects.register(tokenSessions, {
    secret: SECRET,
    store: memoryStore(t),
    accessTokenKeys: [{ kid: 'hs', algorithm: 'HS256', key: createSecretKey(randomBytes(32)) }, { kid: 'es', algorithm: 'ES256', key: ec.privateKey }, { kid: 'ed', algorithm: 'EdDSA', key: ed.publicKey }]
  })
  t.type((await keyObjects.tokenSessions.issue('x')).accessToken, 'string', 'KeyObjects of the right kind are taken')
  t.equal(keyObjects.tokenSessions.jwks().keys.length, 2)
})
