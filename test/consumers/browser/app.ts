// A page's script, as a front-end project writes it: the DOM's types only (no Node's),
// resolved and bundled as a bundler does.
import { createSessionClient, type Outcome, type SessionEndReason } from 'fastify-token-sessions/client'

const ended: SessionEndReason[] = []
export const session = createSessionClient({
  refreshPath: '/auth/refresh',
  logoutPath: '/auth/logout',
  onSessionEnd: (reason, { code, otherTab }) => {
    ended.push(reason)
    console.info(code ?? 'no code', otherTab)
  },
  onRefresh: ({ expiresAt, started }) => console.info(new Date(expiresAt), started)
})

export async function me (): Promise<unknown> {
  const response = await session.fetch('/me', { headers: { accept: 'application/json' } })
  return response.ok ? await response.json() : undefined
}

/** What an interceptor of another client passes on. */
export async function again (status: number, code: string | undefined, attempt: number): Promise<boolean> {
  const outcome: Outcome = { method: 'get', status, code, retryAfter: null, generation: session.generation, attempt }
  return await session.recover(outcome)
}

// @ts-expect-error refreshPath is required
createSessionClient({})
