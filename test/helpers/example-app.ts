// The example app, black-box, as its test files drive it: real HTTP through fetch, a
// private Redis, and only what a client or an operator can see (status, headers, bodies,
// cookies, log lines).
import type { Test } from 'tap'
import type { AddressInfo } from 'node:net'
import { request as httpRequest } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../example-app/src/app.js'
import { loadConfig } from '../../example-app/src/config.js'
import { LogCapture, SECRET } from './common.js'
import type { RedisServer } from './redis.mjs'

/** Short enough to wait out in a test, long enough for the replay to land inside it. */
export const GRACE_SECONDS = 1
export const PASSWORD = 'correct horse battery'
export const NEW_PASSWORD = 'battery staple horse'

export interface Running {
  app: FastifyInstance
  url: string
  logs: LogCapture
  keyPrefix: string
}

/** Starts the app from an environment (as the server does) on a free port; closed at teardown. */
export type StartApp = (t: Test, env?: NodeJS.ProcessEnv) => Promise<Running>

/**
 * The `startApp` of one test file: every app it starts uses `redis`, each under a key
 * prefix of its own.
 */
export function appStarter (redis: RedisServer): StartApp {
  let appCount = 0
  return async (t, env = {}) => await startApp(t, redis, `example${++appCount}:`, env)
}

async function startApp (t: Test, redis: RedisServer, keyPrefix: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const logs = new LogCapture()
  const config = loadConfig({
    REDIS_URL: redis.url,
    JWT_SECRET: SECRET,
    KEY_PREFIX: keyPrefix,
    REFRESH_REUSE_GRACE: String(GRACE_SECONDS),
    LOG_LEVEL: 'debug',
    ...env
  })
  const app = await buildApp(config, { logStream: logs })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { app, url: `http://127.0.0.1:${port}`, logs, keyPrefix }
}

export interface Call {
  status: number
  headers: Headers
  body: any
  cookies: Map<string, SetCookie>
}

export interface SetCookie {
  value: string
  /** Attribute names in lower case; flags map to true. */
  attributes: Map<string, string | true>
}

/** The cookies a response sets, by name, with their attributes. */
export function cookiesOf (response: Response): Map<string, SetCookie> {
  const cookies = new Map<string, SetCookie>()
  for (const line of response.headers.getSetCookie()) {
    const [pair = '', ...parts] = line.split(';').map((part) => part.trim())
    const eq = pair.indexOf('=')
    const attributes = new Map<string, string | true>()
    for (const part of parts) {
      const at = part.indexOf('=')
      if (at === -1) attributes.set(part.toLowerCase(), true)
      else attributes.set(part.slice(0, at).toLowerCase(), part.slice(at + 1))
    }
    cookies.set(pair.slice(0, eq), { value: pair.slice(eq + 1), attributes })
  }
  return cookies
}

/** One request; `json` is sent as a JSON body, `body` as is (with whatever type it implies). */
export async function call (
  base: string, method: string, path: string,
  options: { json?: unknown, body?: RequestInit['body'], headers?: Record<string, string> } = {}
): Promise<Call> {
  const headers: Record<string, string> = { ...options.headers }
  let body = options.body
  if (options.json !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(options.json)
  }
  return await answerOf(await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) }))
}

async function answerOf (response: Response): Promise<Call> {
  const text = await response.text()
  const isJson = (response.headers.get('content-type') ?? '').startsWith('application/json')
  return { status: response.status, headers: response.headers, body: isJson ? JSON.parse(text) : text, cookies: cookiesOf(response) }
}

/**
 * {@link call} from another loopback address (all of 127/8 is local on Linux): another
 * client with its own IP, over real HTTP, without trusting any forwarding header.
 */
export async function callFrom (
  localAddress: string, base: string, method: string, path: string,
  options: { json?: unknown, headers?: Record<string, string> } = {}
): Promise<Call> {
  const target = new URL(path, base)
  const payload = options.json === undefined ? undefined : JSON.stringify(options.json)
  const headers: Record<string, string> = { ...options.headers }
  if (payload !== undefined) headers['content-type'] = 'application/json'
  const response = await new Promise<Response>((resolve, reject) => {
    const request = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, method, headers, localAddress }, (answer) => {
      const chunks: Buffer[] = []
      answer.on('data', (chunk: Buffer) => chunks.push(chunk))
      answer.on('end', () => {
        const pairs: Array<[string, string]> = []
        for (let i = 0; i < answer.rawHeaders.length; i += 2) pairs.push([answer.rawHeaders[i] as string, answer.rawHeaders[i + 1] as string])
        const status = answer.statusCode ?? 0
        // A Response of a null-body status (204, 304) may not be given one, even empty.
        resolve(new Response([204, 205, 304].includes(status) ? null : Buffer.concat(chunks), { status, headers: pairs }))
      })
    })
    request.on('error', reject)
    request.end(payload)
  })
  return await answerOf(response)
}

