import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../gatehouse.js';
import { fakeFetch, fakeLocation, json, recordEvents, unauthenticated } from './helpers.js';

/** @param {Parameters<typeof fakeFetch>[0]} [handler] */
function setup(handler, options = {}) {
  const fetch = fakeFetch(handler);
  const location = fakeLocation();
  const gh = createClient({ fetch, location, ...options });
  return { gh, fetch, location };
}

test('relative and same-origin URLs get the CSRF header and same-origin credentials', async () => {
  const { gh, fetch } = setup();
  const inputs = [
    '/api/orders',
    'api/orders',
    '../api/orders?x=1',
    'https://app.example/api/orders',
    new URL('https://app.example/api/orders'),
    new Request('https://app.example/api/orders'),
  ];
  for (const input of inputs) await gh.fetch(input);
  assert.equal(fetch.calls.length, inputs.length);
  for (const call of fetch.calls) {
    assert.equal(call.headers.get('X-CSRF'), '1', `CSRF header for ${call.url}`);
    assert.equal(call.init?.credentials, 'same-origin', `credentials for ${call.url}`);
  }
  // The input itself is passed on unchanged.
  assert.deepEqual(
    fetch.calls.map((c) => c.input),
    inputs,
  );
});

test('cross-origin URLs are passed through untouched', async () => {
  const { gh, fetch } = setup();
  const init = { method: 'POST', headers: { 'X-Trace': 't' }, body: 'x' };
  await gh.fetch('https://api.other.example/data');
  await gh.fetch('//evil.example/data');
  await gh.fetch('http://app.example/api'); // other scheme
  await gh.fetch('https://app.example:8443/api'); // other port
  await gh.fetch(new URL('https://sub.app.example/api'));
  await gh.fetch('https://api.other.example/data', init);
  await gh.fetch(new Request('https://api.other.example/data', { headers: { 'X-Trace': 'r' } }));
  for (const call of fetch.calls) {
    assert.equal(call.headers.has('X-CSRF'), false, `no CSRF header for ${call.url}`);
    assert.equal(call.init?.credentials, undefined, `credentials untouched for ${call.url}`);
  }
  assert.equal(fetch.calls[0].init, undefined);
  assert.equal(fetch.calls[5].init, init, 'init object passed as given');
  assert.equal(fetch.calls[6].headers.get('X-Trace'), 'r');
});

test('headers given as object, array or Headers are merged, never overridden', async () => {
  const { gh, fetch } = setup();
  await gh.fetch('/api/a', { headers: { 'Content-Type': 'application/json', 'X-Trace': 'obj' } });
  await gh.fetch('/api/b', { headers: [['X-Trace', 'arr'], ['Accept', 'text/plain']] });
  await gh.fetch('/api/c', { headers: new Headers({ 'X-Trace': 'hdr' }) });
  await gh.fetch('/api/d', { headers: { 'x-csrf': 'explicit' } });
  await gh.fetch('/api/e', { headers: [['X-CSRF', 'from-array']] });
  await gh.fetch(new Request('https://app.example/api/f', { headers: { 'X-Trace': 'req', 'X-CSRF': 'req' } }));
  await gh.fetch(new Request('https://app.example/api/g', { headers: { 'X-Trace': 'req' } }));

  const [a, b, c, d, e, f, g] = fetch.calls.map((call) => call.headers);
  assert.equal(a.get('content-type'), 'application/json');
  assert.equal(a.get('x-trace'), 'obj');
  assert.equal(a.get('x-csrf'), '1');
  assert.equal(b.get('x-trace'), 'arr');
  assert.equal(b.get('accept'), 'text/plain');
  assert.equal(b.get('x-csrf'), '1');
  assert.equal(c.get('x-trace'), 'hdr');
  assert.equal(c.get('x-csrf'), '1');
  assert.equal(d.get('x-csrf'), 'explicit');
  assert.equal(e.get('x-csrf'), 'from-array');
  assert.equal(f.get('x-trace'), 'req');
  assert.equal(f.get('x-csrf'), 'req');
  assert.equal(g.get('x-trace'), 'req', "a Request's own headers are kept");
  assert.equal(g.get('x-csrf'), '1');
});

test('other init fields are kept, explicit credentials win', async () => {
  const { gh, fetch } = setup();
  const signal = new AbortController().signal;
  await gh.fetch('/api/orders', { method: 'PUT', body: '{"a":1}', signal, cache: 'no-store' });
  await gh.fetch('/api/orders', { credentials: 'include' });
  await gh.fetch(new Request('https://app.example/api', { credentials: 'omit' }));
  const [first, second, third] = fetch.calls;
  assert.equal(first.init?.method, 'PUT');
  assert.equal(first.init?.body, '{"a":1}');
  assert.equal(first.init?.signal, signal);
  assert.equal(first.init?.cache, 'no-store');
  assert.equal(second.init?.credentials, 'include');
  assert.equal(third.init?.credentials, 'omit');
});

test('custom CSRF header name and value', async () => {
  const { gh, fetch } = setup(undefined, { csrfHeader: 'X-Requested-By', csrfValue: 'spa' });
  await gh.fetch('/api/orders');
  assert.equal(fetch.calls[0].headers.get('X-Requested-By'), 'spa');
  assert.equal(fetch.calls[0].headers.has('X-CSRF'), false);
});

