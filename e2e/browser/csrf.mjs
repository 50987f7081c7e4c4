// Scenario 6: cross-origin attacks. The victim is signed in (the SPA open in a tab, its live
// feed paused so that it makes no requests of its own); in the same browser profile, pages
// from two attacker origins try to read from and act on the gateway:
//   same-site:  http://127.0.0.1:<other port>  (another origin of the same site: the
//               SameSite=Strict cookie IS sent; the CSRF header and fetch metadata must hold)
//   cross-site: http://localhost:<port>         (another site: the cookie is not even sent)
// Nothing may be readable by the attacker, the victim's session must survive unchanged, and the
// demo API must receive no request during the attacks.
import http from 'node:http';
import {
  run, newProfile, signIn, callAPI, waitUntil, sleep, user, tid, gateway, isGateway, apiRequests, log, fail,
} from './lib.mjs';

function attackerServer(host) {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end('<!doctype html><html><head><meta charset="utf-8"><title>Win a prize</title></head><body><h1>Totally harmless page</h1></body></html>');
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://${host}:${server.address().port}` }));
  });
}

// Runs in the attacker's page: every attempt reports whether the page could read anything.
async function attack(gw) {
  const results = [];
  const attempt = async (name, fn) => {
    try {
      results.push({ name, ...(await fn()) });
    } catch (e) {
      results.push({ name, readable: false, outcome: `rejected: ${e.name}: ${e.message}` });
    }
  };
  const readFetch = async (url, init) => {
    const res = await fetch(url, init);
    const body = await res.text().catch(() => '');
    return { readable: res.type !== 'opaque' && (res.status !== 0 || body !== ''), outcome: `${res.type} response, status ${res.status}`, body: body.slice(0, 200) };
  };
  const formPost = (name, action, fields) => new Promise((resolve) => {
    const frame = document.createElement('iframe');
    frame.name = name;
    document.body.append(frame);
    const form = document.createElement('form');
    form.method = 'post';
    form.action = action;
    form.target = name;
    for (const [k, v] of Object.entries(fields)) {
      const input = document.createElement('input');
      input.type = 'hidden';
      input.name = k;
      input.value = v;
      form.append(input);
    }
    document.body.append(form);
    let settled = false;
    const done = (how) => {
      if (settled) return;
      settled = true;
      let text = null;
      try {
        text = frame.contentDocument?.body?.innerText ?? null;
      } catch (e) {
        text = null;
      }
      resolve({ readable: text !== null && text !== '', outcome: `iframe ${how}`, body: text?.slice(0, 200) ?? null });
    };
    setTimeout(() => {
      frame.addEventListener('load', () => done('loaded'), { once: true });
      setTimeout(() => done('timed out'), 5000);
      form.submit();
    }, 0);
  });
  const frameGet = (url) => new Promise((resolve) => {
    const frame = document.createElement('iframe');
    let settled = false;
    const done = (how) => {
      if (settled) return;
      settled = true;
      let text = null;
      try {
        text = frame.contentDocument?.body?.innerText ?? null;
      } catch (e) {
        text = null;
      }
      resolve({ readable: text !== null && text !== '', outcome: `iframe ${how}`, body: text?.slice(0, 200) ?? null });
    };
    frame.addEventListener('load', () => done('loaded'), { once: true });
    setTimeout(() => done('timed out'), 5000);
    frame.src = url;
    document.body.append(frame);
  });
  const image = (url) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve({ readable: false, outcome: `image loaded (${img.naturalWidth}×${img.naturalHeight})` });
    img.onerror = () => resolve({ readable: false, outcome: 'image error' });
    img.src = url;
    setTimeout(() => resolve({ readable: false, outcome: 'image timed out' }), 5000);
  });

  await attempt('fetch GET /api/me, credentials included', () => readFetch(`${gw}/api/me`, { credentials: 'include' }));
  await attempt('fetch GET /api/me with X-CSRF: 1 (needs a preflight)', () => readFetch(`${gw}/api/me`, { credentials: 'include', headers: { 'X-CSRF': '1' } }));
  await attempt('fetch GET /bff/user, credentials included', () => readFetch(`${gw}/bff/user`, { credentials: 'include' }));
  await attempt('fetch GET /bff/sessions, credentials included', () => readFetch(`${gw}/bff/sessions`, { credentials: 'include' }));
  await attempt('fetch GET /api/me, mode no-cors', () => readFetch(`${gw}/api/me`, { mode: 'no-cors', credentials: 'include' }));
  await attempt('fetch POST /api/me, mode no-cors', () => readFetch(`${gw}/api/me`, { method: 'POST', mode: 'no-cors', credentials: 'include', body: 'x=1' }));
  await attempt('fetch POST /bff/logout, mode no-cors', () => readFetch(`${gw}/bff/logout`, { method: 'POST', mode: 'no-cors', credentials: 'include' }));
  await attempt('fetch POST /bff/logout with X-CSRF: 1 (needs a preflight)', () => readFetch(`${gw}/bff/logout`, { method: 'POST', credentials: 'include', headers: { 'X-CSRF': '1', Accept: 'application/json' } }));
  await attempt('fetch DELETE /bff/sessions?others=true with X-CSRF: 1 (needs a preflight)', () => readFetch(`${gw}/bff/sessions?others=true`, { method: 'DELETE', credentials: 'include', headers: { 'X-CSRF': '1' } }));
  await attempt('form POST /bff/logout', () => formPost('sink-logout', `${gw}/bff/logout`, { 'X-CSRF': '1' }));
  await attempt('form POST /api/me', () => formPost('sink-api', `${gw}/api/me`, { 'X-CSRF': '1' }));
  await attempt('form POST /api/events', () => formPost('sink-events', `${gw}/api/events`, {}));
  await attempt('img GET /bff/logout (no sid)', () => image(`${gw}/bff/logout`));
  await attempt('img GET /bff/logout?sid= (empty sid)', () => image(`${gw}/bff/logout?sid=`));
  await attempt('img GET /api/me', () => image(`${gw}/api/me`));
  await attempt('iframe GET /bff/logout (no sid)', () => frameGet(`${gw}/bff/logout`));
  await attempt('iframe GET /api/me', () => frameGet(`${gw}/api/me`));
  return results;
}

