// Scenario 7: a new login ends the previous session, with the provider on another site
// (Gatehouse at http://127.0.0.1, the provider at http://localhost: different sites). The
// SameSite=Strict session cookie is not sent on the redirect back to /bff/callback, so the
// callback cannot see the old session; Gatehouse remembers it from /bff/login (a same-site
// navigation that carries the cookie). The user signs in, the old cookie is kept (as a thief
// would), the user signs in again (prompt=login, the provider's login page: a navigation
// started on the provider's site), and the old cookie, put into a fresh browser profile, gets
// 401 at /bff/user.
import {
  run, newProfile, signIn, providerLogin, waitVisible, waitUntil, user, tid, gateway, isGateway, log, check, cfg,
} from './lib.mjs';

const cookieName = '__Host-gatehouse';

async function sessionCookie(profile) {
  const c = (await profile.context.cookies(gateway)).find((k) => k.name === cookieName);
  return c ?? null;
}

run(async () => {
  const u = user(0);
  check(new URL(cfg.issuer).hostname !== new URL(gateway).hostname, 'the provider and gatehouse must be on different sites');
  const profile = await newProfile('browser');
  const page = await profile.newPage();
  await signIn(page, u);
  const first = await sessionCookie(profile);
  check(first, 'no session cookie after the first sign-in');
  log(`first session cookie kept (${first.value.length} characters, SameSite=${first.sameSite})`);

  // Sign in again in the same browser, through the provider's login page.
  const mark = profile.events.length;
  await page.goto(`${gateway}/bff/login?returnUrl=${encodeURIComponent('/')}&prompt=login`);
  await providerLogin(page, u);
  await waitVisible(page, tid('signed-in'), `the SPA to show ${u.name} signed in after the second login`);
  await waitUntil(page, `the user's name (${u.display})`, (name) => document.getElementById('user-name')?.textContent === name, u.display);
  const second = await sessionCookie(profile);
  check(second && second.value !== first.value, 'the second login issued no new session cookie');

  // What the browser sent: /bff/login with the cookie, /bff/callback without it (cross-site).
  const requestOf = (p) => profile.events.slice(mark).find((e) => e.type === 'request' && isGateway(e.url) && new URL(e.url).pathname === p);
  const carried = async (p) => {
    const r = requestOf(p);
    if (!r) return null;
    const h = await r.request.allHeaders();
    return { cookie: new RegExp(`(^|;\\s*)${cookieName}=`).test(h.cookie ?? ''), secFetchSite: h['sec-fetch-site'] ?? null };
  };
  const login = await carried('/bff/login');
  const callback = await carried('/bff/callback');
  log(`/bff/login: ${JSON.stringify(login)}; /bff/callback: ${JSON.stringify(callback)}`);

  // The thief: a fresh profile with the old cookie.
  const thief = await newProfile('thief');
  await thief.context.addCookies([{ ...first }]);
  const tpage = await thief.newPage();
  const oldResp = await tpage.goto(`${gateway}/bff/user`);
  const oldStatus = oldResp.status();
  let oldBody = null;
  try {
    oldBody = JSON.parse(await oldResp.text());
  } catch {
    // not JSON
  }
  log(`/bff/user with the old cookie: ${oldStatus} ${JSON.stringify(oldBody)}`);

  // The browser's own new session works.
  const check2 = await page.evaluate(async () => (await fetch('/bff/user', { headers: { Accept: 'application/json' } })).status);

  return {
    loginCarriedCookie: login?.cookie ?? null,
    callbackCarriedCookie: callback?.cookie ?? null,
    callbackSecFetchSite: callback?.secFetchSite ?? null,
    oldCookieStatus: oldStatus,
    oldCookieBody: oldBody,
    newCookieStatus: check2,
    pageErrors: profile.pageErrors,
  };
});
