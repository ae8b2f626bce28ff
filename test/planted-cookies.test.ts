import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { buildApp, cookieHeader, cookiesOf } from './helpers/app.js'
import { startRedis } from './helpers/redis.mjs'

const CSRF = { 'x-requested-with': 'fetch' }

async function browserLogin (app: FastifyInstance, userId: string): Promise<Map<string, { value: string }>> {
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId } })
  t.equal(response.statusCode, 200)
  return cookiesOf(response)
}

/** How many scripts Redis has run so far. */
async function scripts (client: Redis): Promise<number> {
  const stats = await client.info('commandstats')
  return [...stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0)
}

t.test('a planted refresh cookie is never accepted', async (t) => {
  const redis = await startRedis(t)
  const inspect = redis.client()
  t.teardown(() => inspect.quit())
  const app = await buildApp(t, { redis: redis.url })
  const attacker = await browserLogin(app, 'attacker')
  const victim = await browserLogin(app, 'victim')
  const refresh = async (cookie: string): Promise<{ statusCode: number, code: string | undefined, user: string | undefined }> => {
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { ...CSRF, cookie } })
    const access = cookiesOf(response).get('access_token')?.value
    const me = access === undefined ? undefined : await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${access}` } })
    return { statusCode: response.statusCode, code: response.json().code, user: me?.json().id }
  }

  t.test('refresh_token=<attacker>; refresh_token=<victim> is rejected without touching Redis', async (t) => {
    const before = await scripts(inspect)
    const both = `refresh_token=${attacker.get('refresh_token')?.value}; refresh_token=${victim.get('refresh_token')?.value}; session_binding=${victim.get('session_binding')?.value}`
    t.same(await refresh(both), { statusCode: 400, code: 'FTS_COOKIE_CONFLICT', user: undefined })
    t.equal(await scripts(inspect), before, 'no script ran')
    const reversed = `refresh_token=${victim.get('refresh_token')?.value}; refresh_token=${attacker.get('refresh_token')?.value}; session_binding=${victim.get('session_binding')?.value}`
    t.equal((await refresh(reversed)).code, 'FTS_COOKIE_CONFLICT', 'whichever comes first')
  })

  t.test('a victim with no refresh cookie of their own is not switched into the attacker\'s account', async (t) => {
    const planted = `refresh_token=${attacker.get('refresh_token')?.value}`
    t.same(await refresh(planted), { statusCode: 401, code: 'FTS_TOKEN_INVALID', user: undefined }, 'no session cookie: not bound to this browser')
    const withVictimBinding = `${planted}; session_binding=${victim.get('session_binding')?.value}`
    t.same(await refresh(withVictimBinding), { statusCode: 401, code: 'FTS_TOKEN_INVALID', user: undefined }, 'bound to another session')
  })

  t.test('the victim\'s own cookies still refresh, into the victim\'s account', async (t) => {
    const own = `refresh_token=${victim.get('refresh_token')?.value}; session_binding=${victim.get('session_binding')?.value}`
    t.same(await refresh(own), { statusCode: 200, code: undefined, user: 'victim' })
  })
})

t.test('a planted access cookie is never accepted', async (t) => {
  const app = await buildApp(t)
  const attacker = await browserLogin(app, 'attacker')
  const victim = await browserLogin(app, 'victim')
  const me = async (cookie: string): Promise<unknown> => {
    const response = await app.inject({ method: 'GET', url: '/me', headers: { cookie } })
    return response.statusCode === 200 ? response.json().id : response.json().code
  }
  t.equal(await me(`access_token=${attacker.get('access_token')?.value}`), 'FTS_TOKEN_INVALID', 'alone: bound to no session of this browser')
  t.equal(await me(`access_token=${attacker.get('access_token')?.value}; session_binding=${victim.get('session_binding')?.value}`), 'FTS_TOKEN_INVALID')
  t.equal(await me(`access_token=${attacker.get('access_token')?.value}; access_token=${victim.get('access_token')?.value}; session_binding=${victim.get('session_binding')?.value}`),
    'FTS_COOKIE_CONFLICT', 'named twice')
  t.equal(await me(`session_binding=${victim.get('session_binding')?.value}; access_token=${victim.get('access_token')?.value}`), 'victim')
  t.equal(await me(`xaccess_token=1; a=access_token=2; access_token=${victim.get('access_token')?.value}; session_binding=${victim.get('session_binding')?.value}`), 'victim',
    'a name inside another cookie\'s name or value is no second cookie')
})

t.test('logout and logout-all never act on a planted cookie, and a planted twin does not stop a logout', async (t) => {
  const app = await buildApp(t)
  const attacker = await browserLogin(app, 'attacker')
  const victim = await browserLogin(app, 'victim')
  const twice = `refresh_token=${attacker.get('refresh_token')?.value}; refresh_token=${victim.get('refresh_token')?.value}; session_binding=${victim.get('session_binding')?.value}`
  for (const url of ['/auth/logout', '/auth/logout-all']) {
    const response = await app.inject({ method: 'POST', url, headers: { ...CSRF, cookie: twice } })
    t.equal(response.json().code, 'FTS_COOKIE_CONFLICT', `${url}: with nothing else to name the session`)
  }
  // A sibling can plant a __Secure- refresh cookie, not the __Host- access cookie: the
  // victim's access cookie still names the victim's session.
  const withAccess = `${twice}; access_token=${victim.get('access_token')?.value}`
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', headers: { ...CSRF, cookie: withAccess } })).statusCode, 204, 'logout by the access cookie')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: { cookie: `access_token=${victim.get('access_token')?.value}; session_binding=${victim.get('session_binding')?.value}` } })).json().code,
    'FTS_SESSION_REVOKED', 'the victim\'s session ended')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: { cookie: `access_token=${attacker.get('access_token')?.value}; session_binding=${attacker.get('session_binding')?.value}` } })).statusCode,
    200, 'the attacker\'s did not')
  const planted = `refresh_token=${attacker.get('refresh_token')?.value}; session_binding=${victim.get('session_binding')?.value}`
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout-all', headers: { ...CSRF, cookie: planted } })).json().code, 'FTS_TOKEN_INVALID',
    'the attacker\'s sessions are not the victim\'s to end')
  t.equal((await app.inject({ method: 'GET', url: '/me', headers: { cookie: cookieHeader(await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'attacker' } }), 'access_token', 'session_binding') } })).statusCode, 200)
})

t.test('secure cookies carry the prefixes the browser\'s rules allow, decided once at registration', async (t) => {
  const names = async (cookies: Record<string, unknown>, env?: string): Promise<Array<[string, { path?: string, secure?: boolean, domain?: string }]>> => {
    const saved = process.env.NODE_ENV
    if (env !== undefined) process.env.NODE_ENV = env
    try {
      const app = await buildApp(t, { cookies })
      return [...cookiesOf(await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'u' } }))]
    } finally {
      process.env.NODE_ENV = saved
    }
  }
  const secure = await names({ secure: true })
  t.same(secure.map(([name]) => name), ['__Host-access_token', '__Secure-refresh_token', '__Host-session_binding'],
    '__Host- where Path=/ and no Domain; the refresh cookie, on /auth, is __Secure- and bound to the __Host- session cookie')
  for (const [name, cookie] of secure) {
    t.equal(cookie.secure, true, `${name} is Secure`)
    t.equal(cookie.domain, undefined, `${name} has no Domain`)
  }
  t.same((await names({ secure: true, domain: 'example.com' })).map(([name]) => name), ['__Secure-access_token', '__Secure-refresh_token', '__Host-session_binding'],
    'with a Domain only __Secure-; the session cookie stays host-only')
  t.same((await names({ secure: true, refreshPath: '/' })).map(([name]) => name), ['__Host-access_token', '__Host-refresh_token', '__Host-session_binding'])
  t.same((await names({ secure: 'auto' }, 'production')).map(([name]) => name)[0], '__Host-access_token', '"auto": secure in production')
  t.same((await names({}, 'development')).map(([name]) => name), ['access_token', 'refresh_token', 'session_binding'], '"auto" by default: plain names elsewhere')

  const app = await buildApp(t, { cookies: { secure: true } })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { userId: 'u' } })
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', headers: { ...CSRF, cookie: cookieHeader(login, '__Secure-refresh_token', '__Host-session_binding') } })
  t.equal(refreshed.statusCode, 200, 'the prefixed cookies work')
  const unprefixed = cookieHeader(login, '__Secure-refresh_token', '__Host-session_binding').replace('__Secure-refresh_token', 'refresh_token').replace('__Host-session_binding', 'session_binding')
  t.equal((await app.inject({ method: 'POST', url: '/auth/refresh', headers: { ...CSRF, cookie: unprefixed } })).json().code, 'FTS_TOKEN_MISSING',
    'a cookie without the prefix (which anyone could set) is not read')
})

t.test('cookie options are checked at registration', async (t) => {
  for (const [cookies, message] of [
    [{ secure: 'yes' }, /cookies\.secure/],
    [{ accessTokenName: '__Host-access' }, /cookies\.accessTokenName.*without a __Host- or __Secure- prefix/],
    [{ bindingName: 'refresh_token' }, /must differ/],
    [{ clearSiteData: 1 }, /cookies\.clearSiteData/],
    [{ sameSite: 'none', secure: false }, /cookies\.sameSite/]
  ] as const) {
    await t.rejects(buildApp(t, { cookies: cookies as never }), { code: 'FTS_INVALID_OPTION', message }, JSON.stringify(cookies))
  }
})
