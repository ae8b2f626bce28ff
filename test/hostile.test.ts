import t, { type Test } from 'tap'
import { Agent, request as httpRequest } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import type { AuditEvent } from '../lib/index.js'
import { buildApp, login } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

/**
 * Hostile requests, one explicit case each, over real HTTP: Node's parser decides much of
 * what the plugin sees (header size limits, whitespace trimming, repeated headers, raw
 * bytes), so these go through a socket rather than `inject`. Every case asserts the exact
 * status and error code, and that nothing happened to the sessions it names: the audit
 * hooks record every refresh, logout and revocation.
 */

const redis = await startRedis(t)
const events: string[] = []
const record = (name: string) => (event: AuditEvent): void => { events.push(`${name} ${event.sessionId}`) }
const app = await buildApp(t, {
  redis: redis.url,
  onRefresh: record('refresh'),
  onLogout: record('logout'),
  onSessionRevoked: record('revoked'),
  onReuseDetected: record('reuse')
})
await app.listen({ port: 0, host: '127.0.0.1' })
const { port } = app.server.address() as AddressInfo
let users = 0

/** Node's default `maxHeaderSize`: 16 KiB for the request line and all headers. */
const MAX_HEADER_BYTES = 16 * 1024
/** The plugin's body limit on its routes. */
const ROUTE_BODY_LIMIT = 16 * 1024

interface RawResponse {
  status: number
  /** Header values by lower-case name, in the order sent. */
  headers: Map<string, string[]>
  text: string
  json: () => any
}

type HeaderValue = string | Buffer

/**
 * An HTTP/1.1 request as bytes: string values go out as latin1 (one byte per character),
 * Buffers as they are. Adds Host and `Connection: close`, and a Content-Length for a body
 * unless the headers say Transfer-Encoding.
 */
function message (method: string, path: string, headers: Array<[string, HeaderValue]> = [], body?: string | Buffer): Buffer {
  const all: Array<[string, HeaderValue]> = [['Host', `127.0.0.1:${port}`], ['Connection', 'close'], ...headers]
  const chunked = headers.some(([name]) => name.toLowerCase() === 'transfer-encoding')
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8')
  if (payload !== undefined && !chunked) all.push(['Content-Length', String(payload.length)])
  const parts: Buffer[] = [Buffer.from(`${method} ${path} HTTP/1.1\r\n`, 'latin1')]
  for (const [name, value] of all) {
    parts.push(Buffer.from(`${name}: `, 'latin1'), Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'), Buffer.from('\r\n'))
  }
  parts.push(Buffer.from('\r\n'))
  if (payload !== undefined) parts.push(payload)
  return Buffer.concat(parts)
}

/** Sends the bytes on a new connection and reads the answer until the server closes it (`Connection: close`). */
async function raw (bytes: Buffer): Promise<RawResponse> {
  const received = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = connect(port, '127.0.0.1')
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')))
    socket.on('data', (chunk) => chunks.push(chunk))
    // The server may reset a connection it refuses (431) while we still write: what it sent counts.
    socket.on('error', (error) => { if (chunks.length === 0) reject(error) })
    socket.on('close', () => resolve(Buffer.concat(chunks)))
    // Not end(): Node's server drops a request whose client half-closes before the answer.
    socket.write(bytes)
  })
  return parseResponse(received)
}

function parseResponse (received: Buffer): RawResponse {
  const end = received.indexOf('\r\n\r\n')
  if (end === -1) throw new Error(`no HTTP response: ${JSON.stringify(received.toString('latin1').slice(0, 200))}`)
  const [statusLine = '', ...lines] = received.subarray(0, end).toString('latin1').split('\r\n')
  const headers = new Map<string, string[]>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    headers.set(name, [...headers.get(name) ?? [], line.slice(colon + 1).trim()])
  }
  let body = received.subarray(end + 4)
  if (headers.get('transfer-encoding')?.[0] === 'chunked') body = unchunk(body)
  const text = body.toString('utf8')
  return { status: Number(statusLine.split(' ')[1]), headers, text, json: () => JSON.parse(text) }
}

