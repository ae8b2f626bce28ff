import t, { type Test } from 'tap'
import fc from 'fast-check'
import type { HTTPMethods, LightMyRequestResponse } from 'fastify'
import { buildApp, cookiesOf, login } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

/**
 * Property-based fuzzing of every route of the plugin, and of a route behind
 * `authenticate`, with fast-check: generated and mutated tokens, cookies, headers and
 * bodies, through `inject`. For every request:
 *
 * - never a 5xx; every error has the `{ statusCode, code, error, message }` shape, a
 *   stable `FTS_*` or `FST_ERR_*` code, and a 401 its Bearer challenge (its DPoP one when
 *   the request named the DPoP scheme); the OAuth endpoints answer in OAuth's shape;
 * - never a 2xx unless a token byte-identical to one the app issued (of the right type)
 *   sits where it wins. The generators never put one there, so the only 2xx allowed is
 *   the 204 of a logout that names no session (logout is idempotent);
 * - nothing changes in Redis: a snapshot of every key, its type, its value and whether
 *   it expires is taken after the real sessions are set up and compared after each
 *   property. Logout of nothing and a rejected token must create no key, not even the
 *   revoked set's (it exists here only because one real session was logged out before).
 *
 * Reproduce a failure with the seed in the test name (FUZZ_SEED=<base seed> replays the
 * whole file); fast-check also prints the seed and path of the shrunk counterexample.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20261125)
/** A second app's secret: its tokens are well-formed and signed, by the wrong key. */
const OTHER_SECRET = 'another-secret-9876543210-zyxwvutsrqponmlkjihgfedcba'
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const CHALLENGE = 'Bearer error="invalid_token"'
const DPOP_CHALLENGE = /^DPoP error="(invalid_token|invalid_dpop_proof|use_dpop_nonce)", algs="[A-Za-z0-9 ]+"$/

const redis = await startRedis(t)
const app = await buildApp(t, { redis: redis.url })
const foreignApp = await buildApp(t, { secret: OTHER_SECRET })
const client = redis.client()
t.teardown(() => client.quit())

// Live sessions: two of one user, one with cookies, one with a user id full of hash-tag characters.
const alice1 = await login(app, 'alice')
const alice2 = await login(app, 'alice')
const eve = await login(app, 'e{v}e%')
const bob = await cookieLogin('bob')
const liveAccess = [alice1.accessToken, alice2.accessToken, eve.accessToken, bob.accessToken]
const liveRefresh = [alice1.refreshToken, alice2.refreshToken, eve.refreshToken, bob.refreshToken]
const live = new Set([...liveAccess, ...liveRefresh])
const liveSessionIds = await Promise.all(liveAccess.map(sessionIdOf))

// A logged-out session: its tokens were issued, but its session has ended.
const carol = await login(app, 'carol')
const carolSessionId = await sessionIdOf(carol.accessToken)
const loggedOut = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: carol.refreshToken } })
if (loggedOut.statusCode !== 204) throw new Error(`logout failed: ${loggedOut.statusCode}`)
const dead = [carol.accessToken, carol.refreshToken]

const foreign = await login(foreignApp, 'alice')
const foreignTokens = [foreign.accessToken, foreign.refreshToken]
const allTokens = [...live, ...dead, ...foreignTokens]

async function cookieLogin (userId: string): Promise<{ accessToken: string, refreshToken: string }> {
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId } })
  const cookies = cookiesOf(response)
  const accessToken = cookies.get('access_token')?.value
  const refreshToken = cookies.get('refresh_token')?.value
  if (accessToken === undefined || refreshToken === undefined) throw new Error(`cookie login failed: ${response.statusCode}`)
  return { accessToken, refreshToken }
}

async function sessionIdOf (accessToken: string): Promise<string> {
  const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
  if (response.statusCode !== 200) throw new Error(`GET /me failed: ${response.statusCode}`)
  return response.json().sessionId
}

