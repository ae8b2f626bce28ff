// The DPoP proof checks (RFC 9449 §4.3), one by one, as an attacker would try to get past
// them: proofs signed here with Node's crypto, each broken in one way. (oauth.test.ts runs
// the whole flow with oauth4webapi's proofs.)
import { constants, createSecretKey, generateKeyPairSync, hash, sign, type KeyObject } from 'node:crypto'
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { DpopVerifier } from '../lib/dpop.js'

const NOW = 1_800_000_000_000
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const URL_ = 'https://api.example.com/auth/token'

interface Key { privateKey: KeyObject, jwk: Record<string, unknown>, alg: string }

function key (alg: 'ES256' | 'ES384' | 'EdDSA' | 'Ed448' | 'PS256' | 'RS256' | 'RS1024'): Key {
  const pair = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : alg === 'ES384'
      ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : alg === 'Ed448'
          ? generateKeyPairSync('ed448')
          // An RSA key signs with either padding: PS256 is PSS, RS256 PKCS #1 v1.5.
          : generateKeyPairSync('rsa', { modulusLength: alg === 'RS1024' ? 1024 : 2048 })
  const jwk = pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>
  return { privateKey: pair.privateKey, jwk, alg: alg === 'Ed448' ? 'EdDSA' : alg === 'RS1024' ? 'RS256' : alg }
}

function b64u (value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
}

