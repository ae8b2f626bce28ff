import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

/** Where Swagger UI is served; the OpenAPI document itself is at `${DOCS_PREFIX}/json`. */
export const DOCS_PREFIX = '/docs'

/**
 * Swagger UI's own policy: its scripts by file (it has no inline script), inline styles
 * (the UI sets them on its elements), nothing from another origin, no framing.
 */
const DOCS_CSP = [
  "default-src 'self'",
  "base-uri 'none'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'"
].join('; ')

/** The parts of an OpenAPI document that {@link completeDocument} reads and writes. */
interface Operation {
  operationId?: string
  requestBody?: { required?: boolean, content?: Record<string, { schema?: { required?: string[] } }> }
  security?: Array<Record<string, string[]>>
}
interface Document {
  paths?: Record<string, Partial<Record<'get' | 'post' | 'delete', Operation>>>
}

/** The plugin's operations that need an access token (its routes do not know our scheme names). */
const PLUGIN_AUTHENTICATED = new Set(['listSessions', 'revokeSession', 'logoutAll'])

/**
 * What @fastify/swagger cannot know: the plugin's bodies are optional (a browser sends its
 * refresh token as a cookie, with no body; such a body schema requires no property, while
 * @fastify/swagger marks every described body as required), and which of the plugin's
 * operations need our security schemes.
 */
function completeDocument<T> (document: T): T {
  for (const path of Object.values((document as Document).paths ?? {})) {
    for (const operation of Object.values(path)) {
      const body = operation.requestBody
      if (body !== undefined && (body.content?.['application/json']?.schema?.required ?? []).length === 0) body.required = false
      if (PLUGIN_AUTHENTICATED.has(operation.operationId ?? '')) operation.security = AUTHENTICATED
    }
  }
  return document
}

/**
 * The OpenAPI document of every route (the plugin's declare their schemas) and Swagger UI
 * at {@link DOCS_PREFIX}. Registered before any route: @fastify/swagger collects routes as
 * they are added.
 */
export async function registerDocs (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'fastify-token-sessions example app',
        description: 'Login sessions with short-lived access tokens and rotating refresh tokens. ' +
          'Browsers hold both tokens as httpOnly cookies and send `X-Requested-With` on every state change; ' +
          'native clients send `X-Token-Transport: body` at login and keep the tokens themselves.',
        version: '1.0.0'
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          accessCookie: { type: 'apiKey', in: 'cookie', name: 'access_token' }
        }
      },
      tags: [
        { name: 'users', description: 'Registration, login and the current user (the example app)' },
        { name: 'sessions', description: 'Refresh, logout and session management (fastify-token-sessions)' }
      ]
    },
    transformObject: (documents) => 'openapiObject' in documents ? completeDocument(documents.openapiObject) : documents.swaggerObject
  })
  // In a scope of its own: the UI's onSend hook that sets its policy stays on its routes.
  await app.register(async function docs (scope) {
    await scope.register(swaggerUi, {
      routePrefix: DOCS_PREFIX,
      staticCSP: DOCS_CSP,
      uiConfig: { docExpansion: 'list', deepLinking: false, validatorUrl: null }
    })
  })
}

/** The security requirement of a route behind `authenticate`: a Bearer token or the access cookie. */
export const AUTHENTICATED: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { accessCookie: [] }]