function unchunk (body: Buffer): Buffer {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at)
    const size = Number.parseInt(body.subarray(at, lineEnd).toString('latin1'), 16)
    if (!(size > 0)) return Buffer.concat(parts)
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size))
    at = lineEnd + 2 + size + 2
  }
}

function jsonRequest (path: string, body: unknown, headers: Array<[string, HeaderValue]> = []): Buffer {
  return message('POST', path, [['Content-Type', 'application/json'], ...headers], JSON.stringify(body))
}

/** The exact status and code, the error body's shape, and the 401 challenge. */
function assertError (t: Test, response: RawResponse, status: number, code: string, label: string): void {
  t.equal(response.status, status, `${label}: status ${status}`)
  let body: Record<string, unknown> = {}
  try {
    body = response.json()
  } catch {}
  t.equal(body.code, code, `${label}: code ${code}`)
  t.equal(body.statusCode, status, `${label}: statusCode in the body`)
  if (status === 401) t.equal(response.headers.get('www-authenticate')?.[0], 'Bearer error="invalid_token"', `${label}: a Bearer challenge`)
}

/** The names of the cookies the response clears: emptied and expired. */
function clearedCookies (response: RawResponse): string[] {
  const cleared: string[] = []
  for (const line of response.headers.get('set-cookie') ?? []) {
    const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
    const [name = '', value] = pair.split('=')
    const expired = attributes.some((attribute) => /^max-age=0$/i.test(attribute) ||
      (/^expires=/i.test(attribute) && Date.parse(attribute.slice(8)) <= Date.now()))
    if (value === '' && expired) cleared.push(name)
  }
  return cleared.sort()
}

/** A new user's session with body transport, and its session id. */
async function session (): Promise<{ accessToken: string, refreshToken: string, sessionId: string }> {
  const tokens = await login(app, `user${++users}`)
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${tokens.accessToken}` } })
  return { ...tokens, sessionId: me.json().sessionId }
}

/** Asserts that no refresh, logout or revocation happened while `run` ran. */
async function unchanged (t: Test, run: () => Promise<void>): Promise<void> {
  const before = events.length
  await run()
  t.same(events.slice(before), [], 'no session was refreshed, logged out or revoked')
}

/** What a successful refresh looks like; the only way a test here moves a session on. */
async function assertRefreshes (t: Test, refreshToken: string, label: string): Promise<void> {
  const response = await raw(jsonRequest('/auth/refresh', { refreshToken }))
  t.equal(response.status, 200, `${label}: the session still refreshes`)
}

t.test('headers over 16 KiB get Node\'s 431 before any route runs; the server goes on serving', async (t) => {
  const { accessToken } = await session()
  // A keep-alive connection opened before the attack must survive it.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const viaAgent = async (): Promise<{ status: number, reused: boolean }> => await new Promise((resolve, reject) => {
    const request = httpRequest({ port, host: '127.0.0.1', path: '/me', agent, headers: { authorization: `Bearer ${accessToken}` } }, (response) => {
      response.resume()
      response.on('end', () => resolve({ status: response.statusCode ?? 0, reused: request.reusedSocket }))
    })
    request.on('error', reject)
    request.end()
  })
  t.same(await viaAgent(), { status: 200, reused: false }, 'a keep-alive client is served')

  const oversized: Array<[string, Array<[string, string]>]> = [
    ['a padding header', [['X-Pad', 'a'.repeat(MAX_HEADER_BYTES + 1)]]],
    ['a huge Authorization header', [['Authorization', `Bearer ${'A'.repeat(MAX_HEADER_BYTES + 1)}`]]],
    ['a huge Cookie header', [['Cookie', `access_token=${accessToken}; pad=${'b'.repeat(MAX_HEADER_BYTES)}`]]],
    ['many headers that add up', Array.from({ length: 200 }, (_, i): [string, string] => [`X-Pad-${i}`, 'c'.repeat(100)])]
  ]
  for (const [label, headers] of oversized) {
    const response = await raw(message('GET', '/me', headers))
    t.equal(response.status, 431, `${label}: 431`)
    // Fastify's clientError answer: the request never reached a route, so it has no code.
    t.same(response.json(), { error: 'Request Header Fields Too Large', message: 'Exceeded maximum allowed HTTP header size', statusCode: 431 },
      `${label}: Fastify's fixed clientError body, without a code`)
  }

  t.same(await viaAgent(), { status: 200, reused: true }, 'the keep-alive connection is still served')
  assertError(t, await raw(message('GET', '/me')), 401, 'FTS_TOKEN_MISSING', 'a new client after the attacks')
  const justUnder = await raw(message('GET', '/me', [['Authorization', `Bearer ${accessToken}`], ['X-Pad', 'd'.repeat(MAX_HEADER_BYTES - 1024)]]))
  t.equal(justUnder.status, 200, 'headers just under the limit are served')
})

