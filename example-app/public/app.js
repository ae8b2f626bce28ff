// The example app's page: plain DOM, no dependencies, no build step.
//
// Both tokens live in httpOnly cookies that this script cannot read. Every API call goes
// through `api()`: when the access token has expired (or its cookie is gone), it renews the
// session once with POST /auth/refresh and retries the call once. Renewals are shared: the
// calls of one tab wait for the same one, and tabs take turns through a Web Lock, each
// first checking whether another tab renewed while it waited, so that two tabs neither
// rotate twice nor present the same refresh token twice (the server would take that for
// theft).

/** The plugin refuses a state change authenticated by a cookie without this header. */
const CSRF_HEADER = { 'X-Requested-With': 'fetch' }
/** A request that hangs must not hold the refresh lock, and every tab, forever. */
const REQUEST_TIMEOUT_MS = 15_000
/**
 * The longest a tab holds the refresh lock: a probe (GET /me) and then the refresh, each
 * cut off after REQUEST_TIMEOUT_MS.
 */
const LOCK_HOLD_MAX_MS = 2 * REQUEST_TIMEOUT_MS
/**
 * How long a tab waits for the lock before it gives up on this request. Longer than the
 * holder's worst case, so that a slow but successful renewal is not reported as a
 * failure, with room for one more tab queued ahead of this one (it finds the renewal done,
 * or needs one probe to see it).
 */
const LOCK_TIMEOUT_MS = LOCK_HOLD_MAX_MS + REQUEST_TIMEOUT_MS
const REFRESH_LOCK = 'fts-example:refresh'
/** The last renewal (or login) of any tab: `{ seq, ok, code?, expiresAt? }`. */
const RENEWAL_KEY = 'fts-example:renewal'
/** Set while this browser has logged in: a first visit makes no request that must fail. */
const SIGNED_IN_KEY = 'fts-example:signed-in'
/**
 * When this browser last logged out (any tab), cleared at the next login. A logout clears
 * the cookies, but so does their expiry (the server caps the refresh cookie's Max-Age at
 * the session's idle timeout and lifetime): both make a renewal answer FTS_TOKEN_MISSING,
 * and only this note tells them apart.
 */
const LOGGED_OUT_KEY = 'fts-example:logged-out'
/** The 401s a renewal can cure: the access token expired, or its cookie did (Max-Age). */
const RENEWABLE = new Set(['FTS_TOKEN_EXPIRED', 'FTS_TOKEN_MISSING'])

/** What the page says when a session ends, by the code that ended it. */
const ENDED = {
  FTS_SESSION_REVOKED: 'Your session was ended: from another device or tab, by "log out everywhere", or because its refresh token was used twice (a possible theft). Please log in again.',
  FTS_SESSION_EXPIRED: 'Your session has expired: it reached its maximum lifetime. Please log in again.',
  FTS_TOKEN_EXPIRED: 'Your session has expired. Please log in again.',
  FTS_TOKEN_REUSED: 'You were signed out for your security: this session\'s refresh token was used twice, which can mean someone copied it. Please log in again.',
  // The cookies are gone: expired, or cleared by the browser (see LOGGED_OUT_KEY).
  FTS_TOKEN_MISSING: 'Your session has expired (or this browser\'s cookies were cleared). Please log in again.',
  // The cookies are gone after a logout in this browser.
  LOGGED_OUT_ELSEWHERE: 'You logged out (in this or another tab). Please log in again.',
  FTS_TOKEN_INVALID: 'Your session is no longer valid. Please log in again.',
  LOGGED_OUT: 'You have logged out.',
  LOGGED_OUT_ALL: 'You have logged out on every device.',
  ENDED_HERE: 'You ended this device\'s session. You are logged out.'
}
/** The ways this browser's user ends their own session here. */
const CHOSEN = new Set(['LOGGED_OUT', 'LOGGED_OUT_ALL', 'ENDED_HERE'])

/** What the page says about a failed request that leaves the session as it is. */
const FAILED = {
  FTS_STORE_UNAVAILABLE: 'The service is briefly unavailable. You are still logged in; try again shortly.',
  INVALID_CREDENTIALS: 'Wrong username or password.',
  USERNAME_TAKEN: 'That username is taken. Choose another one, or log in.',
  FTS_CSRF_REJECTED: 'The server refused the request as cross-site.',
  FTS_SESSION_NOT_FOUND: 'That session has already ended.',
  NETWORK: 'Could not reach the server. Check your connection and try again.',
  LOCK_TIMEOUT: 'Renewing the session took too long. Try again.',
  INTERNAL_ERROR: 'Something went wrong on the server. Try again.'
}

