// The client against real HTTP servers on 127.0.0.1: a stand-in for Gatehouse (same origin as
// the "page") that enforces the CSRF header and the session cookie like the real one, and a
// second server on another port (another origin). A small browser stand-in resolves relative
// URLs against the page and keeps a cookie jar that honours `credentials`, as a browser does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { createClient, GatehouseError } from '../gatehouse.js';
import { userBody } from './helpers.js';

/**
 * @typedef {object} Seen
 * @property {string} method
 * @property {string} url path and query as sent on the wire
 * @property {http.IncomingHttpHeaders} headers
 */

/**
 * @param {http.RequestListener} handler
 * @returns {Promise<{server: http.Server, origin: string}>}
 */
async function listen(handler) {
  const server = http.createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  return { server, origin: `http://127.0.0.1:${address.port}` };
}

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {unknown} [body]
 * @param {Record<string, string>} [headers]
 */
function send(res, status, body, headers = {}) {
  if (body === undefined) {
    res.writeHead(status, headers).end();
    return;
  }
  res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
    .end(JSON.stringify(body));
}

/** The fake Gatehouse. `seen` records every request. */
function gatehouse() {
  /** @type {Seen[]} */
  const seen = [];
  const sessions = new Set();
  /** @type {http.RequestListener} */
  const handler = (req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    const cookie = /(?:^|;\s*)gh=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    const session = cookie && sessions.has(cookie) ? cookie : undefined;
    const csrfOk = req.headers['x-csrf'] === '1';
    const unauthenticated = () =>
      send(res, 401, { error: 'unauthenticated', reason: 'no_session', login_url: '/bff/login' });
    const csrfRejected = () => send(res, 403, { error: 'csrf_rejected', reason: 'missing_header' });

    if (req.method === 'GET' && url.pathname === '/bff/login') {
      const returnUrl = url.searchParams.get('returnUrl') ?? '/';
      sessions.add('s1');
      return send(res, 302, undefined, {
        location: returnUrl,
        'set-cookie': 'gh=s1; Path=/; HttpOnly; SameSite=Strict',
      });
    }
    if (req.method === 'GET' && url.pathname === '/bff/user') {
      if (!session) return unauthenticated();
      return send(res, 200, userBody({ sid: 'sid/1' }));
    }
    if (req.method === 'POST' && url.pathname === '/bff/logout') {
      if (!csrfOk) return csrfRejected();
      if (session) sessions.delete(session);
      const returnUrl = url.searchParams.get('returnUrl') ?? '/';
      return send(
        res,
        200,
        { redirect_url: `https://idp.example/logout?state=st&returnUrl=${encodeURIComponent(returnUrl)}` },
        { 'set-cookie': 'gh=; Path=/; Max-Age=0' },
      );
    }
    if (url.pathname === '/bff/sessions' && req.method === 'GET') {
      if (!session) return unauthenticated();
      return send(res, 200, {
        sessions: [
          { sid: 'sid/1', created_at: 't', last_seen_at: 't', expires_at: 't', user_agent: 'UA', ip: '127.0.0.1', current: true },
        ],
      });
    }
    if (url.pathname.startsWith('/bff/sessions') && req.method === 'DELETE') {
      if (!csrfOk) return csrfRejected();
      if (!session) return unauthenticated();
      if (url.pathname === '/bff/sessions' && url.searchParams.get('others') === 'true') return send(res, 204);
      if (url.pathname === '/bff/sessions/other%2Fdevice') return send(res, 204);
      return send(res, 404, { error: 'not_found' });
    }
    if (url.pathname.startsWith('/api/')) {
      // A proxied route: CSRF header first (all methods), then the session.
      if (!csrfOk) return csrfRejected();
      if (!session) return unauthenticated();
      return send(res, 200, { path: url.pathname, trace: req.headers['x-trace'] ?? null });
    }
    send(res, 404, { error: 'not_found' });
  };
  return { handler, seen };
}