t.test('bodies over 16 KiB on refresh, logout and logout-all get 413 FST_ERR_CTP_BODY_TOO_LARGE', async (t) => {
  const { refreshToken, accessToken } = await session()
  // A body of exactly the limit is read, and fails on the token it carries.
  const envelope = JSON.stringify({ refreshToken: '' }).length
  const fits = JSON.stringify({ refreshToken: 'x'.repeat(ROUTE_BODY_LIMIT - envelope) })
  t.equal(fits.length, ROUTE_BODY_LIMIT)
  assertError(t, await raw(message('POST', '/auth/refresh', [['Content-Type', 'application/json']], fits)),
    401, 'FTS_TOKEN_INVALID', 'a body of exactly 16 KiB is read')

  const tooBig = JSON.stringify({ refreshToken, pad: 'x'.repeat(ROUTE_BODY_LIMIT) })
  await unchanged(t, async () => {
    for (const path of ['/auth/refresh', '/auth/logout', '/auth/logout-all']) {
      assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json'], ['Authorization', `Bearer ${accessToken}`]], tooBig)),
        413, 'FST_ERR_CTP_BODY_TOO_LARGE', `${path}, with Content-Length`)
      const chunk = Buffer.from(tooBig)
      const chunked = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n0\r\n\r\n')])
      assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json'], ['Transfer-Encoding', 'chunked']], chunked)),
        413, 'FST_ERR_CTP_BODY_TOO_LARGE', `${path}, chunked`)
    }
  })
  await assertRefreshes(t, refreshToken, 'after the oversized bodies')
})

t.test('duplicate cookies: a token cookie named twice is rejected', async (t) => {
  const csrf: [string, string] = ['X-Requested-With', 'test']
  const refreshCookies = async (cookie: HeaderValue, extra: Array<[string, HeaderValue]> = []): Promise<RawResponse> =>
    await raw(message('POST', '/auth/refresh', [['Cookie', cookie], csrf, ...extra]))

  t.test('a refresh cookie named twice is rejected, whichever comes first, and the session lives on', async (t) => {
    const { refreshToken, sessionId } = await session()
    const bound = `session_binding=${sessionId}`
    await unchanged(t, async () => {
      for (const cookie of [`refresh_token=${refreshToken}; refresh_token=garbage; ${bound}`, `refresh_token=garbage; refresh_token=${refreshToken}; ${bound}`]) {
        const planted = await refreshCookies(cookie)
        assertError(t, planted, 400, 'FTS_COOKIE_CONFLICT', cookie.slice(0, 30))
        t.same(clearedCookies(planted), [], 'the cookies are left alone')
      }
      // Node joins repeated Cookie lines with "; ", in order: the same thing.
      const twoLines = await raw(message('POST', '/auth/refresh', [['Cookie', `refresh_token=garbage; ${bound}`], ['Cookie', `refresh_token=${refreshToken}`], csrf]))
      assertError(t, twoLines, 400, 'FTS_COOKIE_CONFLICT', 'two Cookie lines')
      const empty = await refreshCookies(`refresh_token=; refresh_token=${refreshToken}; ${bound}`)
      assertError(t, empty, 400, 'FTS_COOKIE_CONFLICT', 'an empty first cookie')
    })
    await assertRefreshes(t, refreshToken, 'the planted cookies')
  })

  t.test('the same for the access cookie', async (t) => {
    const { accessToken, sessionId } = await session()
    const bound = `session_binding=${sessionId}`
    assertError(t, await raw(message('GET', '/me', [['Cookie', `access_token=garbage; access_token=${accessToken}; ${bound}`]])),
      400, 'FTS_COOKIE_CONFLICT', 'garbage first')
    assertError(t, await raw(message('GET', '/me', [['Cookie', `access_token=${accessToken}; access_token=garbage; ${bound}`]])),
      400, 'FTS_COOKIE_CONFLICT', 'valid first')
    t.equal((await raw(message('GET', '/me', [['Cookie', ` access_token = ${accessToken} ; ${bound}`]]))).status, 200,
      'spaces around the name and value are trimmed (the cookie parser\'s rule)')
  })
})