const $ = (id) => {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`the page has no #${id}`)
  return element
}

const view = {
  main: $('app'),
  message: $('message'),
  loading: $('loading'),
  signedOut: $('signed-out'),
  signedIn: $('signed-in'),
  form: $('login-form'),
  username: $('username'),
  password: $('password'),
  who: $('who'),
  whoLine: $('who-line'),
  loadFailed: $('load-failed'),
  remaining: $('token-remaining'),
  sessionsBody: $('sessions-body'),
  sessionsEmpty: $('sessions-empty')
}

/** Whether this tab believes it holds a session: only then does a 401 start a renewal. */
let signedIn = false
/** When the access token expires, in ms since the epoch (0: unknown). */
let expiresAt = 0
/** This tab's renewal in flight, and the renewal count it started from. */
let inflight = null
/** The last renewal this tab recorded, for when local storage is off. */
let ownRecord = { seq: 0, ok: true }
/** Whether the sessions list on show was loaded for the current session. */
let sessionsLoaded = false
/** Counts the messages shown, so that an action can tell whether it said anything. */
let said = 0

// ---------------------------------------------------------------------------------------
// Requests

/**
 * One request, never throwing: `{ ok, status, data }` or `{ ok: false, status, code,
 * message, retryAfter }`. State changes carry the anti-CSRF header; a JSON type only
 * goes with a body.
 */
async function send (method, path, body) {
  const headers = method === 'GET' ? {} : { ...CSRF_HEADER }
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }
  if (body !== undefined) {
    headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let response
  let text
  try {
    response = await fetch(path, init)
    text = await response.text()
  } catch {
    return { ok: false, status: 0, code: 'NETWORK' }
  }
  let data = null
  try {
    data = text === '' ? null : JSON.parse(text)
  } catch {
    // Not JSON: only the status speaks.
  }
  if (response.ok) return { ok: true, status: response.status, data }
  return {
    ok: false,
    status: response.status,
    code: typeof data?.code === 'string' ? data.code : `HTTP_${response.status}`,
    message: typeof data?.message === 'string' ? data.message : '',
    retryAfter: Number.parseInt(response.headers.get('retry-after') ?? '', 10)
  }
}

/**
 * An authenticated API call. A 401 for an expired or missing access token, while this tab
 * believes it is signed in, renews the session once and retries the call once; any other
 * 401 ends the session here. Never loops.
 */
async function api (method, path, body) {
  const seen = renewalRecord().seq
  const first = await send(method, path, body)
  if (!signedIn || first.status !== 401 || !RENEWABLE.has(first.code)) return settle(first)
  const renewal = await renew(seen)
  if (!renewal.ok) return settle(renewal)
  return settle(await send(method, path, body))
}

/**
 * A 401 on an authenticated call means the session is over: say why, once (calls that
 * shared a failed renewal all land here; the first one speaks).
 */
function settle (result) {
  if (result.status !== 401) return result
  if (signedIn) endSession(result.code)
  return { ...result, ended: true }
}

/**
 * Renews the session, or joins the renewal this tab already has in flight for the same
 * state. `seen` is the renewal count read before the failed request was sent.
 */
function renew (seen) {
  if (inflight !== null && inflight.seen === seen) return inflight.promise
  const promise = withRefreshLock((waited) => renewUnlessDone(seen, waited)).finally(() => {
    if (inflight?.promise === promise) inflight = null
  })
  inflight = { seen, promise }
  return promise
}

/** What a lock request answers when another tab holds the lock. */
const HELD = Symbol('held')

/**
 * Runs `task` while no other tab of this origin runs its own (where the browser can
 * tell). `task` learns whether it had to wait for another tab, which was most likely
 * renewing the very session this tab wants to renew.
 */