/** Every key with its type, value and whether it expires; and DBSIZE. */
async function snapshot (): Promise<{ size: number, keys: string[] }> {
  const keys: string[] = []
  // The feed's heartbeat key changes twice a second, whatever the requests.
  for (const key of (await client.keys('*')).filter((key) => !key.endsWith(':heartbeat')).sort()) {
    const type = await client.type(key)
    let value: unknown
    if (type === 'hash') value = Object.entries(await client.hgetall(key)).sort()
    else if (type === 'zset') value = await client.zrange(key, '0', '-1', 'WITHSCORES')
    else if (type === 'string') value = await client.get(key)
    else if (type === 'set') value = (await client.smembers(key)).sort()
    else if (type === 'list') value = await client.lrange(key, 0, -1)
    keys.push(JSON.stringify({ key, type, value, expires: await client.pttl(key) >= 0 }))
  }
  return { size: keys.length, keys }
}

// ---------------------------------------------------------------------------------------
// Generators

/** What Node lets through in a header value: visible ASCII, space, tab and obs-text bytes. */
const headerChar = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
  { weight: 1, arbitrary: fc.constant(0x09) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) }
).map((code) => String.fromCharCode(code))
const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/
const headerText = (maxLength = 60, minLength = 0): fc.Arbitrary<string> => fc.string({ unit: headerChar, minLength, maxLength })
const base64url = (maxLength: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...BASE64URL), maxLength })

function encode (text: string | Buffer): string {
  return Buffer.from(text).toString('base64url')
}

/** Flips one bit of one character of the token. */
function flipChar (token: string, index: number, bit: number): string {
  const at = index % token.length
  return token.slice(0, at) + String.fromCharCode(token.charCodeAt(at) ^ (1 << bit)) + token.slice(at + 1)
}

/** Flips one bit of the decoded bytes of one segment, re-encoded canonically. */
function flipDecoded (token: string, segment: number, index: number, bit: number): string {
  const parts = token.split('.')
  const bytes = Buffer.from(parts[segment] ?? '', 'base64url')
  if (bytes.length === 0) return `${token}.`
  const at = index % bytes.length
  bytes[at] = (bytes[at] ?? 0) ^ (1 << bit)
  parts[segment] = bytes.toString('base64url')
  return parts.join('.')
}

/**
 * Changes only the unused low bits of the signature's last character: a different string
 * that decodes to the same bytes. Not the token the app issued, so it must fail.
 */
function alias (token: string, bits: number): string {
  const last = BASE64URL.indexOf(token.slice(-1))
  return token.slice(0, -1) + (BASE64URL[last ^ bits] ?? '')
}

type Edit =
  | { op: 'set', key: string, value: unknown }
  | { op: 'delete', key: string }
  | { op: 'replace', value: unknown }
  | { op: 'raw', text: string }

/** A header or payload edited as JSON and re-encoded; the signature kept, stripped or borrowed. */
function editJson (token: string, segment: 0 | 1, edit: Edit, signature: 'keep' | 'strip' | string): string {
  const parts = token.split('.')
  let json: string
  if (edit.op === 'raw') {
    json = edit.text
  } else if (edit.op === 'replace') {
    json = JSON.stringify(edit.value)
  } else {
    let object: Record<string, unknown>
    try {
      object = JSON.parse(Buffer.from(parts[segment] ?? '', 'base64url').toString())
    } catch {
      object = {}
    }
    if (object === null || typeof object !== 'object') object = {}
    if (edit.op === 'delete') delete object[edit.key]
    // defineProperty: a key named __proto__ becomes an own property, as a forger would send it.
    else Object.defineProperty(object, edit.key, { value: edit.value, enumerable: true, writable: true, configurable: true })
    json = JSON.stringify(object)
  }
  parts[segment] = encode(json)
  if (signature === 'strip') parts[2] = ''
  else if (signature !== 'keep') parts[2] = signature.split('.')[2] ?? ''
  return parts.slice(0, 3).join('.')
}

