// What the feed-liveness-*.test.ts files share: the requests they make of a test app, a
// poll with a deadline, and a logger that says nothing for the classes they build directly.
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { StoreClock } from '../../lib/clock.js'

/** `GET /me` with an access token: 200, or the status and the error's code. */
export async function me (app: FastifyInstance, accessToken: string): Promise<{ statusCode: number, code?: string }> {
  const response = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
  return response.statusCode === 200 ? { statusCode: 200 } : { statusCode: response.statusCode, code: response.json().code }
}

/** `POST /auth/logout` with a refresh token in the body: its status. */
export async function logout (app: FastifyInstance, refreshToken: string): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken } })).statusCode
}

/** Polls `check` every 20 ms until it holds; resolves to the ms it took, or undefined after `timeoutMs`. */
export async function within (timeoutMs: number, check: () => Promise<boolean>): Promise<number | undefined> {
  const start = performance.now()
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start
    await sleep(20)
  }
  return undefined
}

/** A logger that drops everything, for the store clock, the revocation list and LiveCheck. */
export const silent = { level: 'silent' } as unknown as ConstructorParameters<typeof StoreClock>[1]
for (const level of ['info', 'warn', 'error', 'debug', 'trace', 'fatal', 'child']) (silent as unknown as Record<string, unknown>)[level] = level === 'child' ? () => silent : () => {}
