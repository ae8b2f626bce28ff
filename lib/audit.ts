import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { AuditEvent, AuditHook, AuditHookName, AuditHooks } from './types.js'

/**
 * Calls one audit hook, if the app set it, with the event of one session. Returns
 * undefined when the app set no such hook: the event is then never built, and a caller
 * on a hot path can skip the await too.
 */
export type Emit = (
  hook: AuditHookName, userId: string, sessionId: string, reason: string, request: FastifyRequest | undefined
) => Promise<void> | undefined

/**
 * The audit hooks' dispatcher. A hook is awaited, so that an alert is sent before the
 * answer; a hook that throws is logged and never turns the answer into an error.
 *
 * @example
 * ```ts
 * const emit = createEmitter({ onLogout: async (event) => { audit.write(event) } }, log)
 * await emit('onLogout', 'u1', sessionId, 'logout', request)
 * ```
 */
export function createEmitter (hooks: AuditHooks, log: FastifyBaseLogger): Emit {
  return function emit (hook, userId, sessionId, reason, request) {
    const callback = hooks[hook]
    if (callback === undefined) return undefined
    const event: AuditEvent = { userId, sessionId, reason, ip: request?.ip, userAgent: request?.headers['user-agent'] }
    return run(callback, event, request, hook, log)
  }
}

async function run (callback: AuditHook, event: AuditEvent, request: FastifyRequest | undefined, hook: AuditHookName, log: FastifyBaseLogger): Promise<void> {
  try {
    await callback(event, request)
  } catch (err) {
    (request?.log ?? log).error({ err, hook }, `${hook} hook failed`)
  }
}