const claimName = fc.oneof(
  fc.constantFrom('alg', 'typ', 'kid', 'crit', 'sub', 'sid', 'jti', 'exp', 'iat', 'nbf', 'mx', 'clm', 'iss', 'aud', 'jku', 'jwk', 'x5u', 'b64', '__proto__', 'constructor'),
  fc.string({ maxLength: 8 })
)
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key: claimName, value: fc.jsonValue({ maxDepth: 2 }) }),
  fc.record({ op: fc.constant('delete' as const), key: claimName }),
  fc.record({ op: fc.constant('set' as const), key: fc.constant('alg'), value: fc.constantFrom('none', 'None', 'NONE', 'HS384', 'HS512', 'RS256', 'ES256', 'EdDSA', '', null) }),
  fc.record({ op: fc.constant('set' as const), key: fc.constant('typ'), value: fc.constantFrom('at+jwt', 'rt+jwt', 'JWT', 'application/at+jwt', 'AT+JWT', 'application/rt+jwt', '') }),
  fc.record({ op: fc.constant('set' as const), key: fc.constantFrom('sub', 'sid'), value: fc.constantFrom('alice', 'bob', 'carol', ...liveSessionIds, carolSessionId) }),
  fc.record({ op: fc.constant('set' as const), key: fc.constantFrom('exp', 'nbf', 'iat', 'mx'), value: fc.oneof(fc.integer(), fc.double(), fc.constant(9_999_999_999)) }),
  fc.record({ op: fc.constant('replace' as const), value: fc.jsonValue({ maxDepth: 2 }) }),
  fc.record({ op: fc.constant('raw' as const), text: fc.string({ maxLength: 40 }) })
)

const base = fc.constantFrom(...allTokens)
/** A token derived from a real one (live, dead or foreign) that is none of the live ones. */
const mutated: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(base, fc.nat(), fc.integer({ min: 0, max: 6 })).map(([token, index, bit]) => flipChar(token, index, bit)),
  fc.tuple(base, fc.integer({ min: 0, max: 2 }), fc.nat(), fc.integer({ min: 0, max: 7 })).map(([token, segment, index, bit]) => flipDecoded(token, segment, index, bit)),
  fc.tuple(base, fc.nat()).map(([token, length]) => token.slice(0, length % token.length)),
  fc.tuple(base, fc.integer({ min: 1, max: 400 })).map(([token, start]) => token.slice(start)),
  fc.tuple(base, fc.constantFrom([1, 0, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0], [2, 0, 1])).map(([token, order]) => {
    const parts = token.split('.')
    return order.map((index) => parts[index] ?? '').join('.')
  }),
  fc.tuple(base, base, fc.integer({ min: 0, max: 2 })).map(([token, donor, segment]) => {
    const parts = token.split('.')
    parts[segment] = donor.split('.')[segment] ?? ''
    return parts.join('.')
  }),
  fc.tuple(base, fc.constantFrom(0 as const, 1 as const), edit, fc.oneof(fc.constantFrom('keep', 'strip'), base))
    .map(([token, segment, change, signature]) => editJson(token, segment, change, signature)),
  fc.tuple(base, fc.constantFrom('h.p.', 'h.p', 'h.p..', '.p.s', 'h..s', 'h.p.s.s', 'p.h.s', 'h.p.s.', '.h.p.s'))
    .map(([token, shape]) => {
      const [h = '', p = '', s = ''] = token.split('.')
      return shape.replace('h', h).replace('p', p).replace(/s/g, s)
    }),
  fc.tuple(base, fc.integer({ min: 1, max: 3 })).map(([token, bits]) => alias(token, bits)),
  fc.tuple(base, fc.oneof(fc.constantFrom('=', '==', '.', ' ', '\t', 'a', '%3D', ',', ';', '"', '\u0000', '\u00a0'), fc.string({ minLength: 1, maxLength: 8 })), fc.boolean())
    .map(([token, affix, before]) => before ? affix + token : token + affix),
  fc.tuple(base, fc.constantFrom('upper', 'lower', 'swap'), fc.nat()).map(([token, change, index]) => {
    if (change === 'upper') return token.toUpperCase()
    if (change === 'lower') return token.toLowerCase()
    const at = index % token.length
    const char = token.charAt(at)
    const swapped = char === char.toUpperCase() ? char.toLowerCase() : char.toUpperCase()
    return token.slice(0, at) + swapped + token.slice(at + 1)
  }),
  fc.tuple(base, base, fc.constantFrom('', '.', ' ', ',')).map(([a, b, glue]) => a + glue + b)
).filter((token) => !live.has(token))

