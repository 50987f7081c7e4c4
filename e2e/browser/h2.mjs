// Scenario: gatehouse terminating TLS itself (tls.cert_file). Chromium signs in through the
// provider, loads the SPA and calls the API over HTTP/2 (the Resource Timing API's
// nextHopProtocol), gets HSTS on the gateway's responses, and opens a WebSocket through the
// TLS listener (HTTP/1.1 upgrade: Go's HTTP/2 server does not offer RFC 8441).
import { run, newProfile, signIn, callAPI, user, isGateway, log, fail } from './lib.mjs';

run(async () => {
  const profile = await newProfile('browser');
  const page = await profile.newPage();
  await signIn(page, user(0));
  const api = await callAPI(page, 'call-api');
  log(`GET /api/me: ${api.status}`);

  const timing = await page.evaluate(() => ({
    navigation: performance.getEntriesByType('navigation').map((e) => ({ url: e.name, protocol: e.nextHopProtocol })),
    resources: performance.getEntriesByType('resource').map((e) => ({ url: e.name, protocol: e.nextHopProtocol })),
  }));
  const hsts = {};
  for (const e of profile.events) {
    if (e.type !== 'response' || !isGateway(e.url)) continue;
    const path = new URL(e.url).pathname;
    if (path === '/' || path === '/bff/user' || path.startsWith('/api/')) {
      hsts[path] = (await e.response.allHeaders())['strict-transport-security'] ?? null;
    }
  }

  const ws = await page.evaluate(() => new Promise((resolve) => {
    const url = `${location.origin.replace(/^https:/, 'wss:')}/ws/echo`;
    const sock = new WebSocket(url);
    const timer = setTimeout(() => resolve({ url, error: 'timeout' }), 10000);
    sock.onopen = () => sock.send('hello over tls');
    sock.onmessage = (m) => { clearTimeout(timer); resolve({ url, opened: true, reply: String(m.data) }); sock.close(); };
    sock.onerror = () => { clearTimeout(timer); resolve({ url, error: 'error event' }); };
  }));
  log(`WebSocket: ${JSON.stringify(ws)}`);
  if (profile.pageErrors.length) fail(`script errors on the page: ${profile.pageErrors.join(' | ')}`);
  return { apiStatus: api.status, apiSub: api.body?.claims?.sub ?? null, timing, hsts, ws };
});
