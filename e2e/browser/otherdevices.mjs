// Scenario 5: "Sign out all other devices". Two browser profiles sign in as the same user;
// profile A's session list shows both sessions and A ends the other one; B's next action shows
// the signed-out state, and A stays signed in.
import {
  run, newProfile, signIn, callAPI, waitUntil, waitVisible, user, tid, text, isGateway, log, fail,
} from './lib.mjs';

const rows = (page) => page.locator('[data-testid="session-row"]').count();

run(async () => {
  const erin = user(0);
  const a = await newProfile('device A');
  const b = await newProfile('device B');
  const pageA = await a.newPage();
  const pageB = await b.newPage();
  await signIn(pageA, erin);
  await signIn(pageB, erin);

  await pageA.click(tid('sessions-refresh'));
  await waitUntil(pageA, "device A's session list to show both sessions", () => document.querySelectorAll('[data-testid="session-row"]').length === 2);
  const listed = await pageA.locator('[data-testid="session-row"]').allInnerTexts();
  const current = await pageA.locator('[data-testid="session-row"] .chip.ok').count();
  log(`device A lists ${listed.length} sessions`);

  await waitUntil(pageA, 'the "Sign out all other devices" button to be enabled', () => !document.getElementById('sessions-end-others').disabled);
  await pageA.click(tid('sessions-end-others'));
  await waitUntil(pageA, 'device A to report that the other devices are signed out',
    () => document.getElementById('sessions-status').textContent === 'Signed out all other devices.');
  const rowsAfter = await rows(pageA);

  // Device B's next action: an API call.
  const mark = b.events.length;
  await pageB.click(tid('call-api'));
  await waitVisible(pageB, tid('signed-out'), 'device B to show the signed-out state');
  const message = await text(pageB, 'signed-out-message');
  const apiB = b.events.slice(mark).find((e) => e.type === 'response' && isGateway(e.url) && new URL(e.url).pathname === '/api/me');

  // Device A is untouched.
  const apiA = await callAPI(pageA, 'call-api');
  if (!apiA.signedIn) fail('device A was signed out too');

  return {
    listed: listed.length,
    currentMarked: current,
    rowsAfter,
    deviceB: { apiStatus: apiB?.status ?? null, message },
    deviceA: { apiStatus: apiA.status, stillSignedIn: apiA.signedIn },
    pageErrors: [...a.pageErrors, ...b.pageErrors],
  };
});