test('401 unauthenticated: sessionend, onUnauthenticated, and the response still resolves readable', async () => {
  /** @type {any[]} */
  const infos = [];
  const { gh, location } = setup(() => unauthenticated('session_expired'), {
    onUnauthenticated: (/** @type {any} */ info) => infos.push(info),
  });
  const events = recordEvents(gh);
  const response = await gh.fetch('/api/orders');
  assert.equal(response.status, 401);
  assert.deepEqual(await response.json(), {
    error: 'unauthenticated',
    reason: 'session_expired',
    login_url: '/bff/login',
  });
  assert.deepEqual(events, [{ type: 'sessionend', detail: { reason: 'session_expired', loginUrl: '/bff/login' } }]);
  assert.equal(infos.length, 1);
  assert.equal(infos[0].reason, 'session_expired');
  assert.equal(infos[0].loginUrl, '/bff/login');
  assert.equal(infos[0].response, response);
  assert.deepEqual(location.assigned, [], 'a custom handler replaces the default redirect');
});

test('401 unauthenticated: by default the browser goes to login and comes back here', async () => {
  const { gh, location } = setup(() => unauthenticated());
  await gh.fetch('/api/orders');
  assert.deepEqual(location.assigned, ['/bff/login?returnUrl=%2Forders%3Fid%3D1%23top']);
});

test('onUnauthenticated: null only emits sessionend', async () => {
  const { gh, location } = setup(() => unauthenticated(), { onUnauthenticated: null });
  const events = recordEvents(gh);
  const response = await gh.fetch('/api/orders');
  assert.equal(response.status, 401);
  assert.equal(events.length, 1);
  assert.deepEqual(location.assigned, []);
});

test('a throwing onUnauthenticated is reported, not turned into a rejection', async () => {
  const boom = new Error('handler failed');
  /** @type {unknown[]} */
  const reported = [];
  const original = Object.getOwnPropertyDescriptor(globalThis, 'reportError');
  Object.defineProperty(globalThis, 'reportError', {
    value: (/** @type {unknown} */ e) => reported.push(e),
    configurable: true,
    writable: true,
  });
  try {
    const { gh } = setup(() => unauthenticated(), {
      onUnauthenticated: () => {
        throw boom;
      },
    });
    const response = await gh.fetch('/api/orders');
    assert.equal(response.status, 401);
    assert.deepEqual(reported, [boom]);
  } finally {
    if (original) Object.defineProperty(globalThis, 'reportError', original);
    else delete (/** @type {any} */ (globalThis).reportError);
  }
});

test('other 401s and cross-origin 401s do not end the session', async () => {
  let called = 0;
  const answers = [
    json(401, { error: 'invalid_token' }),
    new Response('no', { status: 401, headers: { 'content-type': 'text/plain' } }),
    new Response('{"error":"unauthenticated"}', { status: 401 }), // not labelled JSON
    unauthenticated(), // but from another origin
  ];
  const { gh, location } = setup(() => /** @type {Response} */ (answers.shift()), {
    onUnauthenticated: () => called++,
  });
  const events = recordEvents(gh);
  await gh.fetch('/api/a');
  await gh.fetch('/api/b');
  await gh.fetch('/api/c');
  await gh.fetch('https://api.other.example/d');
  assert.equal(called, 0);
  assert.deepEqual(events, []);
  assert.deepEqual(location.assigned, []);
});

test('network errors reject like fetch', async () => {
  const failure = new TypeError('fetch failed');
  const { gh } = setup(() => {
    throw failure;
  });
  const events = recordEvents(gh);
  await assert.rejects(gh.fetch('/api/orders'), (error) => error === failure);
  await assert.rejects(gh.fetch('https://api.other.example/'), (error) => error === failure);
  assert.deepEqual(events, []);
});

test('without a location only relative URLs count as same-origin', async () => {
  const fetch = fakeFetch();
  const gh = createClient({ fetch });
  await gh.fetch('/api/orders');
  await gh.fetch('api/orders');
  await gh.fetch('https://app.example/api/orders');
  await gh.fetch('//app.example/api/orders');
  assert.deepEqual(
    fetch.calls.map((c) => c.headers.get('X-CSRF')),
    ['1', '1', null, null],
  );
});

test('the default fetch is globalThis.fetch, called with globalThis as this', async () => {
  const original = globalThis.fetch;
  /** @type {any[]} */
  const seen = [];
  globalThis.fetch = /** @type {typeof fetch} */ (
    async function (/** @type {any} */ input, /** @type {any} */ init) {
      // eslint-disable-next-line no-invalid-this
      seen.push({ self: this, input, init });
      return json(200, {});
    }
  );
  try {
    const gh = createClient({ location: fakeLocation() });
    await gh.fetch('/api/orders');
    assert.equal(seen.length, 1);
    assert.equal(seen[0].self, globalThis);
    assert.equal(new Headers(seen[0].init.headers).get('X-CSRF'), '1');
  } finally {
    globalThis.fetch = original;
  }
});
