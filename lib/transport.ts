import { isIP } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CookieSerializeOptions } from '@fastify/cookie'
import { BadRequestError, CookieConflictError, CsrfError, TokenInvalidError } from './errors.js'
import { rateBound } from './log.js'
import type { ResolvedCookies, ResolvedOptions } from './options.js'
import { MAX_TOKEN_LENGTH } from './schemas.js'
import type { TokenResponse, TokenSet, TokenTransport } from './types.js'

/**
 * Native clients ask for tokens in the body at login with this header (value `body`).
 *
 * @example
 * ```ts
 * await fetch('/auth/login', { method: 'POST', headers: { [TRANSPORT_HEADER]: 'body', 'content-type': 'application/json' }, body })
 * ```
 */
export const TRANSPORT_HEADER = 'x-token-transport'

/**
 * The body of a token response: the refresh token appears only when the client keeps
 * it itself (transport `body`); a browser never gets it where its scripts could read it.
 *
 * @example
 * ```ts
 * app.post('/login', async (request, reply) => {
 *   const user = await checkPassword(request.body)
 *   return tokenResponse(await reply.issueTokens(user.id))
 * })
 * ```
 */
export function tokenResponse (tokens: TokenSet): TokenResponse {
  const body: TokenResponse = { accessToken: tokens.accessToken, tokenType: tokens.tokenType, expiresIn: tokens.expiresIn }
  if (tokens.transport === 'body') {
    body.refreshToken = tokens.refreshToken
    body.refreshExpiresIn = tokens.refreshExpiresIn
  }
  return body
}

/** The Bearer scheme, then (when well formed) one token and nothing else. */
const BEARER = /^Bearer(?=\s|$)(?: +([^\s]+) *$)?/i
/** The DPoP scheme (RFC 9449 §7.1), likewise. */
const DPOP = /^DPoP(?=\s|$)(?: +([^\s]+) *$)?/i

/** A token as a request carried it. */
export interface CarriedToken {
  token: string
  /**
   * For a token from a cookie, the session the session cookie names ('' for none): the
   * token must be of that session. Undefined for a token from a header or the body.
   */
  boundTo: string | undefined
}

/** A token no longer than any of ours can be; a longer one is rejected before any parsing. */
export function checkedLength (token: string): string {
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenInvalidError()
  return token
}

/**
 * Where tokens travel: read from the Authorization header, a cookie or the JSON body,
 * written as cookies or left to the body, and the CSRF and Origin checks that a token
 * from a cookie needs. Everything here is HTTP; nothing here checks a token's signature.
 */
export class Transport {
  readonly #cookies: ResolvedCookies | null
  readonly #csrfHeader: string | null
  readonly #origins: ResolvedOptions['origins']
  readonly #now: () => number
  /**
   * The cookie domain to check against each request's host: none with publicOrigin, whose
   * host registration checked (a proxy may rewrite Host), or without cookies.domain.
   */
  readonly #domainToCheck: string | undefined
  /** The hosts warned about for not matching it: at most MAX_DOMAIN_WARNINGS. */
  readonly #hostsWarned = new Set<string>()
  /** When each refusal (check and origin) was last logged, oldest first: at most MAX_REFUSALS_REMEMBERED. */
  readonly #refusalsLogged = new Map<string, number>()
  /** Logs a refusal: at most MAX_REFUSAL_LINES a minute overall, whatever the origins. */
  readonly #logRefusal: (refusal: Refusal) => void

  constructor (options: Pick<ResolvedOptions, 'cookies' | 'csrfHeader' | 'origins'>, now: () => number = Date.now) {
    this.#cookies = options.cookies
    this.#csrfHeader = options.csrfHeader
    this.#origins = options.origins
    this.#now = now
    this.#domainToCheck = options.origins.publicOrigin === undefined ? options.cookies?.domain : undefined
    // Once per check and origin is no bound when the origins are made up, one per request.
    this.#logRefusal = rateBound<Refusal>(({ request, check, origin }, skipped) => {
      request.log.info({ code: 'FTS_CSRF_REJECTED', check, origin, ...this.#explained(request, check), skipped }, `cross-site request rejected: ${REFUSALS[check]}`)
    }, REFUSAL_LOG_MS, now, MAX_REFUSAL_LINES)
  }

  /** The Bearer token of the Authorization header, if it names that scheme; a 401 if malformed. */
  bearer (request: FastifyRequest): string | undefined {
    return schemeToken(request, BEARER)
  }