/**
 * A browser stand-in: relative URLs resolve against the page, cookies are kept per origin and
 * sent according to `credentials` (same-origin by default), redirects are not followed.
 * @param {string} pageUrl
 */
function browser(pageUrl) {
  const page = new URL(pageUrl);
  /** @type {Map<string, Map<string, string>>} origin → name → value */
  const jar = new Map();
  /** @type {{url: string, credentials: string}[]} */
  const requests = [];
  /**
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   */
  const fetch = async (input, init) => {
    const target = typeof input === 'object' && 'url' in input ? input : new URL(String(input), page);
    const request = new Request(target, init);
    const url = new URL(request.url);
    requests.push({ url: url.href, credentials: request.credentials });
    const sendCookies =
      request.credentials === 'include' || (request.credentials === 'same-origin' && url.origin === page.origin);
    const headers = new Headers(request.headers);
    const cookies = jar.get(url.origin);
    if (sendCookies && cookies?.size) {
      headers.set('cookie', [...cookies].map(([name, value]) => `${name}=${value}`).join('; '));
    }
    const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.arrayBuffer();
    const response = await globalThis.fetch(url, { method: request.method, headers, body, redirect: 'manual' });
    if (sendCookies) {
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const [name, value] = pair.split('=');
        const forOrigin = jar.get(url.origin) ?? new Map();
        if (/max-age=0/i.test(line)) forOrigin.delete(name);
        else forOrigin.set(name, value);
        jar.set(url.origin, forOrigin);
      }
    }
    return response;
  };
  return { fetch, jar, requests, origin: page.origin };
}

