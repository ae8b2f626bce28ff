import { readdirSync, readFileSync } from 'node:fs'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import helmet from '@fastify/helmet'
import Fastify, { type FastifyInstance } from 'fastify'

/** The page's files: HTML, one JS module, one stylesheet. Next to `src/` and `dist/`. */
export const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url))

/**
 * The plugin's browser client (`fastify-token-sessions/client`) as the package ships it:
 * the page imports it from `/client/`.
 */
export const CLIENT_DIR = dirname(fileURLToPath(import.meta.resolve('fastify-token-sessions/client')))

/** The only file types the page is made of; anything else in the folder is not served. */
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

/**
 * The page runs only its own files: no inline script or style, no other origin, no
 * framing (the session's buttons must not be clickjacked). `/docs` relaxes styles for
 * Swagger UI in its own scope.
 */
export const PAGE_CSP = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"]
}

/** helmet's settings: its defaults, our page's policy, no referrer, no framing. */
const HELMET_OPTIONS = {
  contentSecurityPolicy: { useDefaults: false, directives: PAGE_CSP },
  referrerPolicy: { policy: 'no-referrer' as const },
  // The same as frame-ancestors 'none', for browsers that predate CSP.
  frameguard: { action: 'deny' as const }
}

/**
 * Security headers on every response (helmet: CSP, nosniff, frame denial, HSTS, no
 * referrer across origins). Added before any route, so that the plugin's routes and
 * error responses get them too. With no nonce in the policy they are the same on every
 * response, so helmet computes them once, here, on a probe app, and each request sets the
 * result in one call: the same headers, without running helmet's middleware per request
 * (a large share of a small request's time).
 */
export async function registerSecurityHeaders (app: FastifyInstance): Promise<void> {
  const headers = await helmetHeaders()
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })
}

/** The headers helmet sets, with these settings, on a response. */
async function helmetHeaders (): Promise<Record<string, string>> {
  const probe = Fastify()
  await probe.register(helmet, HELMET_OPTIONS)
  probe.get('/', async () => '')
  const response = await probe.inject({ method: 'GET', url: '/' })
  await probe.close()
  const ignored = new Set(['content-type', 'content-length', 'date', 'connection'])
  return Object.fromEntries(Object.entries(response.headers).filter(([name]) => !ignored.has(name)).map(([name, value]) => [name, String(value)]))
}

/**
 * Serves the page: `/` is `index.html`, every other file by its name, and the client's
 * modules under `/client/`. The files are read once at start-up: a few kilobytes, and no
 * path from a request ever reaches the disk.
 */
export function registerWebPage (app: FastifyInstance): void {
  for (const [dir, prefix] of [[PUBLIC_DIR, '/'], [CLIENT_DIR, '/client/']] as const) {
    for (const name of readdirSync(dir)) serveFile(app, join(dir, name), name === 'index.html' ? prefix : `${prefix}${name}`)
  }
}

function serveFile (app: FastifyInstance, path: string, url: string): void {
  const type = CONTENT_TYPES[extname(path)]
  if (type === undefined) return
  const content = readFileSync(path)
  app.get(url, { schema: { hide: true }, config: { public: true } }, async (_request, reply) => {
    // Revalidated on every load: a new deployment's page is seen at once.
    reply.header('cache-control', 'no-cache').type(type)
    return content
  })
}
