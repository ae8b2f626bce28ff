import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { AuditEvent, AuditHook, AuditHookName, AuditHooks } from './types.js'

/** What the session lifecycle says of an event; the request supplies the rest. */
export type EventFacts = Pick<AuditEvent, 'userId' | 'sessionId' | 'reason'> & Partial<Pick<AuditEvent, 'replay' | 'allSessions' | 'except'>>

/**
 * Calls one audit hook, if the app set it, with the event. Returns undefined when the app
 * set no such hook: the event is then never built.
 */
export type Emit = (hook: AuditHookName, facts: EventFacts, request: FastifyRequest | undefined) => Promise<void> | undefined

/**
 * The audit hooks' dispatcher. A hook is awaited, so that an alert is sent before the
 * answer; a hook that throws is logged and never turns the answer into an error.
 */
export function createEmitter (hooks: AuditHooks, log: FastifyBaseLogger): Emit {
  return function emit (hook, facts, request) {
    const callback = hooks[hook]
    if (callback === undefined) return undefined
    const event: AuditEvent = {
      replay: false,
      allSessions: false,
      ...facts,
      ip: request?.ip,
      userAgent: request?.headers['user-agent']
    }
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