/** Anything that is not a live token: mutations, dead and foreign tokens, JWT-shaped and plain noise. */
const forged: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: mutated },
  { weight: 1, arbitrary: fc.constantFrom(...dead, ...foreignTokens) },
  { weight: 1, arbitrary: fc.tuple(base64url(60), base64url(120), base64url(50)).map((parts) => parts.join('.')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) }
).filter((token) => !live.has(token))
/** For an access-token place: forged, or a live token of the other type. */
const accessCandidate = fc.oneof({ weight: 8, arbitrary: forged }, { weight: 1, arbitrary: fc.constantFrom(...liveRefresh) })
/** For a refresh-token place: forged, or a live token of the other type. */
const refreshCandidate = fc.oneof({ weight: 8, arbitrary: forged }, { weight: 1, arbitrary: fc.constantFrom(...liveAccess) })

const noLiveAccess = (value: string): boolean => !liveAccess.some((token) => value.includes(token))

const authorization: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(
      fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Token', 'Bearer:', 'JWT', 'DPoP', '', 'Bearer,'),
      fc.constantFrom(' ', '  ', '\t', '', ' \t', '\u00a0'),
      accessCandidate,
      fc.constantFrom('', '', ' ', '  ', 'x', ' x', '\t', ',')
    ).map((parts) => parts.join(''))
  },
  { weight: 1, arbitrary: headerText(120) }
).filter((value) => HEADER_SAFE.test(value) && noLiveAccess(value))

const cookieName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('access_token', 'refresh_token') },
  { weight: 2, arbitrary: fc.constantFrom('Access_Token', 'refresh-token', 'access_token ', ' refresh_token', 'refresh_token\t', 'ACCESS_TOKEN', 'token', '__proto__', 'constructor', 'session') },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }
)
const cookiePair: fc.Arbitrary<string> = cookieName.chain((name) => {
  const trimmed = name.trim()
  const value = trimmed === 'access_token' ? accessCandidate : trimmed === 'refresh_token' ? refreshCandidate : fc.oneof(forged, fc.constantFrom(...live))
  return fc.tuple(value, fc.boolean()).map(([raw, escaped]) => `${name}=${escaped ? encodeURIComponent(raw) : raw}`)
})
/** What the cookie parser makes of a header must hold no live token under its own name. */
function cookiesForged (header: string): boolean {
  const parsed = app.parseCookie(header)
  return !liveAccess.includes(parsed.access_token ?? '') && !liveRefresh.includes(parsed.refresh_token ?? '')
}
const cookieHeader: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.array(cookiePair, { minLength: 1, maxLength: 5 }), fc.constantFrom('; ', ';', ' ; ', ', ')).map(([pairs, glue]) => pairs.join(glue)) },
  { weight: 1, arbitrary: headerText(120) }
).filter((header) => HEADER_SAFE.test(header) && cookiesForged(header))

const csrfHeaders = fc.record({
  'x-requested-with': fc.oneof(fc.constantFrom('', 'XMLHttpRequest', 'fetch'), headerText(20)),
  'sec-fetch-site': fc.oneof(fc.constantFrom('same-origin', 'same-site', 'cross-site', 'none', 'CROSS-SITE', ' cross-site', ''), headerText(20)),
  'x-token-transport': fc.constantFrom('body', 'cookie', ''),
  // A DPoP proof: junk, or the shape of one without a valid signature.
  dpop: fc.oneof(headerText(60), fc.constantFrom('a.b.c', 'eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2In0.e30.AAAA', '..', 'x, y'))
}, { requiredKeys: [] })

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/json;'] as const
const contentType = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...JSON_TYPES) },
  { weight: 2, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json-patch+json', 'application/jsonx', ' application/json', '', '*/*') },
  { weight: 1, arbitrary: headerText(40) }
)

/** The body never names a live refresh token in its refreshToken field. */
function bodyForged (payload: string | undefined): boolean {
  if (payload === undefined) return true
  try {
    const body: unknown = JSON.parse(payload)
    return !(typeof body === 'object' && body !== null && liveRefresh.includes((body as { refreshToken?: string }).refreshToken ?? ''))
  } catch {
    return true
  }
}
const refreshBody: fc.Arbitrary<string> = fc.tuple(
  fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  fc.oneof({ weight: 6, arbitrary: refreshCandidate }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) })
).map(([extra, refreshToken]) => JSON.stringify({ ...extra, refreshToken }))
const anyBody: fc.Arbitrary<string> = fc.oneof(
  refreshBody,
  fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.constantFrom('', '{', '}', '[]', 'null', '{"refreshToken":', '\uFEFF{}', '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}', '{"refreshToken":"a","refreshToken":{"b":1}}', 'refreshToken=abc')
).filter(bodyForged)