  /** The DPoP-bound access token of the Authorization header (`DPoP <token>`), if it names that scheme; a 401 if malformed. */
  dpopBound (request: FastifyRequest): string | undefined {
    return schemeToken(request, DPOP)
  }

  /** The access token: the Bearer or DPoP-bound token of the Authorization header, or else the access cookie. */
  accessToken (request: FastifyRequest): CarriedToken | undefined {
    const header = this.bearer(request) ?? this.dpopBound(request)
    return header === undefined ? this.accessCookie(request) : { token: header, boundTo: undefined }
  }

  /** The access cookie and the session it is bound to, when cookies are on and it is there. */
  accessCookie (request: FastifyRequest): CarriedToken | undefined {
    return this.#cookies === null ? undefined : readTokenCookie(request, this.#cookies, this.#cookies.accessTokenName)
  }

  /** The refresh token: `refreshToken` of the JSON body, or else the refresh cookie. */
  refreshToken (request: FastifyRequest): CarriedToken | undefined {
    // An empty body of another type (allowed through by requireJson) is no body.
    const body: unknown = request.body === '' ? undefined : request.body
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) throw new BadRequestError()
    const fromBody = (body as { refreshToken?: unknown } | undefined)?.refreshToken
    if (fromBody !== undefined) {
      if (typeof fromBody !== 'string' || fromBody.length === 0) throw new BadRequestError()
      return { token: fromBody, boundTo: undefined }
    }
    return this.#cookies === null ? undefined : readTokenCookie(request, this.#cookies, this.#cookies.refreshTokenName)
  }

  /**
   * How a login's tokens travel: as the app asked, or else as cookies, unless they are
   * off or the client asked for the body. Checked before the session starts.
   */
  chosenFor (request: FastifyRequest, asked: TokenTransport | undefined): TokenTransport {
    if (asked === 'cookie' && this.#cookies === null) throw new TypeError('fastify-token-sessions: transport "cookie" needs cookies enabled')
    if (asked !== undefined) return asked
    return this.#cookies === null || request.headers[TRANSPORT_HEADER] === 'body' ? 'body' : 'cookie'
  }

  /** A new token set on its way: as cookies when its transport says so; never cached. */
  deliver (reply: FastifyReply, set: TokenSet): TokenSet {
    if (set.transport === 'cookie' && this.#cookies !== null) {
      if (this.#domainToCheck !== undefined) this.#checkDomain(reply.request, this.#domainToCheck)
      setTokenCookies(reply, this.#cookies, set)
    }
    reply.header('cache-control', 'no-store')
    return set
  }

  /**
   * A `cookies.domain` the request's host does not domain-match (RFC 6265 §5.1.3): the
   * browser drops every cookie the answer sets, and the login looks fine. Told once per
   * host, for the first few: one odd request (a curl to a pod's address, a forged Host)
   * must not silence the real misconfiguration, nor many of them flood the log.
   */
  #checkDomain (request: FastifyRequest, domain: string): void {
    const host = cut(request.hostname.toLowerCase())
    if (this.#hostsWarned.size >= MAX_DOMAIN_WARNINGS || this.#hostsWarned.has(host) || domainMatches(host, domain)) return
    this.#hostsWarned.add(host)
    request.log.warn({ domain, host },
      'cookies.domain does not match the host the request was sent to: browsers drop the cookies this answer sets (RFC 6265 §5.1.3); browse to a host under that domain, or change or leave out cookies.domain; behind a proxy that rewrites Host, set publicOrigin to the origin the browser shows')
  }

  /** Clears the token cookies (when cookies are on). */
  clear (reply: FastifyReply): void {
    if (this.#cookies !== null) clearTokenCookies(reply, this.#cookies)
  }

  /** After a logout: the cookies go, and, after one that a cookie named, every other cookie of the site when asked. */
  loggedOut (reply: FastifyReply, byCookie: boolean): void {
    this.clear(reply)
    if (byCookie && this.#cookies?.clearSiteData === true) reply.header('clear-site-data', '"cookies"')
    reply.code(204)
  }

  /**
   * A browser attaches cookies to requests that other sites make it send, so a state
   * change authenticated by a cookie must prove it comes from our own page: by a custom
   * header (which a cross-site form or simple request cannot carry) and, where the browser
   * tells, by `Sec-Fetch-Site` not being `cross-site` and by an `Origin` that is the app's
   * own (or allowed); `Origin: null` (a sandboxed frame, a redirect) is never the app's.
   */
  checkCsrf (request: FastifyRequest): void {
    const origin = request.headers.origin
    if (request.headers['sec-fetch-site']?.toLowerCase() === 'cross-site') this.#refuse(request, 'sec-fetch-site', origin)
    if (origin !== undefined && !this.#originAllowed(request, origin.toLowerCase())) this.#refuse(request, 'origin', origin)
    if (this.#csrfHeader === null) return
    const value = request.headers[this.#csrfHeader]
    // Node joins a repeated custom header into one string, so only a string can arrive.
    if (typeof value !== 'string' || value === '') this.#refuse(request, 'csrf-header', origin)
  }

  #ownOrigin (request: FastifyRequest): string {
    return this.#origins.publicOrigin ?? `${request.protocol}://${request.host}`.toLowerCase()
  }

  #originAllowed (request: FastifyRequest, origin: string): boolean {
    return this.#origins.allowed.has(origin) || origin === this.#ownOrigin(request)
  }

  /**
   * The client only learns that the request was refused (telling it which check failed
   * would help no one but an attacker); the log says which, what was expected and which
   * option would allow it: once per check and origin a minute, a refused page's every
   * click being the same story, and at most MAX_REFUSAL_LINES lines a minute in all, the
   * next line counting those left out (`skipped`).
   */
  #refuse (request: FastifyRequest, check: CsrfCheck, origin: string | undefined): never {
    const seen = origin === undefined ? undefined : cut(origin)
    const key = `${check} ${seen ?? ''}`
    const now = this.#now()
    const last = this.#refusalsLogged.get(key)
    if (last === undefined || now - last >= REFUSAL_LOG_MS) {
      this.#refusalsLogged.delete(key)
      this.#refusalsLogged.set(key, now)
      if (this.#refusalsLogged.size > MAX_REFUSALS_REMEMBERED) this.#refusalsLogged.delete(this.#refusalsLogged.keys().next().value as string)
      this.#logRefusal({ request, check, origin: seen })
    }
    throw new CsrfError()
  }

  /** What the check expected and the option that would allow the request. */
  #explained (request: FastifyRequest, check: CsrfCheck): Record<string, unknown> {
    if (check === 'csrf-header') return { expected: `a non-empty ${this.#csrfHeader as string} header`, option: 'csrfHeader' }
    if (check === 'sec-fetch-site') return { expected: 'Sec-Fetch-Site same-origin, same-site or none', option: null }
    return { expected: [cut(this.#ownOrigin(request)), ...this.#origins.allowed], option: 'allowedOrigins or publicOrigin' }
  }
}

/** Which check refused a cookie-authenticated state change. */
type CsrfCheck = 'sec-fetch-site' | 'origin' | 'csrf-header'

/** A refusal to log: the request, the check that failed and the Origin seen (cut). */
interface Refusal { request: FastifyRequest, check: CsrfCheck, origin: string | undefined }

/** The refusals' log messages: what failed, and what allows it. */
const REFUSALS: Record<CsrfCheck, string> = {
  'sec-fetch-site': 'the browser says another site sent it (Sec-Fetch-Site: cross-site); no option allows a cookie-authenticated request of another site (a page of another site uses the body transport)',
  origin: 'its Origin is not the app\'s nor an allowed one; a page of the app on another origin goes in allowedOrigins, and behind a proxy (or a development server\'s proxy with changeOrigin) publicOrigin names the origin the browser sees',
  'csrf-header': 'the anti-CSRF header is missing; send it from the app\'s page (the browser client does), or name the header the page sends with csrfHeader'
}

/** A refusal is logged once per check and origin in this window. */
const REFUSAL_LOG_MS = 60_000
/** The most refusals (check and origin) remembered for that; the oldest is forgotten first. */
const MAX_REFUSALS_REMEMBERED = 1000
/** The most refusal lines in that window, over all checks and origins. */
const MAX_REFUSAL_LINES = 10
/** The most hosts warned about for not matching cookies.domain. */
const MAX_DOMAIN_WARNINGS = 8
/** An origin is a scheme, a host and a port: a longer header is cut to this length in the log. */
const MAX_LOGGED_ORIGIN = 120

/**
 * RFC 6265 §5.1.3: a host domain-matches a cookie's Domain (its leading dot ignored) when
 * it is that domain or a name under it; an IP address only when it is the domain itself.
 */
export function domainMatches (host: string, domain: string): boolean {
  const wanted = domain.toLowerCase().replace(/^\./, '')
  return host === wanted || (host.endsWith(`.${wanted}`) && isIP(host) === 0)
}

function cut (origin: string): string {
  return origin.length > MAX_LOGGED_ORIGIN ? `${origin.slice(0, MAX_LOGGED_ORIGIN)}…` : origin
}

function schemeToken (request: FastifyRequest, scheme: RegExp): string | undefined {
  const authorization = request.headers.authorization
  if (authorization === undefined) return undefined
  const match = scheme.exec(authorization)
  if (match === null) return undefined
  const token = match[1]
  if (token === undefined) throw new TokenInvalidError()
  return token
}

/** A cookie's attributes; a host-only cookie never gets the configured Domain. */
function attributes (cookies: ResolvedCookies, path: string, hostOnly = false): CookieSerializeOptions {
  return {
    httpOnly: true,
    secure: cookies.secure,
    sameSite: cookies.sameSite,
    path,
    ...(hostOnly || cookies.domain === undefined ? {} : { domain: cookies.domain })
  }
}

/**
 * Sets both token cookies, each living as long as its token, and the session cookie that
 * binds them: host-only on `/`, the refresh token's lifetime, holding the session id. A
 * session not remembered sets all three without `Max-Age` (nor `Expires`): the browser
 * drops them when it closes, and each token's own expiry still bounds it.
 */
function setTokenCookies (reply: FastifyReply, cookies: ResolvedCookies, tokens: TokenSet): void {
  const lifetime = (seconds: number): { maxAge?: number } => tokens.remembered ? { maxAge: seconds } : {}
  reply.setCookie(cookies.accessTokenName, tokens.accessToken, { ...attributes(cookies, cookies.path), ...lifetime(tokens.expiresIn) })
  reply.setCookie(cookies.refreshTokenName, tokens.refreshToken, { ...attributes(cookies, cookies.refreshPath), ...lifetime(tokens.refreshExpiresIn) })
  reply.setCookie(cookies.bindingName, tokens.sessionId, { ...attributes(cookies, '/', true), ...lifetime(tokens.refreshExpiresIn) })
}

/** Clears the cookies with the Path and Domain they were set with, or the browser keeps them. */
function clearTokenCookies (reply: FastifyReply, cookies: ResolvedCookies): void {
  reply.clearCookie(cookies.accessTokenName, attributes(cookies, cookies.path))
  reply.clearCookie(cookies.refreshTokenName, attributes(cookies, cookies.refreshPath))
  reply.clearCookie(cookies.bindingName, attributes(cookies, '/', true))
}

/**
 * The value of the token cookie `name`, read from the `Cookie` header itself, and the
 * session cookie's value. A cookie sent twice means one was planted (a sibling subdomain
 * or a man in the middle can add a cookie of the same name with another Path or Domain,
 * and the browser sends both): the request is rejected, whichever came first. An empty
 * value is no cookie.
 */
function readTokenCookie (request: FastifyRequest, cookies: ResolvedCookies, name: string): CarriedToken | undefined {
  const header = request.headers.cookie
  if (header === undefined) return undefined
  const token = cookieValue(header, name)
  if (token === undefined) return undefined
  return { token, boundTo: cookieValue(header, cookies.bindingName) ?? '' }
}

/** The one value of cookie `name` in a `Cookie` header; throws when it appears twice. */
function cookieValue (header: string, name: string): string | undefined {
  let value: string | undefined
  let from = 0
  while (from < header.length) {
    const at = header.indexOf(name, from)
    if (at === -1) break
    from = at + name.length
    // A match only at the start of a pair (after ";" or the header's start) and before
    // "=", spaces allowed around both, as cookie parsers allow them.
    let equals = from
    while (header.charCodeAt(equals) === 32) equals++
    if (header.charCodeAt(equals) !== 61 || (at > 0 && !isPairStart(header, at))) continue
    if (value !== undefined) throw new CookieConflictError()
    const end = header.indexOf(';', equals)
    value = header.slice(equals + 1, end === -1 ? undefined : end).trim()
  }
  return value === '' ? undefined : value
}

function isPairStart (header: string, at: number): boolean {
  let before = at - 1
  while (before >= 0 && header.charCodeAt(before) === 32) before--
  return before < 0 || header.charCodeAt(before) === 59
}