test('on the wire: CSRF header, cookies, URLs and the login/logout flow', async (t) => {
  const gh1 = gatehouse();
  const { server, origin } = await listen(gh1.handler);
  t.after(() => server.close());
  /** @type {Seen[]} */
  const crossSeen = [];
  const cross = await listen((req, res) => {
    crossSeen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    send(res, 200, { ok: true });
  });
  t.after(() => cross.server.close());

  const pageUrl = `${origin}/app/orders?id=7#details`;
  const page = new URL(pageUrl);
  const b = browser(pageUrl);
  /** @type {string[]} */
  const assigned = [];
  const location = {
    href: page.href,
    origin: page.origin,
    pathname: page.pathname,
    search: page.search,
    hash: page.hash,
    /** @param {string} target */
    assign: (target) => void assigned.push(target),
  };
  const gh = createClient({ fetch: b.fetch, location });
  t.after(() => gh.dispose());
  /** @type {{type: string, detail: any}[]} */
  const events = [];
  for (const type of ['sessionend', 'user']) {
    gh.addEventListener(type, (e) => events.push({ type, detail: /** @type {any} */ (e).detail }));
  }

  // Signed out: getUser is null, quietly.
  assert.equal(await gh.getUser(), null);
  assert.deepEqual(assigned, []);
  assert.equal(gh1.seen[0].url, '/bff/user');
  assert.equal(gh1.seen[0].headers['x-csrf'], '1');
  assert.equal(gh1.seen[0].headers.accept, 'application/json');

  // Log in: the client navigates; the browser follows, Gatehouse sets the cookie.
  gh.login();
  assert.deepEqual(assigned, ['/bff/login?returnUrl=%2Fapp%2Forders%3Fid%3D7%23details']);
  const login = await b.fetch(assigned[0]);
  assert.equal(login.status, 302);
  assert.equal(login.headers.get('location'), '/app/orders?id=7#details', 'returnUrl arrived intact');
  assert.equal(b.jar.get(origin)?.get('gh'), 's1');

  // Signed in.
  const user = await gh.getUser({ slide: false });
  assert.equal(user?.sid, 'sid/1');
  assert.equal(gh1.seen.at(-1)?.url, '/bff/user?slide=false');
  assert.equal(gh1.seen.at(-1)?.headers.cookie, 'gh=s1');

  // Same-origin API calls carry the header and the cookie; explicit headers survive.
  const relative = await gh.fetch('/api/orders', { headers: { 'X-Trace': 'rel' } });
  assert.equal(relative.status, 200);
  assert.deepEqual(await relative.json(), { path: '/api/orders', trace: 'rel' });
  const absolute = await gh.fetch(`${origin}/api/items?x=1`, { method: 'POST', body: '{}' });
  assert.equal(absolute.status, 200);
  const last = gh1.seen.at(-1);
  assert.equal(last?.method, 'POST');
  assert.equal(last?.url, '/api/items?x=1');
  assert.equal(last?.headers['x-csrf'], '1');
  assert.equal(last?.headers.cookie, 'gh=s1');
  const pageRelative = await gh.fetch('../api/rel'); // resolved against /app/orders
  assert.deepEqual(await pageRelative.json(), { path: '/api/rel', trace: null });

  // Without the client the same call is refused: the header is what makes it pass.
  const bare = await b.fetch('/api/orders');
  assert.equal(bare.status, 403);
  assert.equal((await bare.json()).error, 'csrf_rejected');

  // Cross-origin: no CSRF header, no cookie, credentials untouched.
  const crossResponse = await gh.fetch(`${cross.origin}/data?q=1`, { headers: { 'X-Trace': 'x' } });
  assert.equal(crossResponse.status, 200);
  assert.equal(crossSeen.length, 1);
  assert.equal(crossSeen[0].url, '/data?q=1');
  assert.equal(crossSeen[0].headers['x-csrf'], undefined);
  assert.equal(crossSeen[0].headers.cookie, undefined);
  assert.equal(crossSeen[0].headers['x-trace'], 'x');
  assert.equal(b.requests.at(-1)?.credentials, 'same-origin', "fetch's own default, not set by the client");

  // Session management.
  assert.deepEqual(
    (await gh.sessions()).map((s) => s.sid),
    ['sid/1'],
  );
  await gh.endSession('other/device');
  assert.equal(gh1.seen.at(-1)?.method, 'DELETE');
  assert.equal(gh1.seen.at(-1)?.url, '/bff/sessions/other%2Fdevice');
  assert.equal(gh1.seen.at(-1)?.headers['x-csrf'], '1');
  await assert.rejects(gh.endSession('unknown'), (e) => e instanceof GatehouseError && e.code === 'not_found');
  await gh.endOtherSessions();
  assert.equal(gh1.seen.at(-1)?.url, '/bff/sessions?others=true');

  // Log out.
  await gh.logout({ returnUrl: '/bye' });
  const logout = gh1.seen.at(-1);
  assert.equal(logout?.method, 'POST');
  assert.equal(logout?.url, '/bff/logout?returnUrl=%2Fbye');
  assert.equal(logout?.headers['x-csrf'], '1');
  assert.equal(logout?.headers.accept, 'application/json');
  assert.equal(logout?.headers.cookie, 'gh=s1');
  assert.equal(assigned.at(-1), 'https://idp.example/logout?state=st&returnUrl=%2Fbye');
  assert.equal(b.jar.get(origin)?.has('gh'), false, 'cookie cleared');
  assert.deepEqual(events.at(-1), { type: 'sessionend', detail: { reason: 'logged_out', loginUrl: '/bff/login' } });

  // Signed out again: an API call gets 401 and, by default, the browser is sent to login.
  const after = await gh.fetch('/api/orders');
  assert.equal(after.status, 401);
  assert.deepEqual(await after.json(), { error: 'unauthenticated', reason: 'no_session', login_url: '/bff/login' });
  assert.equal(assigned.at(-1), '/bff/login?returnUrl=%2Fapp%2Forders%3Fid%3D7%23details');
  assert.deepEqual(events.at(-1), { type: 'sessionend', detail: { reason: 'no_session', loginUrl: '/bff/login' } });
  assert.deepEqual(
    events.map((e) => e.type),
    ['user', 'sessionend', 'sessionend'],
  );
});