t.test('a refreshToken that is not a non-empty string is a 400 FTS_BAD_REQUEST, on refresh and on logout', async (t) => {
  const { refreshToken } = await session()
  const values: Array<[string, unknown]> = [
    ['a number', 42], ['zero', 0], ['a float', -1.5], ['an array', [refreshToken]], ['an empty array', []],
    ['an object', { token: refreshToken }], ['null', null], ['true', true], ['false', false], ['an empty string', '']
  ]
  await unchanged(t, async () => {
    for (const path of ['/auth/refresh', '/auth/logout']) {
      for (const [label, value] of values) {
        assertError(t, await raw(jsonRequest(path, { refreshToken: value })), 400, 'FTS_BAD_REQUEST', `${path}: ${label}`)
      }
      for (const body of ['null', '42', '"a string"', 'true', `["${refreshToken}"]`]) {
        assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json']], body)), 400, 'FTS_BAD_REQUEST', `${path}: the body ${body.slice(0, 12)}`)
      }
      assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json']], `{"refreshToken": "${refreshToken}"`)),
        400, 'FTS_BAD_REQUEST', `${path}: broken JSON`)
    }
  })
  await assertRefreshes(t, refreshToken, 'after the bad bodies')
})

t.test('tokens in the query string are ignored', async (t) => {
  const { accessToken, refreshToken } = await session()
  const query = `?refreshToken=${refreshToken}&refresh_token=${refreshToken}&access_token=${accessToken}&token=${accessToken}`
  await unchanged(t, async () => {
    assertError(t, await raw(message('POST', `/auth/refresh${query}`, [['Content-Type', 'application/json']], '{}')), 401, 'FTS_TOKEN_MISSING', 'refresh')
    assertError(t, await raw(message('POST', `/auth/refresh${query}`)), 401, 'FTS_TOKEN_MISSING', 'refresh without a body')
    assertError(t, await raw(message('GET', `/me${query}`)), 401, 'FTS_TOKEN_MISSING', 'GET /me')
    assertError(t, await raw(message('GET', `/auth/sessions${query}`)), 401, 'FTS_TOKEN_MISSING', 'GET /auth/sessions')
    assertError(t, await raw(message('POST', `/auth/logout-all${query}`)), 401, 'FTS_TOKEN_MISSING', 'logout-all')
    t.equal((await raw(message('POST', `/auth/logout${query}`))).status, 204, 'logout answers 204, as it does without a session')
  })
  await assertRefreshes(t, refreshToken, 'after the query-string tokens')
})

t.test('a body that is not JSON is a 415 FTS_UNSUPPORTED_MEDIA_TYPE on the plugin\'s routes, before it is read', async (t) => {
  const { accessToken, refreshToken } = await session()
  const json = JSON.stringify({ refreshToken })
  const types = [
    'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
    'application/xml', 'text/xml', 'application/json-patch+json', 'application/jsonx', 'text/json', '*/*', 'application/*'
  ]
  await unchanged(t, async () => {
    for (const path of ['/auth/refresh', '/auth/logout', '/auth/logout-all']) {
      const auth: [string, string] = ['Authorization', `Bearer ${accessToken}`]
      for (const type of types) {
        assertError(t, await raw(message('POST', path, [['Content-Type', type], auth], json)), 415, 'FTS_UNSUPPORTED_MEDIA_TYPE', `${path}: ${type}`)
      }
      assertError(t, await raw(message('POST', path, [auth], json)), 415, 'FTS_UNSUPPORTED_MEDIA_TYPE', `${path}: a body without a content type`)
      const chunked = Buffer.from(`${Buffer.byteLength(json).toString(16)}\r\n${json}\r\n0\r\n\r\n`)
      assertError(t, await raw(message('POST', path, [['Transfer-Encoding', 'chunked'], auth], chunked)), 415, 'FTS_UNSUPPORTED_MEDIA_TYPE',
        `${path}: a chunked body without a content type`)
      const form = `refreshToken=${refreshToken}`
      assertError(t, await raw(message('POST', path, [['Content-Type', 'application/x-www-form-urlencoded'], auth], form)), 415, 'FTS_UNSUPPORTED_MEDIA_TYPE',
        `${path}: the token as a form field`)
    }
  })
  const upper = await raw(message('POST', '/auth/refresh', [['Content-Type', 'Application/JSON; Charset=UTF-8']], json))
  t.equal(upper.status, 200, 'the media type is matched case-insensitively, with parameters')
})

