// The example app's page: plain DOM, no dependencies, no build step.
//
// Both tokens live in httpOnly cookies that this script cannot read. The session itself
// (silent refresh, retries, tabs taking turns, a session ending in every tab) is the
// plugin's browser client, `fastify-token-sessions/client`, which the app serves at
// /client/: every API call goes through `session.fetch`. This file is the page's logic.
import { createSessionClient } from '/client/index.js'
import { createDpopProver } from '/client/dpop.js'

/** A request that hangs must not leave its button disabled forever. */
const REQUEST_TIMEOUT_MS = 30_000

/** What the page says when a session ends, by the client's reason (and the plugin's code). */
const ENDED = {
  revoked: 'Your session was ended: from another device or tab, by "log out everywhere", or because its refresh token was used twice (a possible theft). Please log in again.',
  FTS_SESSION_EXPIRED: 'Your session has expired: it reached its maximum lifetime. Please log in again.',
  expired: 'Your session has expired. Please log in again.',
  'reuse-detected': 'You were signed out for your security: this session\'s refresh token was used twice, which can mean someone copied it. Please log in again.',
  invalid: 'Your session is no longer valid. Please log in again.',
  // The server refused to renew the session from this page: its set-up, not the user.
  refused: 'The server refused to renew your session from this page. Please log in again; if this keeps happening, the site is misconfigured.',
  // Another tab of this browser logged out.
  LOGGED_OUT_ELSEWHERE: 'You logged out (in this or another tab). Please log in again.',
  LOGGED_OUT: 'You have logged out.',
  LOGGED_OUT_ALL: 'You have logged out on every device.',
  ENDED_HERE: 'You ended this device\'s session. You are logged out.'
}

/** What the page says about a failed request that leaves the session as it is. */
const FAILED = {
  FTS_STORE_UNAVAILABLE: 'The service is briefly unavailable. You are still logged in; try again shortly.',
  INVALID_CREDENTIALS: 'Wrong username or password.',
  USERNAME_TAKEN: 'That username is taken. Choose another one, or log in.',
  FTS_CSRF_REJECTED: 'The server refused the request as cross-site.',
  FTS_SESSION_NOT_FOUND: 'That session has already ended.',
  NETWORK: 'Could not reach the server. Check your connection and try again.',
  // The user cancelled the password prompt of a step-up.
  FTS_STEP_UP_REQUIRED: 'This needs you to confirm your password first.',
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
  remember: $('remember'),
  username: $('username'),
  password: $('password'),
  who: $('who'),
  whoLine: $('who-line'),
  loadFailed: $('load-failed'),
  remaining: $('token-remaining'),
  sessionsBody: $('sessions-body'),
  sessionsEmpty: $('sessions-empty'),
  passwordForm: $('password-form'),
  currentPassword: $('current-password'),
  newPassword: $('new-password'),
  reauthDialog: $('reauth-dialog'),
  reauthForm: $('reauth-form'),
  reauthHint: $('reauth-hint'),
  reauthUsername: $('reauth-username'),
  reauthPassword: $('reauth-password'),
  reauthError: $('reauth-error'),
  reauthCancel: $('reauth-cancel')
}

/** When the access token expires, in ms since the epoch (0: unknown). */
let expiresAt = 0
/** Whether the sessions list on show was loaded for the current session. */
let sessionsLoaded = false
/** Counts the messages shown, so that an action can tell whether it said anything. */
let said = 0
/** The message code of the way the user is ending the session in this tab, while they do. */
let ending = ''

/**
 * This browser's DPoP key (kept in IndexedDB, its private half never extractable): the
 * login binds the session to it, and every refresh proves it, so a refresh cookie copied
 * to another browser cannot refresh. Without WebCrypto or IndexedDB, a plain cookie session.
 */
const dpop = await createDpopProver().catch(() => undefined)

const session = createSessionClient({
  refreshPath: '/auth/refresh',
  dpop,
  logoutPath: '/auth/logout',
  onSessionEnd: (reason, { code }) => endSession(reason, code),
  onRefresh: ({ expiresAt, started }) => {
    // A login in another tab: this one shows it too.
    if (started) refreshAll()
    else setExpiry(expiresAt)
  },
  // A route needs a more recent login (the password change): the page asks for the
  // password, once for all tabs, and the client sends the request again.
  onStepUp: (detail) => reauthenticate(detail)
})

// ---------------------------------------------------------------------------------------
// Requests

