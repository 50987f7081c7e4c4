// Scenario 2: no token is reachable from page scripts. Signs in, uses the SPA (API calls,
// live feed, sessions), reads everything a script can read (document.cookie, localStorage,
// sessionStorage, every IndexedDB database, Cache Storage) and the browser's cookie jar, then
// signs out through the SPA (RP-initiated logout at the provider, which is where the ID token
// travels once, as id_token_hint) and reads it all again. The Go test compares all of it, and
// the traffic every scenario recorded, with the tokens the provider issued.
// Takes e2e/artifacts/<provider>-signed-out.png.
import {
  run, newProfile, signIn, callAPI, waitUntil, waitVisible, snapshot, screenshot, cfg,
  user, tid, text, log, fail,
} from './lib.mjs';

// Everything page scripts can read, from inside the page.
async function readable() {
  const out = { documentCookie: document.cookie, localStorage: {}, sessionStorage: {}, indexedDB: [], caches: [] };
  for (let i = 0; i < localStorage.length; i++) out.localStorage[localStorage.key(i)] = localStorage.getItem(localStorage.key(i));
  for (let i = 0; i < sessionStorage.length; i++) out.sessionStorage[sessionStorage.key(i)] = sessionStorage.getItem(sessionStorage.key(i));
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open(info.name, info.version);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const stores = {};
    for (const name of db.objectStoreNames) {
      stores[name] = await new Promise((resolve) => {
        const req = db.transaction(name).objectStore(name).getAll();
        req.onsuccess = () => resolve(JSON.stringify(req.result));
        req.onerror = () => resolve(`error: ${req.error}`);
      });
    }
    db.close();
    out.indexedDB.push({ name: info.name, stores });
  }
  if (globalThis.caches) {
    for (const key of await caches.keys()) {
      const cache = await caches.open(key);
      const entries = [];
      for (const req of await cache.keys()) entries.push({ url: req.url, body: await (await cache.match(req)).text() });
      out.caches.push({ name: key, entries });
    }
  }
  return out;
}

const cookieFacts = (cookies) => cookies.map((c) => ({
  name: c.name, value: c.value, domain: c.domain, path: c.path, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite,
}));

run(async () => {
  const bob = user(0);
  const profile = await newProfile('browser');
  const page = await profile.newPage();
  await signIn(page, bob);

  const api = await callAPI(page, 'call-api');
  const client = await callAPI(page, 'call-client');
  const admin = await callAPI(page, 'call-admin'); // bob is not an admin: 403 from gatehouse
  await waitUntil(page, 'three live feed events', () => document.querySelectorAll('#feed-events li:not(.stream-start)').length >= 3, undefined, 20000);
  await page.click(tid('sessions-refresh'));
  await waitUntil(page, 'the session list', () => document.querySelectorAll('[data-testid="session-row"]').length >= 1);
  await snapshot(page, 'signed in');

  const signedIn = { page: await page.evaluate(readable), cookies: cookieFacts(await profile.context.cookies()) };
  log(`signed in: document.cookie=${JSON.stringify(signedIn.page.documentCookie)}, ${signedIn.page.indexedDB.length} IndexedDB databases, cookies: ${signedIn.cookies.map((c) => c.name).join(', ')}`);

  // Sign out through the SPA: gatehouse ends the session and sends the browser to the
  // provider's end-session endpoint (oidc-provider asks for a confirmation).
  await page.click(tid('logout'));
  if (cfg.provider === 'oidc-provider') {
    await waitVisible(page, '#logout-yes', "oidc-provider's sign-out confirmation");
    await page.click('#logout-yes');
  }
  await waitVisible(page, tid('signed-out'), 'the SPA to be signed out after "Sign out"');
  const message = await text(page, 'signed-out-message');
  await snapshot(page, 'signed out');
  const shot = await screenshot(page, 'signed-out');
  const signedOut = { page: await page.evaluate(readable), cookies: cookieFacts(await profile.context.cookies()) };
  if (profile.pageErrors.length) fail(`script errors on the page: ${profile.pageErrors.join(' | ')}`);

  return {
    api: { status: api.status }, client: { status: client.status }, admin: { status: admin.status, explain: admin.explain },
    signedIn, signedOut, signedOutMessage: message, finalURL: page.url(), screenshot: shot,
  };
});