interface Route {
  method: HTTPMethods
  path: string
}
const ROUTES: Route[] = [
  { method: 'POST', path: '/auth/refresh' },
  { method: 'POST', path: '/auth/logout' },
  { method: 'POST', path: '/auth/logout-all' },
  { method: 'GET', path: '/auth/sessions' },
  { method: 'DELETE', path: '/auth/sessions/:id' },
  { method: 'GET', path: '/me' },
  { method: 'POST', path: '/me' }
]
/** The routes behind `authenticate`. */
const AUTHENTICATED = new Set(['GET /auth/sessions', 'DELETE /auth/sessions/:id', 'GET /me', 'POST /me'])
const BODY_ROUTES = ROUTES.filter((route) => route.method === 'POST' && route.path.startsWith('/auth/'))
const sessionId = fc.oneof(
  fc.constantFrom(...liveSessionIds, carolSessionId),
  fc.stringMatching(/^[A-Za-z0-9_-]{22}$/),
  fc.string({ minLength: 1, maxLength: 30 })
)

interface FuzzRequest {
  route: Route
  url: string
  headers: Record<string, string>
  payload?: string
}

type Part = 'authorization' | 'cookie' | 'contentType' | 'body'

interface RequestParts extends Partial<Record<Part, fc.Arbitrary<string>>> {
  routes?: Route[]
  query?: fc.Arbitrary<string>
  /** Parts every request has; the others are left out of some. */
  always?: Part[]
}

/** Node strips spaces and tabs around a header value; `inject` does not, so we do. */
function trimmed (value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, '')
}

/** A request to one of the routes, each part present or not. */
function requests (parts: RequestParts): fc.Arbitrary<FuzzRequest> {
  const part = (name: Part): fc.Arbitrary<string | undefined> => {
    const arbitrary = parts[name]
    if (arbitrary === undefined) return fc.constant(undefined)
    return parts.always?.includes(name) === true ? arbitrary : fc.option(arbitrary, { nil: undefined, freq: 4 })
  }
  return fc.record({
    route: fc.constantFrom(...(parts.routes ?? ROUTES)),
    id: sessionId,
    authorization: part('authorization'),
    cookie: part('cookie'),
    csrf: csrfHeaders,
    contentType: part('contentType'),
    body: part('body'),
    query: parts.query ?? fc.constant('')
  }).map(({ route, id, authorization, cookie, csrf, contentType, body, query }) => {
    const headers: Record<string, string> = {}
    const fields: Record<string, string | undefined> = { ...csrf, authorization, cookie, 'content-type': contentType }
    for (const [name, value] of Object.entries(fields)) {
      if (value !== undefined) headers[name] = trimmed(value)
    }
    const url = route.path.replace(':id', encodeURIComponent(id)) + query
    return { route, url, headers, ...(body === undefined ? {} : { payload: body }) }
  })
}

// ---------------------------------------------------------------------------------------
// The oracle

