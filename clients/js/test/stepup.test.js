import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../gatehouse.js';
import { fakeFetch, fakeLocation, json, recordEvents, userBody } from './helpers.js';

/** A 401 step_up_required body as Gatehouse sends it. */
const challenge = {
  error: 'step_up_required',
  reason: 'insufficient_user_authentication',
  acr_values: 'gold',
  max_age: 300,
  login_url: '/bff/login?acr_values=gold&max_age=300&returnUrl=%2Forders%3Fid%3D1',
  request_id: 'req-1',
};

/** @param {Parameters<typeof fakeFetch>[0]} [handler] */
function setup(handler, options = {}) {
  const fetch = fakeFetch(handler);
  const location = fakeLocation();
  const gh = createClient({ fetch, location, ...options });
  return { gh, fetch, location };
}

test('401 step_up_required: stepuprequired, then by default a step-up login back to this page', async () => {
  const { gh, location } = setup((call) =>
    call.url === '/bff/user' ? json(200, userBody()) : json(401, challenge),
  );
  await gh.getUser();
  const events = recordEvents(gh, ['sessionend', 'stepuprequired']);
  const response = await gh.fetch('/api/pay', { method: 'POST' });
  assert.equal(response.status, 401);
  assert.deepEqual(await response.json(), challenge, 'the response is still readable');
  assert.deepEqual(events, [
    {
      type: 'stepuprequired',
      detail: {
        reason: 'insufficient_user_authentication',
        acrValues: 'gold',
        maxAge: 300,
        loginUrl: challenge.login_url,
      },
    },
  ]);
  assert.notEqual(gh.user, null, 'the session does not end');
  assert.deepEqual(location.assigned, ['/bff/login?acr_values=gold&max_age=300&returnUrl=%2Forders%3Fid%3D1%23top']);
});

test('onStepUp replaces the default; null only emits the event', async () => {
  /** @type {any[]} */
  const infos = [];
  const custom = setup(() => json(401, challenge), { onStepUp: (/** @type {any} */ info) => infos.push(info) });
  const response = await custom.gh.fetch('/api/pay');
  assert.equal(infos.length, 1);
  assert.equal(infos[0].acrValues, 'gold');
  assert.equal(infos[0].maxAge, 300);
  assert.equal(infos[0].response, response);
  assert.deepEqual(custom.location.assigned, []);

  const off = setup(() => json(401, challenge), { onStepUp: null });
  const events = recordEvents(off.gh, ['stepuprequired']);
  await off.gh.fetch('/api/pay');
  assert.equal(events.length, 1);
  assert.deepEqual(off.location.assigned, []);
});

test('only acr_values or only max_age: the other stays out of the URL', async () => {
  const { gh, location } = setup(() => json(401, { error: 'step_up_required', max_age: 0 }));
  const events = recordEvents(gh, ['stepuprequired']);
  await gh.fetch('/api/pay');
  assert.deepEqual(events[0].detail, {
    reason: 'insufficient_user_authentication',
    acrValues: null,
    maxAge: 0,
    loginUrl: null,
  });
  assert.deepEqual(location.assigned, ['/bff/login?max_age=0&returnUrl=%2Forders%3Fid%3D1%23top']);
});

test('stepUp takes a detail or the body, and a returnUrl held to a local path', () => {
  const { gh, location } = setup(undefined, { basePath: '/auth/' });
  gh.stepUp({ acrValues: 'gold platinum', maxAge: 60 }, { returnUrl: '/pay?x=1' });
  gh.stepUp(challenge, { returnUrl: 'https://evil.example/' });
  gh.stepUp({ acr_values: 'gold' }, { returnUrl: '//evil.example/' });
  gh.stepUp();
  assert.deepEqual(location.assigned, [
    '/auth/login?acr_values=gold+platinum&max_age=60&returnUrl=%2Fpay%3Fx%3D1',
    '/auth/login?acr_values=gold&max_age=300&returnUrl=%2F',
    '/auth/login?acr_values=gold&returnUrl=%2F',
    '/auth/login?returnUrl=%2Forders%3Fid%3D1%23top',
  ]);
  // The login URL the server suggested is not followed: the client builds its own, below basePath.
  assert.equal(gh.stepUpUrl({ ...challenge, login_url: 'https://evil.example/' }, { returnUrl: '/' }),
    '/auth/login?acr_values=gold&max_age=300&returnUrl=%2F');
  // Malformed values are left out rather than sent.
  assert.equal(gh.stepUpUrl(/** @type {any} */ ({ acrValues: 7, maxAge: -1 }), { returnUrl: '/' }), '/auth/login?returnUrl=%2F');
  assert.equal(gh.stepUpUrl(/** @type {any} */ ({ maxAge: 1.5 }), { returnUrl: '/' }), '/auth/login?returnUrl=%2F');
});