t.test('JSON with a byte order mark is a 400 FTS_BAD_REQUEST (JSON.parse refuses it)', async (t) => {
  const { refreshToken } = await session()
  const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ refreshToken }))])
  await unchanged(t, async () => {
    for (const path of ['/auth/refresh', '/auth/logout']) {
      assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json; charset=utf-8']], withBom)), 400, 'FTS_BAD_REQUEST', path)
    }
  })
  await assertRefreshes(t, refreshToken, 'after the BOM')
})

t.test('deeply nested JSON is answered, not a stack overflow', async (t) => {
  const depth = 8000
  const arrays = '['.repeat(depth) + ']'.repeat(depth)
  const objects = '{"a":'.repeat(depth / 4) + '1' + '}'.repeat(depth / 4)
  const inField = `{"refreshToken":${'['.repeat(depth - 10)}${']'.repeat(depth - 10)}}`
  for (const path of ['/auth/refresh', '/auth/logout']) {
    assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json']], arrays)), 400, 'FTS_BAD_REQUEST', `${path}: ${depth} nested arrays`)
    assertError(t, await raw(message('POST', path, [['Content-Type', 'application/json']], inField)), 400, 'FTS_BAD_REQUEST', `${path}: nested arrays as refreshToken`)
  }
  assertError(t, await raw(message('POST', '/auth/refresh', [['Content-Type', 'application/json']], objects)), 401, 'FTS_TOKEN_MISSING',
    'nested objects without a refreshToken')
  t.equal((await raw(message('POST', '/auth/logout', [['Content-Type', 'application/json']], objects))).status, 204, 'logout of nothing')
  assertError(t, await raw(message('GET', '/me')), 401, 'FTS_TOKEN_MISSING', 'the server still answers')
})

t.test('__proto__ and constructor keys pollute nothing', async (t) => {
  const { refreshToken } = await session()
  await unchanged(t, async () => {
    // Were __proto__ applied as the prototype, body.refreshToken would find the real token through it.
    const proto = `{"__proto__": {"polluted": "yes", "refreshToken": "${refreshToken}"}}`
    assertError(t, await raw(message('POST', '/auth/refresh', [['Content-Type', 'application/json']], proto)), 401, 'FTS_TOKEN_MISSING', '__proto__ holding the token')
    const ctor = '{"constructor": {"prototype": {"polluted": "yes"}}, "refreshToken": "garbage"}'
    assertError(t, await raw(message('POST', '/auth/refresh', [['Content-Type', 'application/json']], ctor)), 401, 'FTS_TOKEN_INVALID', 'constructor.prototype')
    const nested = '{"refreshToken": "garbage", "a": {"__proto__": {"polluted": "yes"}}}'
    assertError(t, await raw(message('POST', '/auth/refresh', [['Content-Type', 'application/json']], nested)), 401, 'FTS_TOKEN_INVALID', 'nested __proto__')
    t.equal((await raw(message('POST', '/auth/logout', [['Content-Type', 'application/json']], proto))).status, 204, 'logout: nothing named, nothing ended')
    assertError(t, await raw(message('GET', '/me', [['Cookie', '__proto__=polluted; constructor=polluted; toString=x; hasOwnProperty=y']])),
      401, 'FTS_TOKEN_MISSING', 'cookies named after Object.prototype members')
    assertError(t, await raw(message('GET', '/me', [['Cookie', 'access_token=__proto__']])), 401, 'FTS_TOKEN_INVALID', 'a cookie valued __proto__')
  })
  const probe: Record<string, unknown> = {}
  t.equal(probe.polluted, undefined, '({}).polluted is still undefined')
  t.notOk(Object.hasOwn(Object.prototype, 'polluted'), 'Object.prototype has no polluted key')
  await assertRefreshes(t, refreshToken, 'after the pollution attempts')
})

