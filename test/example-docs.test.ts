import t from 'tap'
import { loadConfig } from '../example-app/src/config.js'
import { appStarter, assertError, call } from './helpers/example-app.js'
import { startRedis } from './helpers/redis.mjs'

// The example app's API documentation and the security headers of its page and API.
const redis = await startRedis(t)
const startApp = appStarter(redis)

t.test('GET /docs: Swagger UI and an OpenAPI document of every route the app answers', async (t) => {
  const { url } = await startApp(t)
  const spec = await call(url, 'GET', '/docs/json')
  t.equal(spec.status, 200)
  const operations = Object.entries(spec.body.paths as Record<string, Record<string, { summary?: string }>>)
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })))
  t.same(operations.map(({ route }) => route).sort(), [
    'DELETE /auth/sessions/{id}', 'GET /auth/sessions', 'GET /health', 'GET /health/ready', 'GET /me', 'POST /auth/change-password', 'POST /auth/login',
    'POST /auth/logout', 'POST /auth/logout-all', 'POST /auth/reauthenticate', 'POST /auth/refresh', 'POST /auth/register', 'POST /auth/revoke', 'POST /auth/token'
  ], 'every API route, and neither the page nor the docs themselves')
  for (const { route, operation } of operations) t.type(operation.summary, 'string', `${route} has a summary`)
  t.ok(spec.body.components.securitySchemes.bearerAuth, 'the Bearer scheme is declared')
  const paths = spec.body.paths
  t.equal(paths['/auth/refresh'].post.requestBody.required, false, 'refresh: the body is optional (browsers send a cookie)')
  t.equal(paths['/auth/logout'].post.requestBody.required, false, 'logout: the body is optional')
  t.equal(paths['/auth/register'].post.requestBody.required, true, 'register: the body is required')
  for (const [path, method] of [['/auth/sessions', 'get'], ['/auth/sessions/{id}', 'delete'], ['/auth/logout-all', 'post'], ['/me', 'get']]) {
    t.same(paths[path][method].security, [{ bearerAuth: [] }, { accessCookie: [] }], `${method.toUpperCase()} ${path} needs an access token`)
  }
  t.notOk(paths['/auth/refresh'].post.security, 'refresh needs no access token')
  for (const path of ['/auth/token', '/auth/revoke']) {
    t.ok(paths[path].post.requestBody.content['application/x-www-form-urlencoded'], `${path}: a form body, as OAuth clients send it`)
    t.notOk(paths[path].post.security, `${path}: the token in the form is the credential`)
  }
  const codes = (path: string, method: string): string[] => Object.keys(paths[path][method].responses).sort()
  t.same(codes('/auth/login', 'post'), ['200', '400', '401', '429', '503'], 'login: every answer it gives')
  t.same(codes('/auth/register', 'post'), ['201', '400', '409', '429', '503'], 'register: every answer it gives')
  t.same(codes('/auth/change-password', 'post'), ['204', '400', '401', '403', '429', '503'], 'change-password: every answer it gives')
  t.same(codes('/me', 'get'), ['200', '401'], '/me: every answer it gives')

  const ui = await call(url, 'GET', '/docs/')
  t.equal(ui.status, 200)
  t.match(ui.headers.get('content-type'), /^text\/html/)
  t.match(ui.body, /swagger-ui-bundle\.js/, 'Swagger UI')
  const csp = ui.headers.get('content-security-policy') ?? ''
  t.match(csp, /script-src 'self'(;|$)/, 'the UI runs only its own scripts')
  t.match(csp, /frame-ancestors 'none'/)
})

t.test('the page and the API carry security headers', async (t) => {
  const { url } = await startApp(t)
  const page = await call(url, 'GET', '/')
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  const csp = page.headers.get('content-security-policy') ?? ''
  for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]) {
    t.ok(csp.split(';').includes(directive), `the page's CSP has ${directive}`)
  }
  t.notMatch(csp, /unsafe-inline|unsafe-eval/, 'no inline script or style on the page')
  t.equal(page.headers.get('x-content-type-options'), 'nosniff')
  t.equal(page.headers.get('referrer-policy'), 'no-referrer')
  t.equal(page.headers.get('cache-control'), 'no-cache', 'a new deployment is seen at once')

  const script = await call(url, 'GET', '/app.js')
  t.equal(script.status, 200, 'the page\'s module')
  t.match(script.headers.get('content-type'), /^text\/javascript/)
  const missing = await call(url, 'GET', '/secret.env')
  assertError(t, missing, 404, 'NOT_FOUND', 'a file that is not part of the page')
  const traversal = await call(url, 'GET', '/..%2fsrc%2fconfig.ts')
  t.equal(traversal.status, 404, 'no path from a request reaches the disk')

  const api = await call(url, 'GET', '/me')
  t.equal(api.status, 401)
  t.equal(api.headers.get('x-content-type-options'), 'nosniff', 'API answers carry the headers too')
  t.equal(api.headers.get('x-frame-options'), 'DENY')
})

t.test('DOCS: the documentation is served without authentication, so off in production unless asked for', async (t) => {
  const paths = ['/docs/', '/docs/json']
  const statuses = async (url: string): Promise<number[]> => await Promise.all(paths.map(async (path) => (await call(url, 'GET', path)).status))
  const production = await startApp(t, { NODE_ENV: 'production' })
  t.same(await statuses(production.url), [404, 404], 'production: off')
  assertError(t, await call(production.url, 'GET', '/docs/json'), 404, 'NOT_FOUND', 'production: an unknown route, as any other')
  t.equal((await call(production.url, 'POST', '/auth/login', { json: { username: 'x' } })).status, 400, 'the API\'s schemas still validate without the docs')
  t.same(await statuses((await startApp(t, { NODE_ENV: 'production', DOCS: 'true' })).url), [200, 200], 'production with DOCS=true: on')
  t.same(await statuses((await startApp(t, { DOCS: 'false' })).url), [404, 404], 'DOCS=false: off anywhere')
  t.same(await statuses((await startApp(t, {})).url), [200, 200], 'outside production: on by default')
  t.match(loadConfig({}), { docs: true })
  t.match(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }), { docs: false })
  t.throws(() => loadConfig({ DOCS: 'yes' }), { name: 'ConfigError', message: /^DOCS must be true or false/ })
})