/** Every error has the same four fields and a stable code. */
export function assertError (t: Test, response: Call, status: number, code: string, label: string): void {
  t.equal(response.status, status, `${label}: status ${status}`)
  t.same(Object.keys(response.body ?? {}).sort(), ['code', 'error', 'message', 'statusCode'], `${label}: error shape`)
  t.equal(response.body?.code, code, `${label}: code ${code}`)
  t.equal(response.body?.statusCode, status, `${label}: statusCode in body`)
  t.type(response.body?.error, 'string', `${label}: error text`)
  t.type(response.body?.message, 'string', `${label}: message`)
}

/**
 * The `Cookie` header of the named cookies, and of the session cookie, which (Path=/, set
 * with the tokens) a browser sends with every request.
 */
export function cookieHeader (cookies: Map<string, SetCookie>, ...names: string[]): string {
  const binding = cookies.get('session_binding')
  const pairs = names.map((name) => `${name}=${cookies.get(name)?.value ?? ''}`)
  return (binding === undefined ? pairs : [...pairs, `session_binding=${binding.value}`]).join('; ')
}

/** The cookie was cleared: empty value and an immediate or past expiry. */
export function assertCleared (t: Test, cookie: SetCookie | undefined, path: string, label: string): void {
  t.ok(cookie, `${label} is set`)
  t.equal(cookie?.value, '', `${label} is emptied`)
  const maxAge = cookie?.attributes.get('max-age')
  const expires = cookie?.attributes.get('expires')
  const expired = maxAge === '0' || (typeof expires === 'string' && Date.parse(expires) <= Date.now())
  t.ok(expired, `${label} expires now (Max-Age=${String(maxAge)}, Expires=${String(expires)})`)
  t.equal(cookie?.attributes.get('path'), path, `${label} keeps Path=${path}, or the browser keeps the old cookie`)
}

export async function register (base: string, username: string): Promise<{ id: string, username: string }> {
  const response = await call(base, 'POST', '/auth/register', { json: { username, password: PASSWORD } })
  if (response.status !== 201) throw new Error(`register ${username}: ${response.status}`)
  return response.body
}

export async function loginWithCookies (base: string, username: string): Promise<Call> {
  const response = await call(base, 'POST', '/auth/login', { json: { username, password: PASSWORD } })
  if (response.status !== 200) throw new Error(`login ${username}: ${response.status}`)
  return response
}

export interface NativeTokens {
  accessToken: string
  refreshToken: string
  refreshExpiresIn: number
}

export async function loginNative (base: string, username: string, userAgent?: string): Promise<NativeTokens> {
  const response = await call(base, 'POST', '/auth/login', {
    json: { username, password: PASSWORD },
    headers: { 'x-token-transport': 'body', ...(userAgent === undefined ? {} : { 'user-agent': userAgent }) }
  })
  if (response.status !== 200) throw new Error(`native login ${username}: ${response.status}`)
  return response.body
}

export function bearer (accessToken: string): Record<string, string> {
  return { authorization: `Bearer ${accessToken}` }
}

/** The session id of an access token, as the app shows it. */
export async function sessionIdOf (base: string, accessToken: string): Promise<string> {
  const me = await call(base, 'GET', '/me', { headers: bearer(accessToken) })
  if (me.status !== 200) throw new Error(`GET /me: ${me.status}`)
  return me.body.sessionId
}

export async function refreshNative (base: string, refreshToken: string): Promise<Call> {
  return await call(base, 'POST', '/auth/refresh', { json: { refreshToken } })
}

/** The log lines of the app's audit hooks. */
export function auditLines (logs: LogCapture): Array<Record<string, unknown>> {
  return logs.entries().filter((entry) => 'audit' in entry)
}

/** No log line may hold a token, a cookie value or a password. */
export function assertLogsClean (t: Test, logs: LogCapture, secrets: string[]): void {
  t.ok(logs.lines.length > 0, 'the app logged something')
  for (const secret of secrets) {
    t.notOk(logs.text.includes(secret), `logs do not contain ${secret.slice(0, 12)}…`)
  }
}