async function withRefreshLock (task) {
  // Web Locks exist only in secure contexts (https, localhost). Without them, the server's
  // reuse grace window is what lets racing tabs share one successor.
  if (navigator.locks === undefined) return await task(false)
  const now = await navigator.locks.request(REFRESH_LOCK, { ifAvailable: true }, (lock) => lock === null ? HELD : task(false))
  if (now !== HELD) return now
  try {
    return await navigator.locks.request(REFRESH_LOCK, { signal: AbortSignal.timeout(LOCK_TIMEOUT_MS) }, () => task(true))
  } catch (error) {
    if (error?.name === 'TimeoutError' || error?.name === 'AbortError') return { ok: false, status: 0, code: 'LOCK_TIMEOUT' }
    throw error
  }
}

/**
 * Inside the lock: if any tab renewed (or logged in) after the failed request was sent,
 * the cookies are already new and the request only needs its retry; if that renewal
 * failed, its answer is ours too. Another tab's note travels through local storage,
 * which may reach this tab a moment after the lock does: so when this tab had to wait,
 * it first asks the server (GET /me) whether the cookies now hold a valid access token.
 * Only then does it rotate the refresh token itself.
 */
async function renewUnlessDone (seen, waited) {
  const last = renewalRecord()
  if (last.seq !== seen) {
    if (!last.ok) return { ok: false, status: 401, code: last.code ?? 'FTS_TOKEN_MISSING' }
    if (Number.isFinite(last.expiresAt)) setExpiry(last.expiresAt)
    return { ok: true, status: 200, data: null }
  }
  if (waited) {
    const probe = await send('GET', '/me')
    if (probe.ok) {
      setExpiry(probe.data.expiresAt)
      return probe
    }
    // Revoked, or the server unreachable: that is the answer. Expired or missing: renew.
    if (probe.status !== 401 || !RENEWABLE.has(probe.code)) return probe
  }
  const result = await send('POST', '/auth/refresh')
  if (result.ok) {
    const expiry = Date.now() + Number(result.data?.expiresIn) * 1000
    recordRenewal({ ok: true, expiresAt: expiry })
    setExpiry(expiry)
  } else if (result.status === 401) {
    recordRenewal({ ok: false, code: result.code })
  }
  return result
}

/** The last renewal any tab recorded (this tab's own when storage is off). */
function renewalRecord () {
  try {
    const record = JSON.parse(localStorage.getItem(RENEWAL_KEY) ?? 'null')
    if (record !== null && Number.isSafeInteger(record.seq)) return record
  } catch {
    // Storage off or garbage: this tab's own record.
  }
  return ownRecord
}

function recordRenewal (outcome) {
  ownRecord = { ...outcome, seq: renewalRecord().seq + 1 }
  try {
    localStorage.setItem(RENEWAL_KEY, JSON.stringify(ownRecord))
  } catch {
    // Storage off: tabs cannot tell each other; the lock still serialises their renewals.
  }
}

function rememberSignedIn (value) {
  try {
    if (value) localStorage.setItem(SIGNED_IN_KEY, '1')
    else localStorage.removeItem(SIGNED_IN_KEY)
  } catch {
    // Storage off: the next visit shows the login form first.
  }
}

/** Notes (true) or forgets (false) that this browser logged out; see LOGGED_OUT_KEY. */
function rememberLoggedOut (value) {
  try {
    if (value) localStorage.setItem(LOGGED_OUT_KEY, String(Date.now()))
    else localStorage.removeItem(LOGGED_OUT_KEY)
  } catch {
    // Storage off: a logout in another tab reads as an expiry there.
  }
}

function rememberedLoggedOut () {
  try {
    return localStorage.getItem(LOGGED_OUT_KEY) !== null
  } catch {
    return false
  }
}

