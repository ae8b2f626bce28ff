import { readdirSync, readFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'

/** The page's files: HTML, one JS module, one stylesheet. Next to `src/` and `dist/`. */
export const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url))

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

/**
 * Security headers on every response (helmet: CSP, nosniff, frame denial, HSTS, no
 * referrer across origins). Registered before any route, so that the plugin's routes and
 * error responses get them too.
 */
export async function registerSecurityHeaders (app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: PAGE_CSP },
    referrerPolicy: { policy: 'no-referrer' },
    // The same as frame-ancestors 'none', for browsers that predate CSP.
    frameguard: { action: 'deny' }
  })
}

/**
 * Serves the page: `/` is `index.html`, every other file by its name. The files are read
 * once at start-up: a few kilobytes, and no path from a request ever reaches the disk.
 */
export function registerWebPage (app: FastifyInstance): void {
  for (const name of readdirSync(PUBLIC_DIR)) {
    const type = CONTENT_TYPES[extname(name)]
    if (type === undefined) continue
    const content = readFileSync(join(PUBLIC_DIR, name))
    const url = name === 'index.html' ? '/' : `/${name}`
    app.get(url, { schema: { hide: true } }, async (_request, reply) => {
      // Revalidated on every load: a new deployment's page is seen at once.
      reply.header('cache-control', 'no-cache').type(type)
      return content
    })
  }
}
