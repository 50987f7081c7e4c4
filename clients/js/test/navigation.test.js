import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient, GatehouseError } from '../gatehouse.js';
import { fakeFetch, fakeLocation, json, recordEvents, unauthenticated, userBody } from './helpers.js';

/**
 * @param {Parameters<typeof fakeFetch>[0]} [handler]
 * @param {object} [options]
 */
function setup(handler, options = {}) {
  const fetch = fakeFetch(handler);
  const location = fakeLocation('https://app.example/orders/7?tab=items&x=a%20b#lines');
  const gh = createClient({ fetch, location, ...options });
  return { gh, fetch, location };
}

test('login goes to /bff/login and back to the current path, query and hash by default', () => {
  const { gh, location, fetch } = setup();
  gh.login();
  assert.deepEqual(location.assigned, [
    '/bff/login?returnUrl=' + encodeURIComponent('/orders/7?tab=items&x=a%20b#lines'),
  ]);
  assert.equal(fetch.calls.length, 0, 'login is a navigation, not a fetch');
});

test('login with a local returnUrl', () => {
  const { gh, location } = setup(undefined, { basePath: '/auth' });
  gh.login('/orders?id=1&b=2#x');
  assert.deepEqual(location.assigned, ['/auth/login?returnUrl=%2Forders%3Fid%3D1%26b%3D2%23x']);
  assert.equal(gh.loginUrl('/'), '/auth/login?returnUrl=%2F');
  assert.equal(gh.loginUrl('/x', { provider: 'staff & co' }), '/auth/login?provider=staff%20%26%20co&returnUrl=%2Fx');
});

test('login sends only local paths: everything else becomes /', () => {
  const { gh, location } = setup();
  const bad = [
    '//evil',
    '//evil.example/path',
    'https://evil',
    'https://app.example/orders', // absolute, even same-origin
    '/\\evil',
    '\\\\evil',
    'evil',
    'javascript:alert(1)',
    '',
    '/\t/evil',
    '/\n/evil',
    '/ok\u0000',
  ];
  for (const returnUrl of bad) gh.login(returnUrl);
  assert.deepEqual(
    location.assigned,
    bad.map(() => '/bff/login?returnUrl=%2F'),
  );
  assert.equal(gh.loginUrl('/a\\b'), '/bff/login?returnUrl=%2Fa%5Cb', 'a backslash later in the path is fine');
});

test('login without any location throws a TypeError; loginUrl still works', () => {
  const gh = createClient({ fetch: fakeFetch() });
  assert.throws(() => gh.login('/x'), TypeError);
  assert.equal(gh.loginUrl(), '/bff/login?returnUrl=%2F');
});

test('logout posts with CSRF and Accept: application/json, emits sessionend, then navigates', async () => {
  const answers = [
    json(200, userBody()),
    json(200, { redirect_url: 'https://idp.example/logout?id_token_hint=x&state=s' }),
  ];
  /** @type {string[]} */
  const order = [];
  const { gh, fetch, location } = setup(() => /** @type {Response} */ (answers.shift()));
  const originalAssign = location.assign;
  location.assign = function (target) {
    order.push('assign');
    originalAssign.call(this, target);
  };
  gh.addEventListener('sessionend', () => order.push('sessionend'));
  const events = recordEvents(gh, ['sessionend']);
  await gh.getUser();

  await gh.logout();
  const call = fetch.calls[1];
  assert.equal(call.url, '/bff/logout');
  assert.equal(call.method, 'POST');
  assert.equal(call.headers.get('X-CSRF'), '1');
  assert.equal(call.headers.get('Accept'), 'application/json');
  assert.equal(call.init?.credentials, 'same-origin');
  assert.deepEqual(events, [{ type: 'sessionend', detail: { reason: 'logged_out', loginUrl: '/bff/login' } }]);
  assert.deepEqual(order, ['sessionend', 'assign']);
  assert.deepEqual(location.assigned, ['https://idp.example/logout?id_token_hint=x&state=s']);
  assert.equal(gh.user, null);
});

test('logout passes a sanitised returnUrl', async () => {
  const { gh, fetch, location } = setup(() => json(200, { redirect_url: '/bye' }));
  await gh.logout({ returnUrl: '/bye?x=1' });
  await gh.logout({ returnUrl: '//evil' });
  await gh.logout({});
  assert.deepEqual(
    fetch.calls.map((c) => c.url),
    ['/bff/logout?returnUrl=%2Fbye%3Fx%3D1', '/bff/logout?returnUrl=%2F', '/bff/logout'],
  );
  assert.deepEqual(location.assigned, ['/bye', '/bye', '/bye']);
});

