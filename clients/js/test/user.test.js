import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient, GatehouseError } from '../gatehouse.js';
import { fakeFetch, fakeLocation, json, recordEvents, unauthenticated, userBody } from './helpers.js';

/**
 * @param {Parameters<typeof fakeFetch>[0]} handler
 * @param {object} [options]
 */
function setup(handler, options = {}) {
  const fetch = fakeFetch(handler);
  const location = fakeLocation();
  let unauthenticatedCalls = 0;
  const gh = createClient({ fetch, location, onUnauthenticated: () => unauthenticatedCalls++, ...options });
  return { gh, fetch, location, unauthenticatedCalls: () => unauthenticatedCalls };
}

test('getUser returns the user and emits "user"', async (t) => {
  const body = userBody();
  const { gh, fetch } = setup(() => json(200, body));
  t.after(() => gh.dispose());
  const events = recordEvents(gh);
  assert.equal(gh.user, null);
  const user = await gh.getUser();
  assert.deepEqual(user, body);
  assert.deepEqual(gh.user, body);
  assert.deepEqual(events, [{ type: 'user', detail: body }]);

  const [call] = fetch.calls;
  assert.equal(call.url, '/bff/user');
  assert.equal(call.method, 'GET');
  assert.equal(call.headers.get('Accept'), 'application/json');
  assert.equal(call.headers.get('X-CSRF'), '1');
  assert.equal(call.init?.credentials, 'same-origin');
});

test('getUser({slide: false}) asks without sliding', async (t) => {
  const { gh, fetch } = setup(() => json(200, userBody()));
  t.after(() => gh.dispose());
  await gh.getUser({ slide: false });
  await gh.getUser({ slide: true });
  await gh.getUser({});
  assert.deepEqual(
    fetch.calls.map((c) => c.url),
    ['/bff/user?slide=false', '/bff/user', '/bff/user'],
  );
});

test('getUser honours basePath (trailing slash or not)', async (t) => {
  const { gh, fetch } = setup(() => json(200, userBody()), { basePath: '/auth/' });
  t.after(() => gh.dispose());
  await gh.getUser();
  assert.equal(fetch.calls[0].url, '/auth/user');
});

test('getUser returns null on 401 without calling onUnauthenticated', async () => {
  const { gh, location, unauthenticatedCalls } = setup(() => unauthenticated());
  const events = recordEvents(gh);
  assert.equal(await gh.getUser(), null);
  assert.equal(unauthenticatedCalls(), 0);
  assert.deepEqual(location.assigned, []);
  assert.deepEqual(events, [], 'anonymous is a normal state: no sessionend');
});

test('getUser emits sessionend when a known user is gone', async () => {
  const answers = [json(200, userBody()), unauthenticated('session_revoked'), unauthenticated()];
  const { gh, location, unauthenticatedCalls } = setup(() => /** @type {Response} */ (answers.shift()));
  const events = recordEvents(gh, ['sessionend']);
  assert.notEqual(await gh.getUser(), null);
  assert.equal(await gh.getUser(), null);
  assert.equal(gh.user, null);
  assert.deepEqual(events, [{ type: 'sessionend', detail: { reason: 'session_revoked', loginUrl: '/bff/login' } }]);
  assert.equal(await gh.getUser(), null);
  assert.equal(events.length, 1, 'only once');
  assert.equal(unauthenticatedCalls(), 0);
  assert.deepEqual(location.assigned, []);
});

test('a 401 without a JSON body is still null, and sessionend falls back to defaults', async () => {
  const answers = [json(200, userBody()), new Response('', { status: 401 })];
  const { gh } = setup(() => /** @type {Response} */ (answers.shift()));
  const events = recordEvents(gh, ['sessionend']);
  await gh.getUser();
  assert.equal(await gh.getUser(), null);
  assert.deepEqual(events, [{ type: 'sessionend', detail: { reason: 'unauthenticated', loginUrl: '/bff/login' } }]);
});

test('getUser throws GatehouseError on other statuses', async () => {
  const answers = [
    json(503, { error: 'unavailable', reason: 'store_unavailable' }),
    new Response('<h1>oops</h1>', { status: 500, headers: { 'content-type': 'text/html' } }),
    new Response('not json', { status: 200, headers: { 'content-type': 'application/json' } }),
  ];
  const { gh, unauthenticatedCalls } = setup(() => /** @type {Response} */ (answers.shift()));
  const events = recordEvents(gh);

  const first = await gh.getUser().catch((e) => e);
  assert.ok(first instanceof GatehouseError);
  assert.ok(first instanceof Error);
  assert.equal(first.name, 'GatehouseError');
  assert.equal(first.status, 503);
  assert.equal(first.code, 'unavailable');
  assert.equal(first.reason, 'store_unavailable');
  assert.deepEqual(first.body, { error: 'unavailable', reason: 'store_unavailable' });
  assert.match(first.message, /503 unavailable \(store_unavailable\)/);

  const second = await gh.getUser().catch((e) => e);
  assert.ok(second instanceof GatehouseError);
  assert.equal(second.status, 500);
  assert.equal(second.code, null);
  assert.equal(second.reason, null);

  const third = await gh.getUser().catch((e) => e);
  assert.ok(third instanceof GatehouseError);
  assert.equal(third.status, 200);

  assert.equal(unauthenticatedCalls(), 0);
  assert.deepEqual(events, []);
});

test('getUser rejects on network errors', async () => {
  const failure = new TypeError('fetch failed');
  const { gh } = setup(() => {
    throw failure;
  });
  await assert.rejects(gh.getUser(), (error) => error === failure);
});