async function whoami(page) {
  return page.evaluate(async () => {
    const res = await fetch('/bff/user?slide=false', { headers: { Accept: 'application/json' } });
    const body = await res.json().catch(() => null);
    return { status: res.status, sid: body?.sid ?? null, sub: body?.claims?.sub ?? null };
  });
}

run(async () => {
  const frank = user(0);
  const profile = await newProfile('victim');
  const victim = await profile.newPage();
  await signIn(victim, frank);
  const before = await callAPI(victim, 'call-api');
  if (before.status !== '200') fail(`the API answered ${before.status} before the attacks`);
  await victim.click(tid('feed-toggle'));
  await waitUntil(victim, 'the live feed to pause', () => document.getElementById('feed-status').textContent === 'paused');
  const sessionBefore = await whoami(victim);
  await sleep(300); // let the paused stream's request end

  const jar = async () => (await profile.context.cookies(gateway)).filter((c) => c.name.startsWith('__Host-gatehouse'));
  const cookiesBefore = await jar();
  const attackers = [await attackerServer('127.0.0.1'), await attackerServer('localhost')];
  const origins = {};
  const apiBefore = await apiRequests();
  for (const [label, a] of [['same-site', attackers[0]], ['cross-site', attackers[1]]]) {
    const page = await profile.newPage({ interceptAll: true });
    await page.goto(`${a.origin}/`);
    const mark = profile.events.length;
    const interceptMark = profile.intercepted.length;
    const results = await page.evaluate(attack, gateway);
    await sleep(500); // the last requests' responses
    // What the browser sent to the gateway during the attack, and what came back (the
    // attacker's page could read none of it). Requests blocked by CORS or ORB have no
    // "response" event, only a failure; their answers were read at the response stage
    // (profile.intercepted), before Chromium withheld them from the page.
    const answers = profile.intercepted.slice(interceptMark);
    const seen = [];
    for (const e of profile.events.slice(mark)) {
      if (e.type !== 'request' || !isGateway(e.url)) continue;
      const r = e.request;
      const response = await r.response().catch(() => null);
      const headers = await r.allHeaders().catch(() => ({}));
      const responseHeaders = response ? await response.allHeaders().catch(() => ({})) : {};
      const failed = profile.events.find((f) => f.type === 'failed' && f.request === r);
      const u = new URL(e.url);
      let status = response?.status() ?? 0;
      let setCookie = responseHeaders['set-cookie'] ?? null;
      let allowOrigin = responseHeaders['access-control-allow-origin'] ?? null;
      const i = answers.findIndex((x) => x.url === e.url && x.method === e.method);
      const [x] = i >= 0 ? answers.splice(i, 1) : [];
      if (!response) {
        if (x) {
          status = x.status;
          const hs = x.headers.split('\n');
          setCookie = hs.filter((h) => h.startsWith('set-cookie:')).join('\n') || null;
          allowOrigin = hs.find((h) => h.startsWith('access-control-allow-origin:')) ?? null;
        }
      }
      seen.push({
        request: `${e.method} ${u.pathname}${u.search}`,
        status,
        failure: failed?.error ?? null,
        // Chromium reports the headers it really sent (cookies included) only for some
        // requests; without Sec-Fetch-Site these are the provisional ones, cookies unknown.
        headersKnown: 'sec-fetch-site' in headers,
        carriedSessionCookie: /(^|;\s*)__Host-gatehouse=/.test(headers.cookie ?? ''),
        secFetchSite: headers['sec-fetch-site'] ?? null,
        allowOrigin,
        setCookie,
        location: responseHeaders.location ?? null,
      });
    }
    // Answers without a request event of their own: the CORS preflights (OPTIONS).
    for (const x of answers) {
      const u = new URL(x.url);
      const hs = x.headers.split('\n');
      seen.push({
        request: `${x.method} ${u.pathname}${u.search}`, status: x.status, failure: null, headersKnown: false,
        carriedSessionCookie: false, secFetchSite: null,
        allowOrigin: hs.find((h) => h.startsWith('access-control-allow-origin:')) ?? null,
        setCookie: hs.filter((h) => h.startsWith('set-cookie:')).join('\n') || null,
      });
    }
    origins[label] = { origin: a.origin, results, seenByTheBrowser: seen };
    log(`${label} attacker ${a.origin}: ${results.filter((r) => r.readable).length} of ${results.length} attempts readable; gateway answers: ${seen.map((s) => `${s.request} ${s.status || s.failure}`).join(', ')}`);
    await page.close();
  }
  const apiAfter = await apiRequests();
  const cookiesAfter = await jar();
  const sessionCookie = (cs) => cs.find((c) => c.name === '__Host-gatehouse')?.value ?? null;
  for (const a of attackers) a.server.close();

  // The victim's session is alive and unchanged, and the SPA still works.
  const sessionAfter = await whoami(victim);
  const after = await callAPI(victim, 'call-api');
  const sessions = await victim.evaluate(async () => (await (await fetch('/bff/sessions')).json()).sessions.length);

  return {
    origins,
    apiRequestsDuringAttacks: apiAfter.requests.slice(apiBefore.total),
    sessionBefore,
    sessionAfter,
    sessionsAfter: sessions,
    sessionCookieUnchanged: sessionCookie(cookiesBefore) !== null && sessionCookie(cookiesBefore) === sessionCookie(cookiesAfter),
    gatehouseCookiesBefore: cookiesBefore.map((c) => c.name),
    gatehouseCookiesAfter: cookiesAfter.map((c) => c.name),
    apiAfter: { status: after.status, signedIn: after.signedIn },
    pageErrors: profile.pageErrors,
  };
});
