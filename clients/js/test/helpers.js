// Shared fakes for the client tests (not a test file itself: `npm test` runs test/*.test.js).

/**
 * A JSON response like Gatehouse's.
 * @param {number} status
 * @param {unknown} [body]
 */
export function json(status, body) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

/** @param {string} [reason] */
export function unauthenticated(reason = 'no_session') {
  return json(401, { error: 'unauthenticated', reason, login_url: '/bff/login' });
}

/**
 * A fake `location` that records navigations.
 * @param {string} [href]
 */
export function fakeLocation(href = 'https://app.example/orders?id=1#top') {
  const url = new URL(href);
  return {
    href: url.href,
    origin: url.origin,
    pathname: url.pathname,
    search: url.search,
    hash: url.hash,
    /** @type {string[]} */
    assigned: [],
    /** @param {string} target */
    assign(target) {
      this.assigned.push(target);
    },
  };
}

/**
 * @typedef {object} Call
 * @property {RequestInfo | URL} input
 * @property {RequestInit | undefined} init
 * @property {string} url
 * @property {string} method
 * @property {Headers} headers the headers the request would carry
 */

/**
 * A fake fetch that records calls and answers with `handler(call)`.
 * @param {(call: Call) => Response | Promise<Response>} [handler]
 */
export function fakeFetch(handler = () => json(200, { ok: true })) {
  /** @type {Call[]} */
  const calls = [];
  /**
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   */
  const fetch = async (input, init) => {
    const request = typeof input === 'object' && 'url' in input ? input : undefined;
    const call = {
      input,
      init,
      url: typeof input === 'string' ? input : request ? request.url : String(input),
      method: init?.method ?? request?.method ?? 'GET',
      headers: new Headers(init?.headers !== undefined ? init.headers : request?.headers),
    };
    calls.push(call);
    return handler(call);
  };
  return Object.assign(fetch, { calls });
}

/**
 * A `GET /bff/user` body.
 * @param {{sid?: string, expiresIn?: number, idleExpiresIn?: number}} [options]
 */
export function userBody({ sid = 'Q2hhbmdlIG1lIHBsZWFzZQ', expiresIn = 43180, idleExpiresIn = 1800 } = {}) {
  return {
    claims: { sub: '248289761001', name: 'Jane Doe', email: 'jane@example.com', groups: ['staff'] },
    sid,
    session: {
      created_at: '2026-11-22T09:00:00Z',
      expires_at: '2026-11-22T21:00:00Z',
      expires_in: expiresIn,
      idle_expires_in: idleExpiresIn,
    },
    logout_url: `/bff/logout?sid=${sid}`,
  };
}

/**
 * Records the events a client emits.
 * @param {EventTarget} target
 * @param {string[]} [types]
 */
export function recordEvents(target, types = ['sessionend', 'sessionexpiring', 'user']) {
  /** @type {{type: string, detail: any}[]} */
  const events = [];
  for (const type of types) {
    target.addEventListener(type, (event) => events.push({ type, detail: /** @type {any} */ (event).detail }));
  }
  return events;
}

/** Lets pending promise callbacks (and a fake fetch's answer) run. */
export async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}
