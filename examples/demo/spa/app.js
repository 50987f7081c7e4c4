// The demo single-page app. Plain ES module, no build step; it runs under Gatehouse's
// default Content-Security-Policy, so it has no inline scripts or styles and builds the
// page with textContent only.
import { createClient, GatehouseError } from '/bff/client.js';

// onUnauthenticated: null — when the session ends, show it (sessionend) instead of
// sending the user straight back to the provider.
const gh = createClient({ onUnauthenticated: null });

const $ = (id) => document.getElementById(id);

// ---- helpers -------------------------------------------------------------------------------

/** Creates an element with text or child nodes. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (k === 'className') e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function time(value) {
  return value ? timeFormat.format(new Date(value)) : '–';
}

function dateTime(value) {
  return value ? dateTimeFormat.format(new Date(value)) : '–';
}

/** "1:02:03", "4:05", "7 s" */
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

async function readBody(response) {
  const text = await response.text().catch(() => '');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** "403 forbidden (claims)" from a status and an error body. */
function failure(status, body) {
  const parts = [String(status)];
  if (body && typeof body === 'object' && body.error) {
    parts.push(body.error);
    if (body.reason) parts.push(`(${body.reason})`);
  }
  return parts.join(' ');
}

function errorText(e) {
  if (e instanceof GatehouseError) return failure(e.status, e.body ?? { error: e.code, reason: e.reason });
  if (e instanceof TypeError) return `network error: ${e.message}`;
  return e?.message ?? String(e);
}

// Elements with data-deadline (epoch ms) show a live countdown.
function setDeadline(node, epochMs) {
  node.dataset.deadline = String(epochMs);
  renderCountdown(node);
}

function renderCountdown(node) {
  const left = (Number(node.dataset.deadline) - Date.now()) / 1000;
  node.textContent = left > 0 ? duration(left) : 'expired';
  node.classList.toggle('warn', left < 60);
}

setInterval(() => document.querySelectorAll('[data-deadline]').forEach(renderCountdown), 1000);

/** Runs an async button action with the button disabled; errors land in onError. */
function onClick(id, action, onError) {
  const button = $(id);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await action(button);
    } catch (e) {
      onError(errorText(e));
    } finally {
      button.disabled = false;
    }
  });
}

// ---- notices -------------------------------------------------------------------------------

let noticeKind = null;

function showNotice(text, kind = 'info') {
  noticeKind = kind;
  $('notice-text').textContent = text;
  $('notice').className = `notice ${kind}`;
  $('stay-signed-in').hidden = kind !== 'expiring';
  $('notice').hidden = false;
}

function hideNotice(kind) {
  if (kind === undefined || kind === noticeKind) $('notice').hidden = true;
}

$('notice-close').addEventListener('click', () => hideNotice());

// ---- signed in / signed out ----------------------------------------------------------------

const endReasons = {
  logged_out: 'you signed out',
  no_session: 'there is no session',
  session_expired: 'it timed out',
  session_revoked: 'it was ended elsewhere (another device, the provider or an administrator)',
  refresh_failed: 'the provider refused to refresh its tokens',
};

function showSignedOut(message = '') {
  stopFeed();
  $('loading').hidden = true;
  $('signed-in').hidden = true;
  $('whoami').hidden = true;
  $('signed-out').hidden = false;
  $('signed-out-message').textContent = message;
  $('session-countdown').removeAttribute('data-deadline');
}

let session = { idleTimeout: 0, absoluteDeadline: 0 };

function showSignedIn(user) {
  const claims = user.claims ?? {};
  $('loading').hidden = true;
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  $('whoami').hidden = false;
  $('whoami-name').textContent = claims.name ?? claims.sub;
  $('user-name').textContent = claims.name ?? '–';
  $('user-email').textContent = claims.email ?? '–';
  $('user-sub').textContent = claims.sub ?? '–';
  const groups = Array.isArray(claims.groups) ? claims.groups : [];
  $('user-groups').replaceChildren(
    ...(groups.length ? groups.map((g) => el('span', { className: 'chip', text: g })) : [el('span', { className: 'muted', text: 'none' })]),
  );
  showSession(user.session);
}