test('step_up_required from another origin, or not as JSON, is left alone', async () => {
  let called = 0;
  const answers = [
    new Response(JSON.stringify(challenge), { status: 401 }), // not labelled JSON
    json(403, challenge), // not a 401
    json(401, challenge), // from another origin
  ];
  const { gh, location } = setup(() => /** @type {Response} */ (answers.shift()), { onStepUp: () => called++ });
  const events = recordEvents(gh, ['stepuprequired', 'sessionend']);
  await gh.fetch('/api/a');
  await gh.fetch('/api/b');
  await gh.fetch('https://api.other.example/c');
  assert.equal(called, 0);
  assert.deepEqual(events, []);
  assert.deepEqual(location.assigned, []);
});

test('a throwing onStepUp is reported, not turned into a rejection', async () => {
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
    const { gh } = setup(() => json(401, challenge), {
      onStepUp: () => {
        throw boom;
      },
    });
    const response = await gh.fetch('/api/pay');
    assert.equal(response.status, 401);
    assert.deepEqual(reported, [boom]);
  } finally {
    if (original) Object.defineProperty(globalThis, 'reportError', original);
    else delete (/** @type {any} */ (globalThis).reportError);
  }
});

test('the default onStepUp does not start the same step-up again within a minute (no login loop)', async () => {
  /** @type {Map<string, string>} */
  const store = new Map();
  const storage = {
    getItem: (/** @type {string} */ k) => store.get(k) ?? null,
    setItem: (/** @type {string} */ k, /** @type {string} */ v) => void store.set(k, v),
  };
  /** @type {unknown[]} */
  const reported = [];
  const saved = ['sessionStorage', 'reportError'].map((name) => [name, Object.getOwnPropertyDescriptor(globalThis, name)]);
  Object.defineProperty(globalThis, 'sessionStorage', { value: storage, configurable: true, writable: true });
  Object.defineProperty(globalThis, 'reportError', {
    value: (/** @type {unknown} */ e) => reported.push(e),
    configurable: true,
    writable: true,
  });
  try {
    // Each page load is a new client; the tab's sessionStorage remembers the last step-up.
    const first = setup(() => json(401, challenge));
    await first.gh.fetch('/api/pay');
    assert.equal(first.location.assigned.length, 1);

    const again = setup(() => json(401, challenge));
    const events = recordEvents(again.gh, ['stepuprequired']);
    await again.gh.fetch('/api/pay');
    assert.deepEqual(again.location.assigned, [], 'the same step-up right after one: no navigation');
    assert.equal(events.length, 1, 'the event still fires');
    assert.equal(reported.length, 1);
    assert.match(String(/** @type {Error} */ (reported[0]).message), /same step-up/);

    again.gh.stepUp(challenge); // an explicit call always navigates
    assert.equal(again.location.assigned.length, 1);

    const other = setup(() => json(401, { ...challenge, max_age: 60 }));
    await other.gh.fetch('/api/pay');
    assert.equal(other.location.assigned.length, 1, 'another step-up is started');

    const record = JSON.parse(/** @type {string} */ (store.get('gatehouse:stepup')));
    store.set('gatehouse:stepup', JSON.stringify({ ...record, at: Date.now() - 61_000 }));
    const later = setup(() => json(401, { ...challenge, max_age: 60 }));
    await later.gh.fetch('/api/pay');
    assert.equal(later.location.assigned.length, 1, 'a minute later the same step-up is started again');
  } finally {
    for (const [name, descriptor] of saved) {
      if (descriptor) Object.defineProperty(globalThis, /** @type {string} */ (name), /** @type {PropertyDescriptor} */ (descriptor));
      else delete (/** @type {any} */ (globalThis))[/** @type {string} */ (name)];
    }
  }
});