test('logout without a usable redirect_url falls back to returnUrl or /', async () => {
  const answers = [
    json(200, {}),
    json(200, { redirect_url: 'javascript:alert(1)' }),
    new Response(null, { status: 200 }),
  ];
  const { gh, location } = setup(() => /** @type {Response} */ (answers.shift()));
  await gh.logout({ returnUrl: '/bye' });
  await gh.logout();
  await gh.logout({ returnUrl: 'https://evil' });
  assert.deepEqual(location.assigned, ['/bye', '/', '/']);
});

test('a failed logout throws and changes nothing', async () => {
  const answers = [
    json(200, userBody()),
    json(403, { error: 'csrf_rejected', reason: 'missing_header' }),
  ];
  const { gh, location } = setup(() => /** @type {Response} */ (answers.shift()));
  await gh.getUser();
  const events = recordEvents(gh, ['sessionend']);
  const error = await gh.logout().catch((e) => e);
  gh.dispose();
  assert.ok(error instanceof GatehouseError);
  assert.equal(error.status, 403);
  assert.equal(error.code, 'csrf_rejected');
  assert.equal(error.reason, 'missing_header');
  assert.deepEqual(events, []);
  assert.deepEqual(location.assigned, []);
  assert.notEqual(gh.user, null);
});

test('sessions() lists the caller\'s sessions', async () => {
  const sessions = [
    { sid: 'a', created_at: 't', last_seen_at: 't', expires_at: 't', user_agent: 'UA', ip: '203.0.113.7', current: true },
    { sid: 'b', created_at: 't', last_seen_at: 't', expires_at: 't', user_agent: 'UA', ip: '203.0.113.8', current: false },
  ];
  const { gh, fetch } = setup(() => json(200, { sessions }));
  assert.deepEqual(await gh.sessions(), sessions);
  assert.equal(fetch.calls[0].url, '/bff/sessions');
  assert.equal(fetch.calls[0].method, 'GET');
  assert.equal(fetch.calls[0].init?.credentials, 'same-origin');
});

test('endSession deletes one session by its encoded sid', async () => {
  const answers = [new Response(null, { status: 204 }), json(404, { error: 'not_found' })];
  const { gh, fetch } = setup(() => /** @type {Response} */ (answers.shift()));
  await gh.endSession('a/b c?d');
  const call = fetch.calls[0];
  assert.equal(call.url, '/bff/sessions/a%2Fb%20c%3Fd');
  assert.equal(call.method, 'DELETE');
  assert.equal(call.headers.get('X-CSRF'), '1');

  const error = await gh.endSession('nope').catch((e) => e);
  assert.ok(error instanceof GatehouseError);
  assert.equal(error.status, 404);
  assert.equal(error.code, 'not_found');
});

test('ending the current session emits sessionend', async () => {
  const answers = [json(200, userBody({ sid: 'current' })), new Response(null, { status: 204 })];
  const { gh } = setup(() => /** @type {Response} */ (answers.shift()));
  await gh.getUser();
  const events = recordEvents(gh, ['sessionend']);
  await gh.endSession('current');
  assert.deepEqual(events, [{ type: 'sessionend', detail: { reason: 'session_revoked', loginUrl: '/bff/login' } }]);
});

test('endOtherSessions deletes the others', async () => {
  const { gh, fetch } = setup(() => new Response(null, { status: 204 }));
  await gh.endOtherSessions();
  assert.equal(fetch.calls[0].url, '/bff/sessions?others=true');
  assert.equal(fetch.calls[0].method, 'DELETE');
  assert.equal(fetch.calls[0].headers.get('X-CSRF'), '1');
});

test('session management without a session: sessionend, onUnauthenticated, then GatehouseError', async () => {
  let infos = 0;
  const { gh } = setup(() => unauthenticated('session_expired'), { onUnauthenticated: () => infos++ });
  const events = recordEvents(gh, ['sessionend']);
  for (const call of [() => gh.sessions(), () => gh.endSession('x'), () => gh.endOtherSessions()]) {
    const error = await call().catch((e) => e);
    assert.ok(error instanceof GatehouseError);
    assert.equal(error.status, 401);
    assert.equal(error.code, 'unauthenticated');
    assert.equal(error.reason, 'session_expired');
  }
  assert.equal(infos, 3);
  assert.equal(events.length, 3);
});