function showSession(s) {
  if (!s) return;
  const now = Date.now();
  session = { idleTimeout: s.idle_expires_in, absoluteDeadline: now + s.expires_in * 1000 };
  updateSessionDeadline(now + s.idle_expires_in * 1000);
  $('session-detail').textContent = `(at the latest ${dateTime(s.expires_at)})`;
}

function updateSessionDeadline(idleDeadline) {
  setDeadline($('session-countdown'), Math.min(idleDeadline, session.absoluteDeadline));
}

// A successful API call is activity: Gatehouse restarts the idle timeout.
function activity() {
  if (session.idleTimeout) updateSessionDeadline(Date.now() + session.idleTimeout * 1000);
  hideNotice('expiring');
}

gh.addEventListener('user', (e) => {
  showSession(e.detail.session);
  hideNotice('expiring');
});

gh.addEventListener('sessionexpiring', (e) => {
  const { expiresIn, idle } = e.detail;
  showNotice(
    idle
      ? `Your session ends in ${duration(expiresIn)} unless you do something.`
      : `Your session ends in ${duration(expiresIn)}; then sign in again.`,
    idle ? 'expiring' : 'info',
  );
});

gh.addEventListener('sessionend', (e) => {
  const reason = e.detail.reason;
  const text = `Your session ended: ${reason}${endReasons[reason] ? ` — ${endReasons[reason]}` : ''}.`;
  hideNotice();
  showSignedOut(text);
});

onClick('login', async () => gh.login(), (msg) => showNotice(`Cannot sign in: ${msg}`, 'error'));
onClick('logout', async () => gh.logout(), (msg) => showNotice(`Sign-out failed: ${msg}`, 'error'));
onClick('stay-signed-in', async () => {
  await gh.getUser();
}, (msg) => showNotice(`Cannot extend the session: ${msg}`, 'error'));

// ---- API calls -----------------------------------------------------------------------------

function fact(term, ...value) {
  return [el('dt', { text: term }), el('dd', {}, ...value)];
}

function countdown(epochSeconds) {
  if (!epochSeconds) return el('span', { className: 'muted', text: 'unknown' });
  const node = el('strong');
  setDeadline(node, epochSeconds * 1000);
  return el('span', {}, 'in ', node, ` (${time(epochSeconds * 1000)})`);
}

function tokenFacts(token) {
  if (!token) return [];
  const exp = token.expires_at ? Date.parse(token.expires_at) / 1000 : 0;
  return [
    ...fact('Token', el('code', { text: token.fingerprint, 'data-testid': 'api-fingerprint' }), ` ${token.kind}`),
    ...fact('Expires', countdown(exp)),
  ];
}

const calls = {
  'call-api': {
    path: '/api/me',
    facts: (b) => [
      ...fact('Subject', b.claims?.sub ?? '–'),
      ...fact('Groups', (b.claims?.groups ?? []).join(', ') || '–'),
      ...tokenFacts(b.token),
    ],
    explain: 'The demo API checked the access token that Gatehouse attached, and returned its claims.',
  },
  'call-client': {
    path: '/client/status',
    facts: (b) => [
      ...fact('Client', el('code', { text: b.client_id ?? '–' })),
      ...fact('Scope', b.scope || '–'),
      ...fact('Expires', countdown(b.exp)),
    ],
    explain: 'This route uses Gatehouse\u2019s own client-credentials token: no user is involved.',
  },
  'call-admin': {
    path: '/api/admin',
    facts: (b) => [...fact('Message', b.message ?? '–')],
    explain: 'Gatehouse lets only members of the admin group through; the API checks again.',
  },
};

function explainFailure(status, body) {
  if (typeof status !== 'number') return String(body); // the request itself failed
  const code = body?.error;
  if (status === 403 && code === 'forbidden') return 'Gatehouse refused: this route requires the admin group.';
  if (status === 403 && code === 'csrf_rejected') return 'Gatehouse refused the request as a possible CSRF attack.';
  if (status === 401 && code === 'unauthenticated') return 'There is no valid session any more.';
  if (status === 401) return 'The API refused the access token.';
  if (status >= 500) return 'Gatehouse or an upstream could not answer; try again.';
  return '';
}

