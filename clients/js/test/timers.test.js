import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../gatehouse.js';
import { fakeFetch, fakeLocation, json, recordEvents, settle, unauthenticated, userBody } from './helpers.js';

const S = 1000; // ms per second

/**
 * A client whose fake Gatehouse answers from `routes` (path → response factory), with mocked
 * setTimeout and Date starting at 0.
 * @param {import('node:test').TestContext} t
 * @param {Record<string, () => Response>} routes
 * @param {object} [options]
 */
function setup(t, routes, options = {}) {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const fetch = fakeFetch((call) => {
    const route = routes[call.url];
    if (!route) throw new Error(`unexpected request ${call.url}`);
    return route();
  });
  const gh = createClient({ fetch, location: fakeLocation(), onUnauthenticated: null, ...options });
  t.after(() => gh.dispose());
  const events = recordEvents(gh, ['sessionend', 'sessionexpiring']);
  return { gh, fetch, events };
}

/**
 * Advances the mocked clock and lets the client's async work run.
 * @param {import('node:test').TestContext} t
 * @param {number} ms
 */
async function advance(t, ms) {
  t.mock.timers.tick(ms);
  await settle();
}

test('sessionexpiring fires expiringThreshold seconds before the idle expiry', async (t) => {
  const { gh, events } = setup(t, { '/bff/user': () => json(200, userBody({ expiresIn: 43180, idleExpiresIn: 1800 })) });
  await gh.getUser();
  await advance(t, 1740 * S - 1);
  assert.deepEqual(events, []);
  await advance(t, 1);
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 60, idle: true } }]);
});

test('the absolute expiry counts when it comes first; the threshold is configurable', async (t) => {
  const { gh, events } = setup(
    t,
    { '/bff/user': () => json(200, userBody({ expiresIn: 300, idleExpiresIn: 1800 })) },
    { expiringThreshold: 120 },
  );
  await gh.getUser();
  await advance(t, 180 * S - 1);
  assert.deepEqual(events, []);
  await advance(t, 1);
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 120, idle: false } }]);
});

test('at expiry the client checks without sliding and emits sessionend when the session is gone', async (t) => {
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ idleExpiresIn: 600 })),
    '/bff/user?slide=false': () => unauthenticated('session_expired'),
  };
  const { gh, fetch, events } = setup(t, routes);
  await gh.getUser();
  await advance(t, 600 * S);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionexpiring'],
  );
  assert.equal(fetch.calls.length, 1, 'no check before the expiry (plus grace)');
  await advance(t, 1 * S);
  assert.deepEqual(
    fetch.calls.map((c) => c.url),
    ['/bff/user', '/bff/user?slide=false'],
  );
  assert.deepEqual(events[1], { type: 'sessionend', detail: { reason: 'session_expired', loginUrl: '/bff/login' } });
  assert.equal(gh.user, null);

  // Timers are cleared: nothing else happens.
  await advance(t, 100_000 * S);
  assert.equal(events.length, 2);
  assert.equal(fetch.calls.length, 2);
});

test('a session kept alive elsewhere is rescheduled from the fresh numbers', async (t) => {
  let check = 0;
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ idleExpiresIn: 600 })),
    // Another tab was active: 300 s of idle time left.
    '/bff/user?slide=false': () =>
      check++ === 0 ? json(200, userBody({ idleExpiresIn: 300 })) : unauthenticated('session_expired'),
  };
  const { gh, events } = setup(t, routes);
  await gh.getUser();
  await advance(t, 601 * S);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionexpiring'],
  );
  assert.notEqual(gh.user, null);
  await advance(t, 240 * S);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionexpiring', 'sessionexpiring'],
    'expiring again before the new deadline',
  );
  await advance(t, 61 * S);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionexpiring', 'sessionexpiring', 'sessionend'],
  );
});

test('a successful gh.fetch restarts the idle timer; failed and cross-origin ones do not', async (t) => {
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ idleExpiresIn: 1800 })),
    '/api/ok': () => json(200, {}),
    '/api/fail': () => json(500, { error: 'boom' }),
    'https://api.other.example/x': () => json(200, {}),
  };
  const { gh, events } = setup(t, routes);
  await gh.getUser();
  await advance(t, 1000 * S);
  await gh.fetch('/api/ok'); // idle now ends at 2800 s
  await advance(t, 500 * S);
  await gh.fetch('/api/fail'); // would move it to 3300 s if it counted
  await gh.fetch('https://api.other.example/x'); // not through Gatehouse
  await advance(t, 1239 * S); // 2739 s
  assert.deepEqual(events, [], 'not at 1740 s any more');
  await advance(t, 1 * S); // 2740 s = 1000 + 1800 - 60
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 60, idle: true } }]);
});

