// The recipe of docs/options.md for an app that also uses @fastify/jwt: the plugin's user and
// authenticate under other names, @fastify/jwt's request.user typed by the app as before.
import 'fastify-token-sessions'
import '@fastify/jwt'

declare module 'fastify-token-sessions' {
  interface DecoratorNames { user: 'session', authenticate: 'authenticateSession' }
  interface SessionUser { plan: 'free' | 'pro' }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { svc: string }
    user: { svc: string }
  }
}