function showResult(path, status, ok, body, call) {
  $('api-result').hidden = false;
  $('api-request').textContent = `GET ${path}`;
  $('api-status').textContent = ok ? String(status) : failure(status, body);
  $('api-status').className = `status ${ok ? 'ok' : 'error'}`;
  $('api-explain').textContent = ok ? call.explain : explainFailure(status, body);
  $('api-facts').replaceChildren(...(ok && body && typeof body === 'object' ? call.facts(body) : []));
  $('api-json').textContent = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
}

for (const [id, call] of Object.entries(calls)) {
  onClick(id, async () => {
    $('api-status').textContent = '…';
    const response = await gh.fetch(call.path, { headers: { Accept: 'application/json' } });
    const body = await readBody(response);
    if (response.ok) activity();
    showResult(call.path, response.status, response.ok, body, call);
  }, (msg) => showResult(call.path, 'failed', false, msg, call));
}

// ---- live feed -----------------------------------------------------------------------------
// EventSource cannot send the CSRF header, so the stream is read with gh.fetch and a reader.

let feed = null; // AbortController of the running feed
let lastFingerprint = null;
const maxEvents = 10;

function setFeedStatus(text, kind = '') {
  $('feed-status').textContent = text;
  $('feed-status').className = `status ${kind}`;
}

function startFeed() {
  if (feed) return;
  feed = new AbortController();
  $('feed-toggle').textContent = 'Pause';
  runFeed(feed.signal).catch((e) => setFeedStatus(`stopped: ${errorText(e)}`, 'error'));
}

function stopFeed() {
  if (!feed) return;
  feed.abort();
  feed = null;
  $('feed-toggle').textContent = 'Resume';
  setFeedStatus('paused');
}

$('feed-toggle').addEventListener('click', () => (feed ? stopFeed() : startFeed()));

async function runFeed(signal) {
  while (!signal.aborted) {
    setFeedStatus('connecting…');
    let response;
    try {
      response = await gh.fetch('/api/events', { signal, headers: { Accept: 'text/event-stream' } });
    } catch (e) {
      if (signal.aborted) return;
      setFeedStatus(`${errorText(e)}; retrying in 5 s`, 'error');
      await sleep(5000, signal);
      continue;
    }
    if (!response.ok) {
      const body = await readBody(response);
      if (response.status === 401 && body?.error === 'unauthenticated') return; // sessionend follows
      setFeedStatus(`${failure(response.status, body)}; retrying in 5 s`, 'error');
      await sleep(5000, signal);
      continue;
    }
    activity();
    setFeedStatus('live', 'ok');
    $('feed-events').prepend(el('li', { className: 'stream-start', text: `stream opened ${time(Date.now())}` }));
    let end;
    try {
      end = await readEvents(response.body, onTick);
    } catch (e) {
      if (signal.aborted) return;
      end = { reason: errorText(e) };
    }
    setFeedStatus(`stream ended (${end?.reason ?? 'closed'}); reconnecting…`);
    await sleep(1000, signal);
  }
}