/** Why a response breaks the properties, or undefined. */
function violation (request: FuzzRequest, response: LightMyRequestResponse): string | undefined {
  const status = response.statusCode
  if (status >= 500) return `a ${status}`
  if (status >= 200 && status < 300) {
    if (request.route.path === '/auth/logout' && status === 204) return undefined
    return `a ${status}, though no live token was where it counts`
  }
  if (status < 400) return `an unexpected ${status}`
  let body: Record<string, unknown>
  try {
    body = response.json()
  } catch {
    return `a ${status} without a JSON body`
  }
  if (body.statusCode !== status) return `a ${status} whose body says ${String(body.statusCode)}`
  if (typeof body.code !== 'string' || !/^(FTS|FST_ERR)_[A-Z_]+$/.test(body.code)) return `a ${status} without a stable code`
  if (status === 401) {
    // Behind authenticate, a request that names the DPoP scheme gets its challenge.
    const dpopScheme = /^dpop(\s|$)/i.test(request.headers.authorization ?? '') && AUTHENTICATED.has(`${request.route.method} ${request.route.path}`)
    const challenge = String(response.headers['www-authenticate'])
    if (dpopScheme ? !DPOP_CHALLENGE.test(challenge) : challenge !== CHALLENGE) return `a 401 without the ${dpopScheme ? 'DPoP' : 'Bearer'} challenge`
  }
  if (/"stack"|\bat [\w.<>]+ \(/.test(response.body)) return 'internal detail in the body'
  return undefined
}

/** The OAuth endpoints' errors (RFC 6749 §5.2, RFC 7009 §2.1, RFC 9449 §5), and the one a store outage gives. */
const OAUTH_ERRORS = new Set(['invalid_request', 'invalid_grant', 'unsupported_grant_type', 'invalid_scope', 'unauthorized_client', 'invalid_dpop_proof', 'use_dpop_nonce'])

/** Why an answer of the token or revocation endpoint breaks the properties, or undefined. */
function oauthViolation (request: FuzzRequest, response: LightMyRequestResponse): string | undefined {
  const status = response.statusCode
  if (status >= 500) return `a ${status}`
  // Revocation answers 200 for a token it does not know (RFC 7009 §2.2).
  if (status === 200 && request.route.path === '/auth/revoke') return undefined
  if (status !== 400) return `an unexpected ${status}`
  let body: Record<string, unknown>
  try {
    body = response.json()
  } catch {
    return 'a 400 without a JSON body'
  }
  if (typeof body.error !== 'string' || !OAUTH_ERRORS.has(body.error)) return `an error outside OAuth's: ${String(body.error)}`
  if (typeof body.error_description !== 'string' || !/^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/.test(body.error_description)) return 'an error_description OAuth does not allow'
  if (response.headers['cache-control'] !== 'no-store') return 'an error that may be cached'
  if (/"stack"|\bat [\w.<>]+ \(/.test(response.body)) return 'internal detail in the body'
  return undefined
}

function codeOf (response: LightMyRequestResponse): string {
  try {
    const body = response.json() as { code?: unknown, error?: unknown }
    return String(body.code ?? body.error)
  } catch {
    return '-'
  }
}

let properties = 0
let generated = 0
const statuses = new Map<string, number>()

/**
 * Runs one property: every generated request is sent and checked; then Redis must be
 * exactly as it was before any fuzzing.
 */
function fuzz (name: string, numRuns: number, arbitrary: fc.Arbitrary<FuzzRequest>, oracle = violation): void {
  const seed = SEED + properties++
  t.test(`${name} (seed ${seed}, ${numRuns} runs)`, async (t: Test) => {
    let runs = 0
    try {
      await fc.assert(fc.asyncProperty(arbitrary, async (request) => {
        runs++
        const response = await app.inject({
          method: request.route.method,
          url: request.url,
          headers: request.headers,
          ...(request.payload === undefined ? {} : { payload: request.payload })
        })
        const outcome = `${request.route.method} ${request.route.path} ${response.statusCode} ${codeOf(response)}`
        statuses.set(outcome, (statuses.get(outcome) ?? 0) + 1)
        const problem = oracle(request, response)
        if (problem !== undefined) throw new Error(`${problem}: ${response.statusCode} ${response.body.slice(0, 300)}`)
      }), { seed, numRuns })
    } finally {
      generated += runs
    }
    t.equal(runs, numRuns, `${numRuns} generated requests, all within the properties`)
    t.same(await snapshot(), baseline, 'Redis holds exactly the keys and values it held before')
  })
}

// ---------------------------------------------------------------------------------------

/**
 * A write's outcome (`…:w:<write id>`, see docs/operations.md) is kept only until the
 * write's deadline, for a resend of that very command, and then goes by itself, whatever the
 * requests: the baseline is taken once the set-up's outcomes have gone, so that the fuzzing
 * is compared with a Redis that changes only through requests.
 */
async function setUpWritesSettled (): Promise<void> {
  for (let i = 0; i < 100 && (await client.keys('*:w:*')).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))
}

await setUpWritesSettled()
const baseline = await snapshot()

t.test('controls: the live tokens work, the dead and foreign ones do not', async (t) => {
  for (const token of liveAccess) {
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })).statusCode, 200, 'a live access token authenticates')
  }
  t.equal((await app.inject({ method: 'GET', url: '/me', cookies: { access_token: bob.accessToken, session_binding: liveSessionIds[3] as string } })).statusCode, 200, 'as a cookie too')
  const sessions = await app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${alice1.accessToken}` } })
  t.equal(sessions.json().sessions.length, 2, 'alice has two sessions')
  const deadAccess = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${carol.accessToken}` } })
  t.equal(deadAccess.json().code, 'FTS_SESSION_REVOKED', 'the logged-out session\'s access token is revoked')
  const deadRefresh = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: carol.refreshToken } })
  t.equal(deadRefresh.json().code, 'FTS_SESSION_REVOKED', 'and its refresh token')
  const foreignAccess = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${foreign.accessToken}` } })
  t.equal(foreignAccess.json().code, 'FTS_TOKEN_INVALID', 'another secret\'s token is invalid')
  t.ok(baseline.keys.some((entry) => /"key":"tsess:\{\w+\}:revoked"/.test(entry)), 'a revocation bucket exists, from carol\'s logout')
  t.notOk(baseline.keys.some((entry) => entry.includes(':w:')), 'no write outcome in the baseline: each goes at its deadline, which a long fuzzing run outlasts')
  t.equal(baseline.size, baseline.keys.length, 'DBSIZE counts the keys listed')
})

fuzz('arbitrary requests to every route', 5000, requests({ authorization, cookie: cookieHeader, contentType, body: anyBody }))

fuzz('forged access tokens in the Authorization header', 4000, requests({
  authorization: fc.tuple(fc.constantFrom('Bearer ', 'bearer ', 'Bearer  '), accessCandidate)
    .map(([scheme, token]) => scheme + token)
    .filter((value) => HEADER_SAFE.test(value) && noLiveAccess(value)),
  always: ['authorization']
}))

fuzz('forged tokens in cookies, repeated names and anti-CSRF headers', 4000, requests({ cookie: cookieHeader }))

/**
 * The OAuth endpoints: form bodies of their parameters with forged tokens (never a live
 * one of either type: revoking a live access token would rightly end its session), other
 * bodies, and cookies they must not read.
 */
const OAUTH_ROUTES: Route[] = [{ method: 'POST', path: '/auth/token' }, { method: 'POST', path: '/auth/revoke' }]
const noLive = (value: string): boolean => ![...live].some((token) => value.includes(token))
const formValue = fc.oneof(
  { weight: 4, arbitrary: forged },
  { weight: 2, arbitrary: fc.constantFrom('refresh_token', 'access_token', 'password', 'client_credentials', 'native-app', 'openid', '', 'a b') },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) }
)
const formBody: fc.Arbitrary<string> = fc.array(
  fc.tuple(fc.constantFrom('grant_type', 'refresh_token', 'token', 'token_type_hint', 'client_id', 'scope', 'x', 'grant_type'), formValue),
  { maxLength: 6 }
).map((pairs) => new URLSearchParams(pairs).toString()).filter(noLive)
const FORM_TYPES = ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=UTF-8', 'APPLICATION/X-WWW-FORM-URLENCODED'] as const

fuzz('the OAuth endpoints: forged tokens in form bodies, other bodies, cookies they must not read', 3000, fc.oneof(
  requests({ routes: OAUTH_ROUTES, contentType: fc.constantFrom(...FORM_TYPES), body: formBody, cookie: cookieHeader, always: ['contentType', 'body'] }),
  requests({ routes: OAUTH_ROUTES, contentType, body: fc.oneof(formBody, anyBody.filter(noLive)), authorization })
), oauthViolation)

fuzz('forged refresh tokens in JSON bodies', 3500, requests({
  routes: BODY_ROUTES,
  contentType: fc.constantFrom(...JSON_TYPES),
  body: refreshBody.filter(bodyForged),
  cookie: cookieHeader
}))

/**
 * Live tokens present, but never where they count: wrapped in garbage in the Authorization
 * header, behind a forged Bearer header or a forged first cookie of the same name, behind
 * a forged refreshToken in the body, under another name, or in the query string.
 */
const junk = headerText(20, 1).filter((text) => /\S/.test(text))
const wrappedBearer = fc.oneof(
  fc.tuple(fc.constantFrom(...liveAccess), fc.constantFrom('Bearer ', 'bearer ', 'Bearer  '), junk, fc.boolean())
    .map(([token, scheme, garbage, before]) => before ? scheme + garbage + token : scheme + token + garbage),
  fc.tuple(fc.constantFrom(...liveAccess), fc.constantFrom('Bearer\t', 'Bearer\u00a0', 'Bearer', 'Bearer:', 'Bearer=', 'Basic ', 'Token ', 'JWT ', '', 'Bearer "', 'Bearer \t'))
    .map(([token, scheme]) => scheme + token)
).filter((value) => HEADER_SAFE.test(value))
const forgedHeaderToken = forged.filter((token) => HEADER_SAFE.test(token) && !token.includes(';') && noLiveAccess(token))
const dominatedAccessCookie = fc.tuple(fc.constantFrom(...liveAccess), forgedHeaderToken)
  .map(([token, first]) => `access_token=${first}; access_token=${token}`)
  .filter(cookiesForged)
const dominatedRefreshCookie = fc.tuple(fc.constantFrom(...liveRefresh), forgedHeaderToken)
  .map(([token, first]) => `refresh_token=${first}; refresh_token=${token}`)
  .filter(cookiesForged)
const wrongNames = fc.tuple(fc.constantFrom(...live), fc.constantFrom('Access_Token', 'refresh-token', 'token', 'jwt', 'accessToken', 'refreshToken', 'ACCESS_TOKEN', 'REFRESH_TOKEN'))
  .map(([token, name]) => `${name}=${token}`)
const liveQuery = fc.tuple(fc.constantFrom(...live), fc.constantFrom('access_token', 'refresh_token', 'refreshToken', 'token', 'authorization'))
  .map(([token, name]) => `?${name}=${encodeURIComponent(token)}`)
const wrongBodyField = fc.tuple(fc.constantFrom(...liveRefresh), fc.constantFrom('refresh_token', 'RefreshToken', 'token', 'refreshtoken', 'refreshToken '))
  .map(([token, field]) => JSON.stringify({ [field]: token }))

fuzz('live tokens wrapped in garbage or outranked by forged ones', 3500, fc.oneof(
  requests({ authorization: wrappedBearer, always: ['authorization'] }),
  requests({
    authorization: forgedHeaderToken.map((token) => `Bearer ${token}`),
    cookie: fc.constantFrom(...liveAccess).map((token) => `access_token=${token}`),
    always: ['authorization', 'cookie']
  }),
  requests({ cookie: dominatedAccessCookie, always: ['cookie'] }),
  requests({ routes: BODY_ROUTES, cookie: dominatedRefreshCookie, always: ['cookie'] }),
  requests({
    routes: BODY_ROUTES,
    cookie: fc.constantFrom(...liveRefresh).map((token) => `refresh_token=${token}`),
    contentType: fc.constantFrom(...JSON_TYPES),
    // A refreshToken field of any JSON type outranks the cookie (a non-string is a 400).
    body: fc.oneof(refreshCandidate, fc.jsonValue({ maxDepth: 2 })).map((refreshToken) => JSON.stringify({ refreshToken })).filter(bodyForged),
    always: ['cookie', 'contentType', 'body']
  }),
  requests({ cookie: wrongNames, always: ['cookie'] }),
  requests({ query: liveQuery, contentType: fc.constantFrom(...JSON_TYPES), body: fc.constant('{}') }),
  requests({ routes: BODY_ROUTES, contentType: fc.constantFrom(...JSON_TYPES), body: wrongBodyField, always: ['body'] })
))

t.test('after the fuzzing', async (t) => {
  t.ok(generated >= 10_000, `${generated} generated requests in all (at least 10000)`)
  t.same(await snapshot(), baseline, 'Redis is as it was: no key created, changed or deleted')
  const probe: Record<string, unknown> = {}
  t.equal(probe.polluted, undefined, 'no prototype pollution')
  t.ok(statuses.size > 20, `${statuses.size} distinct (route, status, code) outcomes were seen`)
  t.comment([...statuses].sort(([a], [b]) => a.localeCompare(b)).map(([outcome, count]) => `${outcome}: ${count}`).join('\n'))
  for (const token of liveAccess) {
    t.equal((await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })).statusCode, 200, 'every live access token still works')
  }
  for (const refreshToken of liveRefresh) {
    t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })).statusCode, 200, 'every live session still refreshes')
  }
  t.not(JSON.stringify(await snapshot()), JSON.stringify(baseline), 'the snapshot sees a real rotation: the comparison above could fail')
})
