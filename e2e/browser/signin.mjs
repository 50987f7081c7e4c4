// Scenario 1: sign in through the provider's real login page; the first page load after the
// callback is already authenticated (the SameSite=Strict cookie is sent on the navigation the
// callback page starts: no login loop); a reload keeps the user signed in; the API, the
// client-credentials API and the admin API answer; the live feed receives events.
// Also takes the signed-in screenshot (e2e/artifacts/<provider>-signed-in.png).
import {
  run, newProfile, signIn, callAPI, feedState, lastTick, waitUntil, waitVisible, screenshot, snapshot,
  user, tid, text, gateway, isGateway, maxConcurrentStreams, statusLog, feedLog, log, check, fail,
} from './lib.mjs';

run(async () => {
  const alice = user(0);
  const profile = await newProfile('browser');
  const page = await profile.newPage();

  await signIn(page, alice);

  // The network log of the login: callback → the callback page's navigation → /bff/user.
  const ev = profile.events;
  const callback = ev.findIndex((e) => e.type === 'request' && isGateway(e.url) && new URL(e.url).pathname === '/bff/callback');
  check(callback >= 0, 'the browser never requested /bff/callback');
  const callbackResponse = ev.find((e, i) => i > callback && e.type === 'response' && e.url === ev[callback].url);
  const nav = ev.findIndex((e, i) => i > callback && e.type === 'request' && e.resourceType === 'document');
  check(nav >= 0, 'no page load followed /bff/callback');
  const navHeaders = await ev[nav].request.allHeaders();
  const firstUser = ev.find((e, i) => i > nav && e.type === 'response' && isGateway(e.url) && new URL(e.url).pathname === '/bff/user');
  const firstLoad = {
    callbackStatus: callbackResponse?.status ?? null,
    url: ev[nav].url,
    sameOrigin: isGateway(ev[nav].url),
    carriedSessionCookie: /(^|;\s*)__Host-gatehouse=/.test(navHeaders.cookie ?? ''),
    secFetchSite: navHeaders['sec-fetch-site'] ?? null,
    firstUserStatus: firstUser?.status ?? null,
  };
  const countLogins = () => profile.events.filter((e) => e.type === 'request' && isGateway(e.url) && new URL(e.url).pathname === '/bff/login').length;
  const loginsAfterSignIn = countLogins();
  log(`first page load after the callback: ${JSON.stringify(firstLoad)}`);

  const shown = {
    name: await text(page, 'user-name'),
    email: await text(page, 'user-email'),
    sub: await text(page, 'user-sub'),
    groups: await page.locator('#user-groups .chip').allTextContents(),
    whoami: await text(page, 'whoami-name'),
  };

  // Reload: still signed in, without going to the provider again.
  const before = profile.events.length;
  await page.reload();
  await waitVisible(page, tid('signed-in'), 'the SPA to be signed in after a reload');
  const reloadUser = profile.events.slice(before).find((e) => e.type === 'response' && isGateway(e.url) && new URL(e.url).pathname === '/bff/user');
  const reload = { signedIn: true, userStatus: reloadUser?.status ?? null, name: await text(page, 'user-name') };

  // APIs through gatehouse.
  const api = await callAPI(page, 'call-api');
  log(`GET /api/me: ${api.status} fingerprint ${api.fingerprint}`);
  const client = await callAPI(page, 'call-client');
  log(`GET /client/status: ${client.status}`);
  const admin = await callAPI(page, 'call-admin');
  log(`GET /api/admin: ${admin.status}`);
  await callAPI(page, 'call-api'); // the API result on the screenshot

  // The live feed: a streamed fetch of /api/events.
  await waitUntil(page, 'the live feed to show three events', () => document.querySelectorAll('#feed-events li:not(.stream-start)').length >= 3, undefined, 20000);
  const feed = await feedState(page);
  await waitUntil(page, 'the session list', () => document.querySelectorAll('[data-testid="session-row"]').length >= 1);
  await snapshot(page, 'signed in');
  const shot = await screenshot(page, 'signed-in');
  const t0 = profile.events[0]?.t ?? 0;
  const lines = (await feedLog(page)).map((l) => ({ ...l, t: (l.t - t0) / 1000 }));

  if (profile.pageErrors.length) fail(`script errors on the page: ${profile.pageErrors.join(' | ')}`);
  return {
    firstLoad,
    loginRequests: loginsAfterSignIn,
    loginRequestsAfterReload: countLogins(),
    shown,
    reload,
    api: { status: api.status, sub: api.body?.claims?.sub, fingerprint: api.fingerprint, kind: api.body?.token?.kind },
    client: { status: client.status, clientId: client.body?.client_id, scope: client.body?.scope, kind: client.body?.token?.kind },
    admin: { status: admin.status, message: admin.body?.message },
    feed: { status: feed.status, ticks: feed.ticks.length, lastTick: lastTick(feed), fingerprint: feed.fingerprint, streamStarts: feed.streamStarts },
    maxConcurrentStreams: maxConcurrentStreams(profile),
    feedLog: lines,
    statusLog: await statusLog(page),
    screenshot: shot,
    gateway,
  };
});