/** Reads server-sent events until the stream closes or sends "end"; returns that event's data. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buffer += value.replaceAll('\r\n', '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event.name === 'end') return event.data;
        if (event.name === 'tick' && event.data) onEvent(event.data);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseEvent(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  try {
    return { name, data: JSON.parse(data.join('\n')) };
  } catch {
    return { name, data: null };
  }
}

function onTick(ev) {
  $('feed-events').prepend(
    el('li', {},
      el('span', { className: 'n', text: `#${ev.n}` }), ' ',
      el('time', { text: time(ev.time) }), ' ',
      el('code', { text: ev.fingerprint }), ' ',
      el('span', { className: 'muted', text: ev.sub })),
  );
  while ($('feed-events').children.length > maxEvents) $('feed-events').lastElementChild.remove();

  if (ev.fingerprint !== lastFingerprint) {
    const changed = lastFingerprint !== null;
    const item = el('li', {},
      el('time', { text: time(ev.time) }), ' ',
      el('code', { text: ev.fingerprint }),
      changed ? el('span', { className: 'chip ok', text: 'refreshed' }) : el('span', { className: 'muted', text: ' first token' }));
    $('feed-tokens').prepend(item);
    while ($('feed-tokens').children.length > 5) $('feed-tokens').lastElementChild.remove();
    const shown = $('feed-fingerprint');
    shown.textContent = ev.fingerprint;
    shown.classList.remove('flash');
    if (changed) {
      void shown.offsetWidth; // restart the animation
      shown.classList.add('flash');
    }
    lastFingerprint = ev.fingerprint;
  }
}

// ---- sessions ------------------------------------------------------------------------------

/** "Chrome on Linux" from a user agent; the full string is in the tooltip. */
function device(ua = '') {
  const browser = [[/Edg\//, 'Edge'], [/HeadlessChrome\//, 'Headless Chrome'], [/Chrome\//, 'Chrome'],
    [/Firefox\//, 'Firefox'], [/Safari\//, 'Safari'], [/^curl\//, 'curl'], [/^Go-http-client/, 'Go']]
    .find(([re]) => re.test(ua))?.[1];
  const os = [[/Android/, 'Android'], [/iPhone|iPad/, 'iOS'], [/Windows/, 'Windows'], [/Mac OS X/, 'macOS'],
    [/Linux/, 'Linux']].find(([re]) => re.test(ua))?.[1];
  if (!browser) return ua ? ua.slice(0, 40) : 'unknown device';
  return os ? `${browser} on ${os}` : browser;
}

function setSessionsStatus(text, kind = '') {
  $('sessions-status').textContent = text;
  $('sessions-status').className = `small ${kind}`;
}

async function loadSessions() {
  const list = await gh.sessions();
  list.sort((a, b) => Number(b.current) - Number(a.current) || Date.parse(b.last_seen_at) - Date.parse(a.last_seen_at));
  $('sessions-body').replaceChildren(...list.map((s) => {
    const action = s.current
      ? el('span', { className: 'chip ok', text: 'this device' })
      : el('button', { type: 'button', className: 'secondary small', 'data-sid': s.sid, 'data-testid': 'end-session', text: 'Sign out' });
    return el('tr', { 'data-testid': 'session-row' },
      el('td', { title: s.user_agent ?? '' }, device(s.user_agent), el('br'), el('span', { className: 'muted small', text: s.ip ?? '' })),
      el('td', { text: dateTime(s.created_at) }),
      el('td', { text: dateTime(s.last_seen_at) }),
      el('td', {}, action));
  }));
  $('sessions-end-others').disabled = !list.some((s) => !s.current);
  setSessionsStatus(`${list.length} session${list.length === 1 ? '' : 's'}`);
}

async function refreshSessions() {
  try {
    await loadSessions();
  } catch (e) {
    setSessionsStatus(`Cannot list sessions: ${errorText(e)}`, 'error');
  }
}

$('sessions-body').addEventListener('click', async (e) => {
  const button = e.target.closest('button[data-sid]');
  if (!button) return;
  button.disabled = true;
  try {
    await gh.endSession(button.dataset.sid);
    await loadSessions();
    setSessionsStatus('Signed out that session.', 'ok');
  } catch (err) {
    button.disabled = false;
    setSessionsStatus(`Cannot end the session: ${errorText(err)}`, 'error');
  }
});

onClick('sessions-refresh', refreshSessions, (msg) => setSessionsStatus(msg, 'error'));
onClick('sessions-end-others', async () => {
  await gh.endOtherSessions();
  await loadSessions();
  setSessionsStatus('Signed out all other devices.', 'ok');
}, (msg) => setSessionsStatus(`Cannot end the other sessions: ${msg}`, 'error'));

// ---- start ---------------------------------------------------------------------------------

window.addEventListener('unhandledrejection', (e) => showNotice(`Unexpected error: ${errorText(e.reason)}`, 'error'));

async function start() {
  let user;
  try {
    user = await gh.getUser();
  } catch (e) {
    showSignedOut();
    showNotice(`Cannot read the session: ${errorText(e)}`, 'error');
    return;
  }
  if (!user) {
    showSignedOut();
    return;
  }
  showSignedIn(user);
  startFeed();
  await refreshSessions();
}

start();
