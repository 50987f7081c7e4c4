// Silent login with the JS client (issue 13): gh.trySilentLogin() runs /bff/silent-login in a
// hidden iframe. Before any login the provider has no session: isLoggedIn false, and no
// Gatehouse session. After an interactive login it is true and a new session exists, also once
// the Gatehouse cookie is gone (the provider's session alone signs the user in). A prompt=none
// page login comes back to the app with ?error=login_required. Pages on another origin of the
// same site and on another site frame /bff/silent-login and listen: they receive no message.
// The page is e2e/silent_test.go's silentIndex.
import http from 'node:http';
import {
  run, newProfile, providerLogin, waitUntil, user, gateway, log, sleep,
} from './lib.mjs';

const tid = (id) => `[data-testid="${id}"]`;

async function ready(page) {
  await waitUntil(page, 'the test page', () => document.body?.dataset.ready === '1');
}

// Clicks "silent" and returns what trySilentLogin resolved and who /bff/user says is signed in.
async function silent(page) {
  await page.evaluate(() => { document.body.dataset.silent = ''; });
  await page.click(tid('silent'));
  await waitUntil(page, 'trySilentLogin to resolve', () => document.body.dataset.silent !== '', undefined, 20000);
  return page.evaluate(() => ({
    result: document.body.dataset.silent,
    who: document.body.dataset.who,
    sid: document.body.dataset.sid,
    frames: document.querySelectorAll('iframe').length,
  }));
}

function attackerServer(host) {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end('<!doctype html><html><head><meta charset="utf-8"><title>Framing</title></head><body></body></html>');
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://${host}:${server.address().port}` }));
  });
}

// In an attacker's page: frame /bff/silent-login and collect every message for a while.
async function frameAndListen(page, gw) {
  return page.evaluate(async (target) => {
    const messages = [];
    window.addEventListener('message', (e) => messages.push({ origin: e.origin, data: JSON.stringify(e.data) }));
    const frame = document.createElement('iframe');
    frame.src = `${target}/bff/silent-login`;
    document.body.append(frame);
    await new Promise((r) => setTimeout(r, 5000));
    return messages;
  }, gw);
}

run(async () => {
  const alice = user(0);
  const profile = await newProfile('alice');
  const page = await profile.newPage();
  await page.goto(`${gateway}/`);
  await ready(page);
  const before = await silent(page);
  log(`before any login: ${JSON.stringify(before)}`);

  // A prompt=none page login comes back to the app with the provider's answer.
  await page.goto(`${gateway}/bff/login?prompt=none&returnUrl=${encodeURIComponent('/?tab=2#top')}`);
  await ready(page);
  const pageLogin = await page.evaluate(() => location.pathname + location.search + location.hash);
  log(`prompt=none page login ended at ${pageLogin}`);

  const attackers = {};
  for (const [label, host] of [['same-site', '127.0.0.1'], ['cross-site', 'localhost']]) {
    const { server, origin } = await attackerServer(host);
    const evil = await profile.newPage();
    await evil.goto(`${origin}/`);
    attackers[label] = { origin, messages: await frameAndListen(evil, gateway) };
    await evil.close();
    server.close();
  }

  // An interactive sign-in: the provider now has a session.
  await page.click(tid('login'));
  await providerLogin(page, alice);
  await page.waitForURL((u) => u.origin === new URL(gateway).origin && u.pathname === '/');
  await ready(page);
  const signedIn = await page.evaluate(() => ({ who: document.body.dataset.who, sid: document.body.dataset.sid }));
  const after = await silent(page);
  log(`after the login: ${JSON.stringify(signedIn)} then silent ${JSON.stringify(after)}`);

  // Without Gatehouse's cookie, the provider's session alone signs alice in again.
  await profile.context.clearCookies({ name: '__Host-gatehouse' });
  await page.reload();
  await ready(page);
  const cookieless = await page.evaluate(() => document.body.dataset.who);
  const again = await silent(page);
  log(`cookie cleared: page shows ${cookieless}; silent ${JSON.stringify(again)}`);

  // The attackers again, now that the provider would answer yes.
  for (const [label, host] of [['same-site', '127.0.0.1'], ['cross-site', 'localhost']]) {
    const { server, origin } = await attackerServer(host);
    const evil = await profile.newPage();
    await evil.goto(`${origin}/`);
    attackers[label].messagesSignedIn = await frameAndListen(evil, gateway);
    await evil.close();
    server.close();
  }
  await sleep(100);
  return { before, pageLogin, signedIn, after, cookieless, again, attackers, pageErrors: profile.pageErrors };
});