function rememberedSignedIn () {
  try {
    return localStorage.getItem(SIGNED_IN_KEY) === '1'
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------
// Messages and views

/** Shows one message in the live region; `kind` is info, success, warning or error. */
function say (text, kind = 'info', code = '') {
  said++
  view.message.textContent = text
  view.message.dataset.kind = kind
  view.message.dataset.code = code
}

function clearMessage () {
  say('', 'info')
}

/** Says what went wrong with a request that did not end the session. */
function report (result, context = '') {
  if (result.ended === true) return
  let text = FAILED[result.code]
  if (result.code === 'RATE_LIMITED') {
    const wait = Number.isFinite(result.retryAfter) ? ` in ${result.retryAfter} s` : ' shortly'
    text = `Too many attempts. Try again${wait}.`
  } else if (result.code === 'FST_ERR_VALIDATION' && result.message !== '') {
    // ajv names the field and the rule, e.g. "body/password must NOT have fewer than 8 characters".
    text = result.message.replace(/(^|, )body\//g, '$1')
    text = text.charAt(0).toUpperCase() + text.slice(1) + '.'
  }
  text ??= result.message || `The request failed (HTTP ${result.status}).`
  const kind = result.code === 'FTS_STORE_UNAVAILABLE' || result.code === 'RATE_LIMITED' ? 'warning' : 'error'
  say(context === '' ? text : `${context}: ${text}`, kind, result.code)
}

function show (state) {
  view.main.dataset.state = state
  view.main.setAttribute('aria-busy', String(state === 'loading'))
  view.loading.hidden = state !== 'loading'
  view.signedOut.hidden = state !== 'signed-out'
  view.signedIn.hidden = state !== 'signed-in'
}

function showSignedOut () {
  const wasSignedIn = view.main.dataset.state === 'signed-in'
  // A fresh form is for logging in (a registration switches it while it runs): password
  // managers offer the saved password for it.
  view.password.autocomplete = 'current-password'
  show('signed-out')
  if (wasSignedIn) $('signed-out-title').focus()
}

function showSignedIn () {
  const wasSignedIn = view.main.dataset.state === 'signed-in'
  show('signed-in')
  if (!wasSignedIn) $('signed-in-title').focus()
}

/** Ends the session in this tab and says why. */
function endSession (code) {
  signedIn = false
  rememberSignedIn(false)
  const chosen = CHOSEN.has(code)
  if (chosen) rememberLoggedOut(true)
  setExpiry(0)
  setWho('')
  view.loadFailed.hidden = true
  view.sessionsBody.replaceChildren()
  sessionsLoaded = false
  // The cookies are gone: after a logout in this browser, or because they expired.
  const text = code === 'FTS_TOKEN_MISSING' && rememberedLoggedOut() ? ENDED.LOGGED_OUT_ELSEWHERE : ENDED[code]
  say(text ?? ENDED.FTS_TOKEN_INVALID, chosen ? 'success' : 'warning', code)
  showSignedOut()
}

/** Shows the user's name; without one (not loaded) the heading says just "Signed in". */
function setWho (username) {
  view.who.textContent = username
  view.whoLine.hidden = username === ''
}

// ---------------------------------------------------------------------------------------
// The access token's remaining lifetime

function setExpiry (at) {
  expiresAt = at
  view.remaining.dataset.expiresAt = String(at)
  renderRemaining()
}

function renderRemaining () {
  if (expiresAt === 0) {
    // Signed in but /me not loaded yet (or it failed): nothing known.
    view.remaining.textContent = signedIn ? 'unknown' : ''
    view.remaining.dataset.seconds = ''
    return
  }
  const seconds = Math.max(0, Math.ceil((expiresAt - Date.now()) / 1000))
  view.remaining.dataset.seconds = String(seconds)
  view.remaining.textContent = seconds > 0
    ? `expires in ${formatDuration(seconds)}`
    : 'expired; the next request renews it'
}

function formatDuration (seconds) {
  const minutes = Math.floor(seconds / 60)
  const rest = seconds % 60
  if (minutes === 0) return `${rest} s`
  return rest === 0 ? `${minutes} min` : `${minutes} min ${rest} s`
}

// ---------------------------------------------------------------------------------------
// Sessions

/** "Chrome on Linux" from a user agent; the full string stays in the row's tooltip. */
function describeDevice (userAgent) {
  if (typeof userAgent !== 'string' || userAgent === '') return 'Unknown device'
  const browsers = [
    [/Edg(?:e|A|iOS)?\//, 'Edge'], [/OPR\/|Opera/, 'Opera'], [/Firefox\/|FxiOS\//, 'Firefox'],
    [/HeadlessChrome\//, 'Chrome (headless)'], [/Chrome\/|CriOS\//, 'Chrome'], [/Chromium\//, 'Chromium'],
    [/Version\/[\d.]+.*Safari\//, 'Safari'], [/^curl\//, 'curl'], [/^node|undici/i, 'Node.js']
  ]
  const systems = [
    [/Windows/, 'Windows'], [/Android/, 'Android'], [/iPhone|iPad|iPod/, 'iOS'], [/CrOS/, 'ChromeOS'],
    [/Mac OS X|Macintosh/, 'macOS'], [/Linux/, 'Linux']
  ]
  const browser = browsers.find(([pattern]) => pattern.test(userAgent))?.[1]
  const system = systems.find(([pattern]) => pattern.test(userAgent))?.[1]
  if (browser === undefined && system === undefined) return userAgent.length > 40 ? `${userAgent.slice(0, 40)}…` : userAgent
  if (browser === undefined) return `A browser on ${system}`
  return system === undefined ? browser : `${browser} on ${system}`
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })

function timeCell (ms) {
  const time = document.createElement('time')
  const date = new Date(ms)
  time.dateTime = date.toISOString()
  time.title = date.toLocaleString()
  const seconds = Math.round((ms - Date.now()) / 1000)
  const abs = Math.abs(seconds)
  if (abs < 10) time.textContent = 'just now'
  else if (abs < 60) time.textContent = relative.format(seconds, 'second')
  else if (abs < 3600) time.textContent = relative.format(Math.round(seconds / 60), 'minute')
  else if (abs < 86_400) time.textContent = relative.format(Math.round(seconds / 3600), 'hour')
  else time.textContent = date.toLocaleDateString()
  return time
}

/** A cell; `label` is its column's name, shown beside it where the table is stacked (narrow screens). */
function cell (label, ...children) {
  const td = document.createElement('td')
  if (label !== '') td.dataset.label = label
  td.append(...children)
  return td
}

function sessionRow (session) {
  const device = typeof session.label === 'string' && session.label !== '' ? session.label : describeDevice(session.userAgent)
  const row = document.createElement('tr')
  row.dataset.testid = 'session-row'
  row.dataset.sessionId = session.sessionId
  row.dataset.current = String(session.current === true)

  const name = document.createElement('span')
  name.textContent = device
  if (typeof session.userAgent === 'string') name.title = session.userAgent
  const deviceCell = cell('', name)
  if (session.current === true) {
    const badge = document.createElement('strong')
    badge.className = 'badge'
    badge.dataset.testid = 'this-device'
    badge.textContent = 'This device'
    deviceCell.append(' ', badge)
  }

  const end = document.createElement('button')
  end.type = 'button'
  end.className = 'danger small'
  end.dataset.testid = 'end-session'
  end.textContent = session.current === true ? 'End (log out here)' : 'End session'
  // The accessible name starts with the visible text (WCAG 2.5.3, label in name: speech
  // users say what they see) and names the row, without the "last used" time, which would
  // be frozen at render.
  const where = [device, session.ip, session.current === true ? 'this device' : ''].filter((part) => typeof part === 'string' && part !== '')
  end.setAttribute('aria-label', `${end.textContent}: ${where.join(', ')}`)
  end.addEventListener('click', () => busy(end, () => endOne(session, device)))

  row.append(deviceCell, cell('IP address', session.ip ?? '—'), cell('Last used', timeCell(session.lastUsedAt)),
    cell('Signed in', timeCell(session.createdAt)), cell('', end))
  return row
}

function renderSessions (sessions) {
  // This device first, then the most recently used.
  const sorted = [...sessions].sort((a, b) => Number(b.current) - Number(a.current) || b.lastUsedAt - a.lastUsedAt)
  view.sessionsBody.replaceChildren(...sorted.map(sessionRow))
  view.sessionsEmpty.hidden = sorted.length > 0
  sessionsLoaded = true
}

// ---------------------------------------------------------------------------------------
// Actions

/** Disables the button while its request runs, so one click makes one request. */
async function busy (button, task) {
  button.disabled = true
  try {
    await task()
  } finally {
    button.disabled = false
  }
}

/**
 * Runs an action the user started. When it succeeds (answers true) without saying
 * anything itself, the message on show (say, an earlier "briefly unavailable") is out of
 * date: it goes. Only a user's action clears: a background success never hides why a
 * session ended.
 */
async function userAction (action) {
  const before = said
  if (await action() === true && said === before) clearMessage()
}

async function loadMe () {
  const result = await api('GET', '/me')
  if (!result.ok) {
    report(result)
    // Still signed in (e.g. the server unreachable): the view stays, and says the
    // account could not be loaded, with "Check who I am" to try again.
    if (signedIn && view.who.textContent === '') {
      view.loadFailed.hidden = false
      renderRemaining()
      showSignedIn()
    }
    return false
  }
  setWho(result.data.username)
  view.loadFailed.hidden = true
  setExpiry(result.data.expiresAt)
  showSignedIn()
  return true
}

/** "Check who I am": also loads the sessions list if it never loaded (page load failed). */
async function checkMe () {
  if (!await loadMe()) return false
  return sessionsLoaded ? true : await loadSessions()
}

async function loadSessions () {
  // One page of the largest size: as many as a user may have by default (100).
  const result = await api('GET', '/auth/sessions?limit=100')
  if (!result.ok) {
    report(result, 'Sessions')
    return false
  }
  renderSessions(result.data.sessions)
  return true
}

async function refreshAll () {
  if (await loadMe()) await loadSessions()
}

async function logIn (username, password) {
  const result = await send('POST', '/auth/login', { username, password })
  if (!result.ok) {
    report(result)
    return
  }
  signedIn = true
  rememberSignedIn(true)
  rememberLoggedOut(false)
  // New cookies: a request another tab sent before them needs only its retry.
  const expiry = Date.now() + Number(result.data?.expiresIn) * 1000
  recordRenewal({ ok: true, expiresAt: expiry })
  view.password.value = ''
  clearMessage()
  await refreshAll()
}

async function register (username, password) {
  const result = await send('POST', '/auth/register', { username, password })
  if (!result.ok) {
    report(result, 'Could not create the account')
    return
  }
  say(`Account ${result.data.username} created. Logging in…`, 'success')
  await logIn(username, password)
}

async function logOut () {
  const result = await send('POST', '/auth/logout')
  if (!result.ok) return report(result, 'Log out')
  endSession('LOGGED_OUT')
}

async function logOutEverywhere () {
  const result = await api('POST', '/auth/logout-all')
  if (!result.ok) return report(result, 'Log out everywhere')
  endSession('LOGGED_OUT_ALL')
}

async function endOne (session, device) {
  const result = await api('DELETE', `/auth/sessions/${encodeURIComponent(session.sessionId)}`)
  if (!result.ok) {
    report(result, 'End session')
    if (result.code === 'FTS_SESSION_NOT_FOUND') await loadSessions()
    return
  }
  if (session.current === true) return endSession('ENDED_HERE')
  say(`Ended the session of ${device}.`, 'success', 'SESSION_ENDED')
  await loadSessions()
}

// ---------------------------------------------------------------------------------------
// Start

function bind () {
  view.form.addEventListener('submit', (event) => {
    event.preventDefault()
    const submitter = event.submitter instanceof HTMLButtonElement ? event.submitter : view.form.querySelector('button[value="login"]')
    const action = submitter.value === 'register' ? register : logIn
    // The field's purpose follows the button: a new password when creating an account (a
    // password manager then saves it as new, rather than as a changed one), else the current one.
    view.password.autocomplete = action === register ? 'new-password' : 'current-password'
    busy(submitter, () => action(view.username.value.trim(), view.password.value))
  })
  const clicks = { 'reload-me': checkMe, 'reload-sessions': loadSessions, logout: logOut, 'logout-all': logOutEverywhere }
  for (const [id, action] of Object.entries(clicks)) {
    const button = $(id)
    button.addEventListener('click', () => busy(button, () => userAction(action)))
  }
  // Another tab renewed: the cookies (shared) hold a new access token; show its lifetime.
  window.addEventListener('storage', (event) => {
    if (event.key !== RENEWAL_KEY || !signedIn) return
    const record = renewalRecord()
    if (record.ok && Number.isFinite(record.expiresAt)) setExpiry(record.expiresAt)
  })
  setInterval(renderRemaining, 1000)
}

async function start () {
  bind()
  if (!rememberedSignedIn()) {
    showSignedOut()
    return
  }
  // Believed signed in: an expired access cookie is renewed by the first call. If it
  // fails without ending the session (e.g. 503, no network), loadMe shows the signed-in
  // view saying so, and "Check who I am" loads everything.
  signedIn = true
  if (await loadMe()) await loadSessions()
}

start()