/**
 * One API call through the session client, never throwing: `{ ok, status, data }` or
 * `{ ok: false, status, code, message, retryAfter, ended }`. A JSON type only goes with a
 * body; the client adds the anti-CSRF header to state changes.
 */
async function api (method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let response
  let text
  try {
    response = await session.fetch(path, init)
    dpop?.seen(response)
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
    retryAfter: Number.parseInt(response.headers.get('retry-after') ?? '', 10),
    // The session ended (the page said why when it did): nothing more to say.
    ended: response.status === 401 && !session.active
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
  const text = failure(result)
  const kind = result.code === 'FTS_STORE_UNAVAILABLE' || result.code === 'RATE_LIMITED' ? 'warning' : 'error'
  say(context === '' ? text : `${context}: ${text}`, kind, result.code)
}

/** What went wrong with a request, in words. */
function failure (result) {
  let text = FAILED[result.code]
  if (result.code === 'RATE_LIMITED') {
    const wait = Number.isFinite(result.retryAfter) ? ` in ${result.retryAfter} s` : ' shortly'
    text = `Too many attempts. Try again${wait}.`
  } else if (result.code === 'FST_ERR_VALIDATION' && result.message !== '') {
    // ajv names the field and the rule, e.g. "body/password must NOT have fewer than 8 characters".
    text = result.message.replace(/(^|, )body\//g, '$1')
    text = text.charAt(0).toUpperCase() + text.slice(1) + '.'
  }
  return text ?? (result.message || `The request failed (HTTP ${result.status}).`)
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

/**
 * The session ended (the client says why, in every tab): clear what the page showed and
 * say why. A logout the user chose here says what they chose.
 */
function endSession (reason, code) {
  const chosen = ending !== ''
  const key = chosen ? ending : reason === 'logged-out' ? 'LOGGED_OUT_ELSEWHERE' : code === 'FTS_SESSION_EXPIRED' ? code : reason
  ending = ''
  setExpiry(0)
  setWho('')
  view.loadFailed.hidden = true
  view.sessionsBody.replaceChildren()
  sessionsLoaded = false
  say(ENDED[key] ?? ENDED.invalid, chosen ? 'success' : 'warning', chosen || code === undefined ? key : code)
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
    view.remaining.textContent = session.active ? 'unknown' : ''
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

  const remembered = document.createElement('span')
  remembered.dataset.testid = 'remembered'
  remembered.textContent = session.remembered === false ? 'No: ends when the browser closes' : 'Yes'
  row.append(deviceCell, cell('IP address', session.ip ?? '—'), cell('Last used', timeCell(session.lastUsedAt)),
    cell('Signed in', timeCell(session.createdAt)), cell('Remembered', remembered), cell('', end))
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
    if (session.active && view.who.textContent === '') {
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
  const proof = dpop === undefined ? {} : { DPoP: await dpop.proof('POST', new URL('/auth/login', document.baseURI).href) }
  // "Remember me" unticked: the session's cookies go when the browser closes.
  const result = await api('POST', '/auth/login', { username, password, remember: view.remember.checked }, proof)
  if (!result.ok) {
    report(result)
    return
  }
  // Refreshed shortly before the access token expires, and every tab knows.
  session.started(result.data)
  view.password.value = ''
  clearMessage()
  await refreshAll()
}

async function register (username, password) {
  const result = await api('POST', '/auth/register', { username, password })
  if (!result.ok) {
    report(result, 'Could not create the account')
    return
  }
  say(`Account ${result.data.username} created. Logging in…`, 'success')
  await logIn(username, password)
}

/** Logs out here (`/auth/logout`) or everywhere (`/auth/logout-all`); `code` names the choice. */
async function logOut (path, code, context) {
  ending = code
  let status = 0
  let data = null
  try {
    const response = await session.logout(path)
    status = response.status
    data = await response.json().catch(() => null)
  } catch {
    // No answer: still logged in.
  }
  // The session ended (endSession ran and said so), or the server could not end it.
  if (session.active) {
    ending = ''
    report({ ok: false, status, code: data?.code ?? (status === 0 ? 'NETWORK' : `HTTP_${status}`), message: data?.message ?? '' }, context)
  }
}

async function endOne (row, device) {
  const result = await api('DELETE', `/auth/sessions/${encodeURIComponent(row.sessionId)}`)
  if (!result.ok) {
    report(result, 'End session')
    if (result.code === 'FTS_SESSION_NOT_FOUND') await loadSessions()
    return
  }
  if (row.current === true) {
    // The server ended this very session: every tab hears it.
    ending = 'ENDED_HERE'
    return session.ended()
  }
  say(`Ended the session of ${device}.`, 'success', 'SESSION_ENDED')
  await loadSessions()
}

async function changePassword () {
  const result = await api('POST', '/auth/change-password', { currentPassword: view.currentPassword.value, newPassword: view.newPassword.value })
  if (!result.ok) {
    // The app's own 401: the session goes on, only the password was wrong.
    if (result.code === 'INVALID_CREDENTIALS') say('Change password: the current password is wrong.', 'error', result.code)
    else report(result, 'Change password')
    return false
  }
  view.currentPassword.value = ''
  view.newPassword.value = ''
  say('Your password was changed, and your other sessions have ended.', 'success', 'PASSWORD_CHANGED')
  await loadSessions()
  return true
}

/**
 * The step-up prompt: asks for the password and sends it to /auth/reauthenticate, which
 * makes the session's login recent again (new cookies, same session). Resolves with its
 * answer (`{ expiresIn }`) for the client, which then sends the request again, or false
 * when the user cancels (the request's 401 comes back, and the page says so).
 */
async function reauthenticate ({ maxAge }) {
  const dialog = view.reauthDialog
  view.reauthHint.textContent = maxAge === undefined
    ? 'This needs a recent login. Enter your password to go on.'
    : `This needs a login from the last ${formatDuration(maxAge)}. Enter your password to go on.`
  view.reauthUsername.value = view.who.textContent
  view.reauthPassword.value = ''
  view.reauthError.textContent = ''
  return await new Promise((resolve) => {
    const finish = (answer) => {
      view.reauthForm.removeEventListener('submit', submit)
      view.reauthCancel.removeEventListener('click', cancel)
      dialog.removeEventListener('cancel', cancel)
      view.reauthPassword.value = ''
      dialog.close()
      resolve(answer)
    }
    const cancel = (event) => {
      event.preventDefault()
      finish(false)
    }
    const submit = (event) => {
      event.preventDefault()
      const button = view.reauthForm.querySelector('button[type="submit"]')
      busy(button, async () => {
        const result = await api('POST', '/auth/reauthenticate', { password: view.reauthPassword.value })
        if (result.ok) return finish(result.data)
        // The session ended meanwhile: the page has said why.
        if (result.ended) return finish(false)
        view.reauthError.textContent = result.code === 'INVALID_CREDENTIALS' ? 'Wrong password.' : failure(result)
        view.reauthPassword.select()
      })
    }
    view.reauthForm.addEventListener('submit', submit)
    view.reauthCancel.addEventListener('click', cancel)
    // Escape.
    dialog.addEventListener('cancel', cancel)
    dialog.showModal()
    view.reauthPassword.focus()
  })
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
  view.passwordForm.addEventListener('submit', (event) => {
    event.preventDefault()
    const button = view.passwordForm.querySelector('button[type="submit"]')
    busy(button, () => userAction(changePassword))
  })
  const clicks = {
    'reload-me': checkMe,
    'reload-sessions': loadSessions,
    logout: () => logOut('/auth/logout', 'LOGGED_OUT', 'Log out'),
    'logout-all': () => logOut('/auth/logout-all', 'LOGGED_OUT_ALL', 'Log out everywhere')
  }
  for (const [id, action] of Object.entries(clicks)) {
    const button = $(id)
    button.addEventListener('click', () => busy(button, () => userAction(action)))
  }
  setInterval(renderRemaining, 1000)
}

/**
 * Says so on the page when the server keeps sessions in its memory (no Redis): the log
 * says it too, but the person trying the app reads the page. Nothing is said if readiness
 * cannot be read.
 */
async function showStorage () {
  try {
    const response = await fetch('/health/ready', { cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    const { storage } = await response.json()
    $('in-memory').hidden = storage !== 'memory'
  } catch {}
}

async function start () {
  bind()
  showStorage()
  if (!session.active) {
    showSignedOut()
    return
  }
  // Signed in (this browser's tabs say so): an expired access cookie is renewed by the
  // first call. If it fails without ending the session (e.g. 503, no network), loadMe
  // shows the signed-in view saying so, and "Check who I am" loads everything.
  setExpiry(session.expiresAt)
  if (await loadMe()) await loadSessions()
}

start()