/** A proof by `k`, its header and claims overridable, signed as JWS says. */
function proof (k: Key, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  const input = `${b64u({ typ: 'dpop+jwt', alg: k.alg, jwk: k.jwk, ...header })}.${b64u({ jti: `j${Math.random()}`, htm: 'POST', htu: URL_, iat: NOW / 1000, ...claims })}`
  const digest = k.alg === 'EdDSA' || k.alg === 'Ed25519' ? null : k.alg === 'ES384' ? 'sha384' : 'sha256'
  const signature = k.alg.startsWith('ES')
    ? sign(digest, Buffer.from(input), { key: k.privateKey, dsaEncoding: 'ieee-p1363' })
    : k.alg === 'PS256'
      ? sign(digest, Buffer.from(input), { key: k.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
      : sign(digest, Buffer.from(input), k.privateKey)
  return `${input}.${signature.toString('base64url')}`
}

function request (dpop: string | undefined, extra: Partial<{ method: string, url: string, host: string, protocol: string }> = {}): FastifyRequest {
  return { headers: dpop === undefined ? {} : { dpop }, method: 'POST', url: '/auth/token?x=1', protocol: 'https', host: 'api.example.com', ...extra } as unknown as FastifyRequest
}

function verifier (options: { nonces?: boolean, publicOrigin?: string, now?: () => number, limits?: { keys: number, proofs: number } } = {}): DpopVerifier {
  return new DpopVerifier({ proofLifetimeMs: 60_000, nonceLifetimeMs: options.nonces === true ? 300_000 : null, sharedReplayCheck: false }, createSecretKey(Buffer.alloc(32, 7)),
    options.publicOrigin, options.now ?? (() => NOW), options.limits)
}

const es256 = key('ES256')

t.test('the algorithms accepted, each with its key type and curve; the thumbprint is RFC 7638\'s', async (t) => {
  const check = verifier()
  for (const alg of ['ES256', 'ES384', 'EdDSA', 'Ed448', 'PS256', 'RS256'] as const) {
    const k = key(alg)
    t.ok(check.check(request(proof(k)), 'grant'), alg)
  }
  const ed = key('EdDSA')
  t.ok(check.check(request(proof({ ...ed, alg: 'Ed25519' })), 'grant'), 'Ed25519, RFC 9864\'s name')
  // RFC 7638 §3.1's example key and thumbprint.
  const rfc = { kty: 'RSA', e: 'AQAB', n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw' }
  const accepted = new DpopVerifier({ proofLifetimeMs: 60_000, nonceLifetimeMs: null, sharedReplayCheck: false }, createSecretKey(Buffer.alloc(32)), undefined, () => NOW)
  const header = b64u({ typ: 'dpop+jwt', alg: 'RS256', jwk: rfc })
  t.throws(() => accepted.check(request(`${header}.${b64u({})}.AAAA`), 'grant'), { code: 'FTS_DPOP_PROOF_INVALID' }, 'its signature is checked all the same')
  t.equal(check.check(request(proof(es256)), 'grant')?.jkt, hash('sha256', JSON.stringify({ crv: 'P-256', kty: 'EC', x: es256.jwk.x, y: es256.jwk.y }), 'base64url'))
})

t.test('every malformed, forged or confused proof is refused: 400 at a grant, 401 at a resource', async (t) => {
  const check = verifier()
  const [head, body, signature] = proof(es256).split('.') as [string, string, string]
  const other = key('ES256')
  const cases: Array<[string, string]> = [
    ['two proofs (a repeated header)', `${proof(es256)}, ${proof(es256)}`],
    ['too long', proof(es256, { pad: 'x'.repeat(5000) })],
    ['two parts', `${head}.${body}`],
    ['four parts', `${head}.${body}.${signature}.x`],
    ['a header that is not JSON', `${b64u('nope')}.${body}.${signature}`],
    ['a header that is an array', `${b64u([1])}.${body}.${signature}`],
    ['typ JWT', proof(es256, {}, { typ: 'JWT' })],
    ['alg none', proof(es256, {}, { alg: 'none' })],
    ['alg HS256', proof(es256, {}, { alg: 'HS256' })],
    ['alg toString', proof(es256, {}, { alg: 'toString' })],
    ['a crit header', proof(es256, {}, { crit: ['exp'] })],
    ['no jwk', proof(es256, {}, { jwk: undefined })],
    ['a jwk that is a string', proof(es256, {}, { jwk: 'key' })],
    ['a jwk with its private part', proof(es256, {}, { jwk: { ...es256.jwk, d: 'AAAA' } })],
    ['a symmetric jwk', proof(es256, {}, { jwk: { kty: 'oct', k: 'AAAA' } })],
    ['an RSA key under ES256', proof(es256, {}, { jwk: key('RS256').jwk })],
    ['P-384 under ES256', proof(es256, {}, { jwk: key('ES384').jwk })],
    ['a jwk without y', proof(es256, {}, { jwk: { ...es256.jwk, y: undefined } })],
    ['a jwk point not on the curve', proof(es256, {}, { jwk: { ...es256.jwk, y: es256.jwk.x } })],
    ['an RSA key of 1024 bits', proof(key('RS1024'))],
    ['another key\'s signature', `${head}.${body}.${proof(other).split('.')[2] as string}`],
    ['claims changed after signing', `${head}.${b64u({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), htm: 'GET' })}.${signature}`],
    // The same bytes, spelt with the unused low bits of the last character set.
    ['a non-canonical signature', `${head}.${body}.${signature.slice(0, -1)}${BASE64URL[BASE64URL.indexOf(signature.slice(-1)) + 1] as string}`],
    ['claims that are not an object', (() => {
      const input = `${head}.${b64u('"x"')}`
      return `${input}.${sign('sha256', Buffer.from(input), { key: es256.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
    })()],
    ['no jti', proof(es256, { jti: undefined })],
    ['an empty jti', proof(es256, { jti: '' })],
    ['a jti of 129 characters', proof(es256, { jti: 'j'.repeat(129) })],
    ['another method', proof(es256, { htm: 'GET' })],
    ['another path', proof(es256, { htu: 'https://api.example.com/auth/refresh' })],
    ['another host', proof(es256, { htu: 'https://evil.example/auth/token' })],
    ['http for https', proof(es256, { htu: 'http://api.example.com/auth/token' })],
    ['htu not a URL', proof(es256, { htu: 'not a url' })],
    ['htu not a string', proof(es256, { htu: 7 })],
    ['no iat', proof(es256, { iat: undefined })],
    ['iat a string', proof(es256, { iat: String(NOW / 1000) })],
    ['iat 6 s ahead', proof(es256, { iat: NOW / 1000 + 6 })],
    ['iat 61 s ago', proof(es256, { iat: NOW / 1000 - 61 })]
  ]
  for (const [name, dpop] of cases) {
    t.throws(() => check.check(request(dpop), 'grant'), { code: 'FTS_DPOP_PROOF_INVALID', statusCode: 400 }, name)
    t.throws(() => check.check(request(dpop), 'resource', 'token'), { code: 'FTS_DPOP_PROOF_INVALID', statusCode: 401 }, `${name}, at a resource`)
  }
  t.ok(check.check(request(proof(es256, { iat: NOW / 1000 + 4 })), 'grant'), 'iat a few seconds ahead: clocks differ')
  t.ok(check.check(request(proof(es256, { iat: NOW / 1000 - 59 })), 'grant'), 'iat 59 s ago')
  t.ok(check.check(request(proof(es256, { htu: 'HTTPS://API.EXAMPLE.COM:443/auth/token#frag' })), 'grant'), 'htu normalised: scheme and host case, default port, fragment')
  t.equal(check.check(request(undefined), 'grant'), undefined, 'no proof: nothing to check')
})

t.test('at a resource the proof names the access token\'s hash', async (t) => {
  const check = verifier()
  const token = 'an-access-token'
  const ath = hash('sha256', token, 'base64url')
  t.ok(check.check(request(proof(es256, { ath, htm: 'GET', htu: 'https://api.example.com/me' }), { method: 'GET', url: '/me' }), 'resource', token))
  for (const [name, claims] of [['no ath', {}], ['another token\'s', { ath: hash('sha256', 'other', 'base64url') }]] as const) {
    t.throws(() => check.check(request(proof(es256, { ...claims, htm: 'GET', htu: 'https://api.example.com/me' }), { method: 'GET', url: '/me' }), 'resource', token),
      { code: 'FTS_DPOP_PROOF_INVALID', statusCode: 401 }, name)
  }
})

t.test('htu against the configured public origin behind a proxy', async (t) => {
  const check = verifier({ publicOrigin: 'https://api.example.com' })
  t.ok(check.check(request(proof(es256), { protocol: 'http', host: '10.0.0.5:3000' }), 'grant'), 'the proxy\'s view does not matter')
  t.throws(() => check.check(request(proof(es256, { htu: 'http://10.0.0.5:3000/auth/token' }), { protocol: 'http', host: '10.0.0.5:3000' }), 'grant'),
    { code: 'FTS_DPOP_PROOF_INVALID' }, 'the internal URL is not the public one')
})

t.test('replayed proofs are refused within their lifetime, and forgotten after it', async (t) => {
  let now = NOW
  const check = verifier({ now: () => now, limits: { keys: 10, proofs: 3 } })
  const first = check.check(request(proof(es256, { jti: 'a' })), 'resource')
  if (first === undefined) throw new Error('no proof')
  check.remember(first, 'resource')
  t.throws(() => check.remember(first, 'resource'), { code: 'FTS_DPOP_PROOF_INVALID', statusCode: 401 }, 'the same proof again')
  const other = key('ES256')
  const sameId = check.check(request(proof(other, { jti: 'a' })), 'grant')
  t.doesNotThrow(() => check.remember(sameId as NonNullable<typeof sameId>, 'grant'), 'the same jti by another key is another proof')
  t.throws(() => check.remember(sameId as NonNullable<typeof sameId>, 'grant'), { code: 'FTS_DPOP_PROOF_INVALID', statusCode: 400 })
  for (const jti of ['b', 'c', 'd']) check.remember({ jkt: first.jkt, jti, expiresAt: NOW + 60_000 }, 'resource')
  t.doesNotThrow(() => check.remember(first, 'resource'), 'past the cache\'s size the oldest ids go first')
  now += 61_000
  t.doesNotThrow(() => check.remember({ ...first, jti: 'b' }, 'resource'), 'an id past its proof\'s lifetime is forgotten')
  now += 120_000
  for (const jti of ['e', 'f', 'g', 'h']) check.remember({ jkt: first.jkt, jti, expiresAt: now + 60_000 }, 'resource')
  t.throws(() => check.remember({ jkt: first.jkt, jti: 'h', expiresAt: now + 60_000 }, 'resource'), 'stale ids were swept, the fresh ones kept')
})

t.test('imported keys are cached by thumbprint, and the cache is bounded', async (t) => {
  const check = verifier({ limits: { keys: 2, proofs: 100 } })
  const keys = [key('ES256'), key('ES256'), key('ES256')]
  for (const k of [...keys, ...keys]) t.ok(check.check(request(proof(k)), 'grant'))
})

t.test('server nonces: stateless, the current and the previous period, and a 400 or 401 that says so', async (t) => {
  let now = NOW
  const check = verifier({ nonces: true, now: () => now })
  const nonce = check.nonce() as string
  t.match(nonce, /^[A-Za-z0-9_-]{22}$/)
  t.equal(verifier({ nonces: true, now: () => now }).nonce(), nonce, 'every instance with the secret makes the same nonce')
  t.equal(verifier().nonce(), undefined, 'none when nonces are off')
  t.ok(check.check(request(proof(es256, { nonce })), 'grant'))
  t.throws(() => check.check(request(proof(es256)), 'grant'), { code: 'FTS_DPOP_NONCE_REQUIRED', statusCode: 400 }, 'no nonce')
  t.throws(() => check.check(request(proof(es256, { nonce: 7 })), 'grant'), { code: 'FTS_DPOP_NONCE_REQUIRED' }, 'a nonce that is not a string')
  t.throws(() => check.check(request(proof(es256, { nonce: 'AAAAAAAAAAAAAAAAAAAAAA' })), 'resource', undefined), { code: 'FTS_DPOP_NONCE_REQUIRED', statusCode: 401 }, 'a made-up nonce')
  now += 300_000
  t.ok(check.check(request(proof(es256, { nonce, iat: now / 1000 })), 'grant'), 'the previous period\'s nonce still works')
  now += 300_000
  t.throws(() => check.check(request(proof(es256, { nonce, iat: now / 1000 })), 'grant'), { code: 'FTS_DPOP_NONCE_REQUIRED' }, 'two periods later it does not')
  t.not(check.nonce(), nonce, 'a new one is offered')
})

t.test('RSA keys that would make a verification expensive are refused before any work', async (t) => {
  const check = verifier()
  const rsa = key('RS256')
  for (const [name, jwk] of [
    ['an exponent other than 65537', { ...rsa.jwk, e: 'Aw' }],
    ['a huge exponent', { ...rsa.jwk, e: 'A'.repeat(512) }],
    ['a modulus over 4096 bits', { ...rsa.jwk, n: `${rsa.jwk.n as string}${'A'.repeat(400)}` }]
  ] as const) {
    t.throws(() => check.check(request(proof(rsa, {}, { jwk })), 'grant'), { code: 'FTS_DPOP_PROOF_INVALID' }, name)
  }
})
