// Step-up (RFC 9470) with the JS client: the page pays through gh.fetch, the API asks for a
// gold login, the client's default onStepUp sends the browser through /bff/login with
// acr_values=gold and back to the same page (query and hash included), and paying then
// works. A user the provider only gives silver ends on Gatehouse's 403 step_up_failed page
// and keeps the session they had. The page is e2e/stepup_test.go's stepUpIndex.
import {
  run, cfg, newProfile, providerLogin, waitUntil, waitVisible, user, gateway, isGateway, log, pageText,
} from './lib.mjs';

const tid = (id) => `[data-testid="${id}"]`;

async function ready(page, what) {
  await waitUntil(page, what, () => document.body?.dataset.ready === '1');
}

function shown(page) {
  return page.evaluate(() => {
    const text = (id) => document.querySelector(`[data-testid="${id}"]`)?.textContent ?? '';
    return {
      who: text('who'),
      acr: text('acr'),
      sid: document.body.dataset.sid ?? '',
      url: location.pathname + location.search + location.hash,
      result: text('result'),
      stepup: JSON.parse(sessionStorage.getItem('stepup') ?? 'null'),
    };
  });
}

async function signIn(page, u, path) {
  await page.goto(`${gateway}${path}`);
  await ready(page, 'the test page (signed out)');
  await page.click(tid('login'));
  await providerLogin(page, u);
  await waitUntil(page, `${u.name} signed in`, (name) => document.body?.dataset.ready === '1'
    && document.querySelector('[data-testid="who"]')?.textContent === name, u.name);
  log(`${u.name} signed in`);
  return shown(page);
}

// The gateway requests of a profile since mark, for one path.
function gatewayEvents(profile, mark, type, pathname) {
  return profile.events.slice(mark).filter((e) => e.type === type && isGateway(e.url) && new URL(e.url).pathname === pathname);
}

run(async () => {
  // Alice can reach gold.
  const alice = user(0);
  const a = await newProfile('alice');
  const page = await a.newPage();
  const before = await signIn(page, alice, '/?item=7#confirm');
  const mark = a.events.length;
  await page.click(tid('pay')); // 401 step_up_required → the client navigates
  await waitVisible(page, 'input[name="password"]', "the provider's login page again, for the step-up");
  const askedAgain = a.events.slice(mark).some((e) => e.type === 'response' && e.status === 200
    && e.url.startsWith(cfg.issuer) && new URL(e.url).pathname.includes('/interaction/'));
  await providerLogin(page, alice);
  await waitUntil(page, 'the test page after the step-up', (origin) => location.origin === origin
    && document.body?.dataset.ready === '1' && document.querySelector('[data-testid="acr"]')?.textContent !== '', new URL(gateway).origin);
  const after = await shown(page);
  const login = gatewayEvents(a, mark, 'request', '/bff/login')[0];
  const callback = gatewayEvents(a, mark, 'response', '/bff/callback')[0];
  log(`step-up: ${login?.url} → callback ${callback?.status}; page shows ${JSON.stringify(after)}`);
  await page.click(tid('pay'));
  await waitUntil(page, 'the answer to Pay', () => {
    const t = document.querySelector('[data-testid="result"]')?.textContent;
    return t && t !== '…';
  });
  const paid = await shown(page);

  // Bob only ever gets silver.
  const bob = user(1);
  const b = await newProfile('bob');
  const bpage = await b.newPage();
  const bBefore = await signIn(bpage, bob, '/');
  const bmark = b.events.length;
  await bpage.click(tid('pay'));
  await providerLogin(bpage, bob);
  await waitUntil(bpage, 'the callback page', () => location.pathname === '/bff/callback' && document.readyState === 'complete');
  const bCallback = gatewayEvents(b, bmark, 'response', '/bff/callback')[0];
  const bPage = await pageText(bpage);
  const bCallbackURL = new URL(bpage.url()).pathname;
  await bpage.goto(`${gateway}/`);
  await ready(bpage, 'the test page after the refused step-up');
  const bAfter = await shown(bpage);
  const pay = await bpage.evaluate(async () => {
    const res = await fetch('/api/pay', { method: 'POST', headers: { 'X-CSRF': '1', Accept: 'application/json' } });
    return { status: res.status, ...(await res.json()) };
  });
  log(`bob: callback ${bCallback?.status}, then ${JSON.stringify(bAfter)}, pay ${JSON.stringify(pay)}`);

  return {
    alice: {
      before,
      loginUrl: login ? new URL(login.url).pathname + new URL(login.url).search : '',
      askedAgain,
      callback: callback?.status ?? 0,
      after,
      paid,
    },
    bob: { before: bBefore, callback: bCallback?.status ?? 0, callbackUrl: bCallbackURL, page: bPage, after: bAfter, pay },
    pageErrors: [...a.pageErrors, ...b.pageErrors],
  };
});
