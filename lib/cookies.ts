import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CookieSerializeOptions } from '@fastify/cookie'
import { CookieConflictError, CsrfError } from './errors.js'
import type { ResolvedCookies, ResolvedOptions } from './options.js'
import type { TokenSet } from './types.js'

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
 * binds them: host-only on `/`, the refresh token's lifetime, holding the session id.
 */
export function setTokenCookies (reply: FastifyReply, cookies: ResolvedCookies, tokens: TokenSet): void {
  reply.setCookie(cookies.accessTokenName, tokens.accessToken, { ...attributes(cookies, cookies.path), maxAge: tokens.expiresIn })
  reply.setCookie(cookies.refreshTokenName, tokens.refreshToken, { ...attributes(cookies, cookies.refreshPath), maxAge: tokens.refreshExpiresIn })
  reply.setCookie(cookies.bindingName, tokens.sessionId, { ...attributes(cookies, '/', true), maxAge: tokens.refreshExpiresIn })
}

/** Clears the cookies with the Path and Domain they were set with, or the browser keeps them. */
export function clearTokenCookies (reply: FastifyReply, cookies: ResolvedCookies): void {
  reply.clearCookie(cookies.accessTokenName, attributes(cookies, cookies.path))
  reply.clearCookie(cookies.refreshTokenName, attributes(cookies, cookies.refreshPath))
  reply.clearCookie(cookies.bindingName, attributes(cookies, '/', true))
}

/** A token cookie as read: its value, and the session it must belong to (the session cookie's). */
export interface CookieToken {
  token: string
  boundTo: string | undefined
}

/**
 * The value of the token cookie `name`, read from the `Cookie` header itself, and the
 * session cookie's value. A cookie sent twice means one was planted (a sibling subdomain
 * or a man in the middle can add a cookie of the same name with another Path or Domain,
 * and the browser sends both): the request is rejected, whichever came first. An empty
 * value is no cookie.
 */
export function readTokenCookie (request: FastifyRequest, cookies: ResolvedCookies, name: string): CookieToken | undefined {
  const header = request.headers.cookie
  if (header === undefined) return undefined
  const token = cookieValue(header, name)
  if (token === undefined) return undefined
  return { token, boundTo: cookieValue(header, cookies.bindingName) }
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

/**
 * A browser attaches cookies to requests that other sites make it send, so a state
 * change authenticated by a cookie must prove it comes from our own page: by a custom
 * header (which a cross-site form or simple request cannot carry) and, where the browser
 * tells, by `Sec-Fetch-Site` not being `cross-site` and by an `Origin` that is the app's
 * own (or allowed); `Origin: null` (a sandboxed frame, a redirect) is never the app's.
 */
export function checkCsrf (request: FastifyRequest, header: string | null, origins: ResolvedOptions['origins']): void {
  if (request.headers['sec-fetch-site']?.toLowerCase() === 'cross-site') throw new CsrfError()
  const origin = request.headers.origin
  if (origin !== undefined && !originAllowed(request, origin.toLowerCase(), origins)) throw new CsrfError()
  if (header === null) return
  const value = request.headers[header]
  // Node joins a repeated custom header into one string, so only a string can arrive.
  if (typeof value !== 'string' || value === '') throw new CsrfError()
}

function originAllowed (request: FastifyRequest, origin: string, origins: ResolvedOptions['origins']): boolean {
  if (origins.allowed.has(origin)) return true
  const own = origins.publicOrigin ?? `${request.protocol}://${request.host}`.toLowerCase()
  return origin === own
}