test('a non-sliding read does not shrink the idle window that activity restarts', async (t) => {
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ idleExpiresIn: 1800 })),
    '/bff/user?slide=false': () => json(200, userBody({ idleExpiresIn: 1700 })),
    '/api/ok': () => json(200, {}),
  };
  const { gh, events } = setup(t, routes);
  await gh.getUser();
  await advance(t, 100 * S);
  await gh.getUser({ slide: false });
  await gh.fetch('/api/ok'); // idle ends at 100 + 1800 s, not 100 + 1700 s
  await advance(t, 1739 * S); // 1839 s
  assert.deepEqual(events, []);
  await advance(t, 1 * S);
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 60, idle: true } }]);
});

test('activity does not extend beyond the absolute expiry', async (t) => {
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ expiresIn: 1000, idleExpiresIn: 1800 })),
    '/api/ok': () => json(200, {}),
  };
  const { gh, events } = setup(t, routes);
  await gh.getUser();
  await advance(t, 500 * S);
  await gh.fetch('/api/ok');
  await advance(t, 440 * S);
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 60, idle: false } }]);
});

test('a session already within the threshold is announced once, right away', async (t) => {
  const { gh, events } = setup(t, { '/bff/user': () => json(200, userBody({ expiresIn: 30, idleExpiresIn: 1800 })) });
  await gh.getUser();
  assert.deepEqual(events, [], 'asynchronously, so listeners added after getUser() still hear it');
  await advance(t, 0);
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 30, idle: false } }]);
  await gh.getUser();
  await advance(t, 0);
  assert.equal(events.length, 1, 'not again for the same expiry');
});

test('a failed check is retried later', async (t) => {
  let checks = 0;
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ idleExpiresIn: 120 })),
    '/bff/user?slide=false': () =>
      ++checks === 1 ? json(503, { error: 'unavailable', reason: 'store_unavailable' }) : unauthenticated('session_expired'),
  };
  const { gh, events } = setup(t, routes);
  await gh.getUser();
  await advance(t, 121 * S);
  assert.equal(checks, 1);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionexpiring'],
  );
  await advance(t, 30 * S);
  assert.equal(checks, 2);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionexpiring', 'sessionend'],
  );
});

test('sessionend from gh.fetch clears the timers', async (t) => {
  /** @type {Record<string, () => Response>} */
  const routes = {
    '/bff/user': () => json(200, userBody({ idleExpiresIn: 600 })),
    '/api/x': () => unauthenticated('session_revoked'),
  };
  const { gh, fetch, events } = setup(t, routes);
  await gh.getUser();
  await gh.fetch('/api/x');
  await advance(t, 10_000 * S);
  assert.deepEqual(
    events.map((e) => e.type),
    ['sessionend'],
  );
  assert.equal(fetch.calls.length, 2);
});

test('dispose() clears the timers', async (t) => {
  const { gh, fetch, events } = setup(t, { '/bff/user': () => json(200, userBody({ idleExpiresIn: 600 })) });
  await gh.getUser();
  gh.dispose();
  await advance(t, 10_000 * S);
  assert.deepEqual(events, []);
  assert.equal(fetch.calls.length, 1);
  await gh.getUser();
  await advance(t, 10_000 * S);
  assert.deepEqual(events, [], 'a disposed client schedules nothing');
});

test('expiries beyond the setTimeout limit (~24.8 days) are waited for, not fired at once', async (t) => {
  const days40 = 40 * 24 * 3600;
  const { gh, events } = setup(t, {
    '/bff/user': () => {
      const body = /** @type {any} */ (userBody({ expiresIn: days40 }));
      delete body.session.idle_expires_in; // no idle timeout
      return json(200, body);
    },
  });
  // Record the delays asked of (the mocked) setTimeout: none may exceed its 32-bit limit.
  const mocked = globalThis.setTimeout;
  /** @type {number[]} */
  const delays = [];
  globalThis.setTimeout = /** @type {any} */ (
    (/** @type {() => void} */ fn, /** @type {number} */ delay) => {
      delays.push(delay);
      return mocked(fn, delay);
    }
  );
  t.after(() => {
    globalThis.setTimeout = mocked;
  });
  await gh.getUser();
  assert.ok(delays.length > 0);
  assert.ok(Math.max(...delays) <= 2 ** 31 - 1, `delays ${delays}`);
  await advance(t, 1 * S);
  assert.deepEqual(events, []);
  await advance(t, (days40 - 62) * S); // 1 s before expiry - 60 s
  assert.deepEqual(events, []);
  await advance(t, 1 * S);
  assert.deepEqual(events, [{ type: 'sessionexpiring', detail: { expiresIn: 60, idle: false } }]);
  assert.ok(Math.max(...delays) <= 2 ** 31 - 1, `delays ${delays}`);
});
