import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { AuditEvent, AuditHookName, AuditHooks } from './types.js'

/** Calls one audit hook, if the app set it. */
export type Emit = (hook: AuditHookName, event: AuditEvent, request: FastifyRequest | undefined) => Promise<void>

/**
 * The audit hooks' dispatcher. A hook is awaited, so that an alert is sent before the
 * answer; a hook that throws is logged and never turns the answer into an error.
 */
export function createEmitter (hooks: AuditHooks, log: FastifyBaseLogger): Emit {
  return async function emit (hook, event, request) {
    const callback = hooks[hook]
    if (callback === undefined) return
    try {
      await callback(event, request)
    } catch (err) {
      (request?.log ?? log).error({ err, hook }, `${hook} hook failed`)
    }
  }
}