t.test('a Cookie header with thousands of cookies', async (t) => {
  const { accessToken, refreshToken, sessionId } = await session()
  const many = Array.from({ length: 1300 }, (_, i) => `c${i}=${i}`).join('; ')
  t.ok(many.length > 12_000 && many.length < MAX_HEADER_BYTES - 1200, `${many.length} bytes, under the header limit with a token`)
  t.equal((await raw(message('GET', '/me', [['Cookie', `${many}; access_token=${accessToken}; session_binding=${sessionId}`]]))).status, 200, 'the token after 1300 others is found')
  assertError(t, await raw(message('GET', '/me', [['Cookie', many]])), 401, 'FTS_TOKEN_MISSING', 'none of them a token')
  const repeated = Array.from({ length: 600 }, () => 'refresh_token=garbage').join('; ')
  await unchanged(t, async () => {
    const response = await raw(message('POST', '/auth/refresh', [['Cookie', `${repeated}; refresh_token=${refreshToken}; session_binding=${sessionId}`], ['X-Requested-With', 'test']]))
    assertError(t, response, 400, 'FTS_COOKIE_CONFLICT', '600 garbage refresh cookies before the real one')
    t.same(clearedCookies(response), [], 'the cookies are left alone')
  })
  await assertRefreshes(t, refreshToken, 'after the cookie flood')
})

t.test('Bearer headers with odd whitespace', async (t) => {
  const { accessToken } = await session()
  const me = async (authorization: HeaderValue): Promise<RawResponse> => await raw(message('GET', '/me', [['Authorization', authorization]]))
  const accepted: Array<[string, string]> = [
    ['two spaces after the scheme', `Bearer  ${accessToken}`],
    ['trailing spaces (Node trims them)', `Bearer ${accessToken}   `],
    ['a trailing tab (Node trims it)', `Bearer ${accessToken}\t`],
    ['leading whitespace (Node trims it)', ` \tBearer ${accessToken}`],
    ['a lower-case scheme', `bearer ${accessToken}`]
  ]
  for (const [label, header] of accepted) t.equal((await me(header)).status, 200, label)
  const invalid: Array<[string, string]> = [
    ['a tab as the separator', `Bearer\t${accessToken}`],
    ['a space and a tab', `Bearer \t${accessToken}`],
    ['two tokens', `Bearer ${accessToken} ${accessToken}`],
    ['the token and a tab and garbage', `Bearer ${accessToken}\tx`],
    ['a second scheme after a comma', `Bearer ${accessToken}, Basic YTpi`],
    ['the scheme alone', 'Bearer'],
    ['the scheme and spaces', 'Bearer    ']
  ]
  for (const [label, header] of invalid) assertError(t, await me(header), 401, 'FTS_TOKEN_INVALID', label)
  const notBearer: Array<[string, string]> = [
    ['no space after the scheme', `Bearer${accessToken}`],
    ['a comma after the scheme', `Bearer,${accessToken}`],
    ['another scheme', `Token ${accessToken}`]
  ]
  for (const [label, header] of notBearer) assertError(t, await me(header), 401, 'FTS_TOKEN_MISSING', `${label}: no Bearer token`)
})

t.test('a very long Authorization header (under Node\'s limit) is refused before it is parsed', async (t) => {
  const { accessToken } = await session()
  const me = async (authorization: string): Promise<RawResponse> => await raw(message('GET', '/me', [['Authorization', authorization]]))
  assertError(t, await me(`Bearer ${'A'.repeat(12_000)}`), 401, 'FTS_TOKEN_INVALID', '12000 characters of token')
  assertError(t, await me(`Bearer ${accessToken}${'A'.repeat(9000)}`), 401, 'FTS_TOKEN_INVALID', 'a real token with 9000 more characters')
  assertError(t, await me(`Bearer ${'a.'.repeat(6000)}`), 401, 'FTS_TOKEN_INVALID', '6000 segments')
  assertError(t, await me(`Basic ${'A'.repeat(12_000)}`), 401, 'FTS_TOKEN_MISSING', 'another scheme, just as long')
})

