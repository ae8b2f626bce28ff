import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CookieSerializeOptions } from '@fastify/cookie'
import { CsrfError } from './errors.js'
import type { ResolvedCookies } from './options.js'
import type { TokenSet } from './types.js'

function attributes (cookies: ResolvedCookies, path: string): CookieSerializeOptions {
  return {
    httpOnly: true,
    secure: cookies.secure,
    sameSite: cookies.sameSite,
    path,
    ...(cookies.domain === undefined ? {} : { domain: cookies.domain })
  }
}

/** Sets both token cookies, each living as long as its token. */
export function setTokenCookies (reply: FastifyReply, cookies: ResolvedCookies, tokens: TokenSet): void {
  reply.setCookie(cookies.accessTokenName, tokens.accessToken, { ...attributes(cookies, cookies.path), maxAge: tokens.expiresIn })
  reply.setCookie(cookies.refreshTokenName, tokens.refreshToken, { ...attributes(cookies, cookies.refreshPath), maxAge: tokens.refreshExpiresIn })
}

/** Clears both token cookies with the Path and Domain they were set with, or the browser keeps them. */
export function clearTokenCookies (reply: FastifyReply, cookies: ResolvedCookies): void {
  reply.clearCookie(cookies.accessTokenName, attributes(cookies, cookies.path))
  reply.clearCookie(cookies.refreshTokenName, attributes(cookies, cookies.refreshPath))
}

/** The value of a cookie, or undefined when it is absent or empty. */
export function readCookie (request: FastifyRequest, name: string): string | undefined {
  const value = request.cookies[name]
  return value === undefined || value === '' ? undefined : value
}

/**
 * A browser attaches cookies to requests that other sites make it send, so a state
 * change authenticated by a cookie must prove it comes from our own page: by a custom
 * header (which a cross-site form or simple request cannot carry) and, where the browser
 * tells, by `Sec-Fetch-Site` not being `cross-site`.
 */
export function checkCsrf (request: FastifyRequest, header: string | null): void {
  if (request.headers['sec-fetch-site']?.toLowerCase() === 'cross-site') throw new CsrfError()
  if (header === null) return
  const value = request.headers[header]
  // Node joins a repeated custom header into one string, so only a string can arrive.
  if (typeof value !== 'string' || value === '') throw new CsrfError()
}