t.test('non-ASCII bytes in headers', async (t) => {
  const { accessToken, refreshToken } = await session()
  const me = async (headers: Array<[string, HeaderValue]>): Promise<RawResponse> => await raw(message('GET', '/me', headers))
  // Swap one character of the real token for a look-alike: the token is no longer the one issued.
  const homoglyph = accessToken.replace(/a/, '\u0430')
  assertError(t, await me([['Authorization', Buffer.from(`Bearer ${homoglyph}`, 'utf8')]]), 401, 'FTS_TOKEN_INVALID', 'UTF-8 Cyrillic a in the token')
  assertError(t, await me([['Authorization', Buffer.from(`Bearer ${accessToken}\u00e9`, 'utf8')]]), 401, 'FTS_TOKEN_INVALID', 'UTF-8 é after the token')
  assertError(t, await me([['Authorization', Buffer.from(`Bearer ${accessToken}\u00fc`, 'latin1')]]), 401, 'FTS_TOKEN_INVALID', 'a latin1 byte after the token')
  assertError(t, await me([['Authorization', Buffer.from(`Bearer\u00a0${accessToken}`, 'latin1')]]), 401, 'FTS_TOKEN_INVALID', 'a no-break space as the separator')
  assertError(t, await me([['Cookie', Buffer.from(`access_token=${accessToken}\u00e9`, 'utf8')]]), 401, 'FTS_TOKEN_INVALID', 'UTF-8 é in the access cookie')
  t.equal((await me([['Authorization', `Bearer ${accessToken}`], ['X-Name', Buffer.from('J\u00fcrgen \u{1f600}', 'utf8')]])).status, 200,
    'non-ASCII in an unrelated header changes nothing')
  await unchanged(t, async () => {
    const response = await raw(message('POST', '/auth/refresh', [
      ['Cookie', Buffer.from(`refresh_token=${refreshToken}\u00e9`, 'utf8')], ['X-Requested-With', Buffer.from('\u00fc', 'latin1')]
    ]))
    assertError(t, response, 401, 'FTS_TOKEN_INVALID', 'a non-ASCII anti-CSRF header passes the check; the altered cookie does not')
    t.same(clearedCookies(response), ['access_token', 'refresh_token', 'session_binding'], 'cleared')
    assertError(t, await raw(message('POST', '/auth/refresh', [['Cookie', `refresh_token=${refreshToken}`], ['X-Requested-With', 'x'], ['Sec-Fetch-Site', 'CROSS-SITE']])),
      403, 'FTS_CSRF_REJECTED', 'Sec-Fetch-Site is compared case-insensitively')
  })
  const control = await me([['Authorization', `Bearer ${accessToken}\u0001`]])
  t.equal(control.status, 400, 'a control character: Node refuses the request')
  t.same(control.json(), { error: 'Bad Request', message: 'Client Error', statusCode: 400 }, 'Fastify\'s clientError body, without a code')
  await assertRefreshes(t, refreshToken, 'after the non-ASCII headers')
})

t.test('a token whose signature differs only in the unused low bits of its last character is rejected', async (t) => {
  // 32 signature bytes take 43 base64url characters, whose last carries 2 unused bits:
  // Buffer.from(s, 'base64') ignores them, so a different string decodes to the same
  // signature. Any token not byte-identical to one the app issued must fail.
  const { accessToken, refreshToken } = await session()
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const alias = (token: string): string => token.slice(0, -1) + alphabet[alphabet.indexOf(token.slice(-1)) ^ 1]
  t.not(alias(accessToken), accessToken)
  assertError(t, await raw(message('GET', '/me', [['Authorization', `Bearer ${alias(accessToken)}`]])), 401, 'FTS_TOKEN_INVALID', 'the access token\'s alias')
  await unchanged(t, async () => {
    assertError(t, await raw(jsonRequest('/auth/refresh', { refreshToken: alias(refreshToken) })), 401, 'FTS_TOKEN_INVALID', 'the refresh token\'s alias')
  })
})
