// Shared code of the browser scenarios (e2e/browser/<scenario>.mjs). Each scenario is run by
// the Go test e2e/browser_test.go as `node e2e/browser/<scenario>.mjs '<config JSON>'`: it
// drives Debian's Chromium (never a downloaded browser) with playwright-core against a running
// gatehouse that serves the demo SPA (examples/demo/spa), prints one JSON line of observations
// on stdout and exits 0, or prints `FAIL <scenario>: <what did not happen>` on stderr, saves a
// screenshot of every open page under e2e/artifacts/ and exits 1. Progress goes to stderr.
//
// Every response the browser receives (headers and bodies, redirects included, event streams
// included) is appended to config.trafficFile as JSON lines, together with snapshots of the
// pages' DOM, so that the Go test can check that no token the provider issued ever reached the
// browser.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

export const cfg = JSON.parse(process.argv[2] ?? process.env.GATEHOUSE_BROWSER_CONFIG ?? 'null');
if (!cfg) {
  process.stderr.write('usage: node e2e/browser/<scenario>.mjs <config JSON> (the Go test e2e/browser_test.go passes it)\n');
  process.exit(2);
}

const t0 = Date.now();
export function log(...parts) {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${parts.join(' ')}\n`);
}

export class ScenarioError extends Error {}

/** Fails the scenario with a message meant for a person reading the Go test's output. */
export function fail(message) {
  throw new ScenarioError(message);
}

export function check(condition, message) {
  if (!condition) fail(message);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const gateway = cfg.gateway;
const gatewayOrigin = new URL(cfg.gateway).origin;
export const isGateway = (u) => {
  try {
    return new URL(u).origin === gatewayOrigin;
  } catch {
    return false;
  }
};

export function user(i = 0) {
  const u = cfg.users?.[i];
  if (!u) fail(`the Go test passed no user #${i}`);
  return u;
}

// ---- traffic recording ------------------------------------------------------------------------

const traffic = []; // promises of records
const profiles = []; // {name, context}

function headerText(headers) {
  return Object.entries(headers ?? {}).map(([k, v]) => `${k}: ${v}`).join('\n');
}

/** Records one response: status, URL, request and response headers, and the body. */
function recordResponse(profile, response) {
  const request = response.request();
  const started = Date.now();
  const status = response.status();
  const stream = /text\/event-stream/.test(response.headers()['content-type'] ?? '');
  // Ask for the body at once: a page that navigates on (the callback page) takes it along.
  const body = status >= 300 && status < 400 ? Promise.resolve({ body: '' }) // a redirect's body is not read by the browser
    : stream ? Promise.resolve({ body: null }) // recorded by the CDP stream tap (sse records): streams may never finish
      : response.body().then((b) => ({ body: b.toString('latin1') }), (e) => ({ body: null, bodyError: String(e.message ?? e).split('\n')[0] }));
  traffic.push((async () => {
    const rec = {
      kind: 'response', profile, url: response.url(), method: request.method(), status,
      resourceType: request.resourceType(), fromGateway: isGateway(response.url()), stream,
    };
    try {
      rec.requestHeaders = headerText(await request.allHeaders());
    } catch (e) {
      rec.requestHeadersError = String(e.message ?? e);
    }
    try {
      rec.headers = headerText(await response.allHeaders());
    } catch (e) {
      rec.headersError = String(e.message ?? e);
    }
    Object.assign(rec, await body);
    rec.ms = Date.now() - started;
    return rec;
  })());
}

/**
 * Taps a page through its own CDP session:
 *  - event streams (their bodies are recorded even when cut off);
 *  - every response of the gateway's /bff/ endpoints, read at the response stage (Fetch
 *    domain), before the page gets it: Chromium forgets some bodies before DevTools can ask
 *    for them (the callback page, which navigates on at once; a fetch whose body the page
 *    never reads). The response is passed on unchanged.
 */
async function tapPage(profileObj, page, interceptAll) {
  const profile = profileObj.name;
  let cdp;
  try {
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Fetch.requestPaused', (ev) => {
      if (ev.responseStatusCode === undefined) { // not at the response stage (a failure): nothing to read
        cdp.send('Fetch.continueRequest', { requestId: ev.requestId }).catch(() => {});
        return;
      }
      const rec = {
        kind: 'intercepted', profile, url: ev.request.url, method: ev.request.method, status: ev.responseStatusCode,
        fromGateway: isGateway(ev.request.url),
        headers: (ev.responseHeaders ?? []).map((h) => `${h.name.toLowerCase()}: ${h.value}`).join('\n'),
      };
      profileObj.intercepted.push(rec);
      traffic.push((async () => {
        if (ev.responseStatusCode >= 300 && ev.responseStatusCode < 400) {
          rec.body = '';
        } else {
          try {
            const { body, base64Encoded } = await cdp.send('Fetch.getResponseBody', { requestId: ev.requestId });
            rec.body = base64Encoded ? Buffer.from(body, 'base64').toString('latin1') : body;
          } catch (e) {
            rec.bodyError = String(e.message ?? e);
          }
        }
        await cdp.send('Fetch.continueResponse', { requestId: ev.requestId })
          .catch(() => cdp.send('Fetch.continueRequest', { requestId: ev.requestId }))
          .catch((e) => log(`warning: cannot pass on ${ev.request.url}: ${e.message}`));
        return rec;
      })());
    });
    // interceptAll (attacker pages only: a page that reads event streams must not be paused
    // at the response stage): every response of the gateway.
    const urlPattern = interceptAll ? `${gatewayOrigin}/*` : `${gatewayOrigin}/bff/*`;
    await cdp.send('Fetch.enable', { patterns: [{ urlPattern, requestStage: 'Response' }] });
  } catch (e) {
    log(`warning: cannot tap a page: ${e.message}`);
    return;
  }
  const streams = new Map(); // requestId -> record
  cdp.on('Network.responseReceived', async (ev) => {
    if (!/text\/event-stream/.test(ev.response.mimeType ?? '')) return;
    const rec = { kind: 'sse', profile, url: ev.response.url, status: ev.response.status, fromGateway: isGateway(ev.response.url), chunks: [] };
    streams.set(ev.requestId, rec);
    traffic.push(new Promise((resolve) => { rec.resolve = resolve; }));
    try {
      const { bufferedData } = await cdp.send('Network.streamResourceContent', { requestId: ev.requestId });
      if (bufferedData) rec.chunks.unshift(Buffer.from(bufferedData, 'base64').toString('latin1'));
    } catch (e) {
      rec.tapError = String(e.message ?? e);
    }
  });
  cdp.on('Network.dataReceived', (ev) => {
    const rec = streams.get(ev.requestId);
    if (rec && ev.data) rec.chunks.push(Buffer.from(ev.data, 'base64').toString('latin1'));
  });
  const finish = (ev) => {
    const rec = streams.get(ev.requestId);
    if (!rec) return;
    streams.delete(ev.requestId);
    rec.body = rec.chunks.join('');
    delete rec.chunks;
    rec.ended = ev.errorText ? `failed: ${ev.errorText}` : 'finished';
    const resolve = rec.resolve;
    delete rec.resolve;
    resolve(rec);
  };
  cdp.on('Network.loadingFinished', finish);
  cdp.on('Network.loadingFailed', finish);
  page.on('close', () => {
    for (const id of [...streams.keys()]) finish({ requestId: id, errorText: 'page closed' });
  });
}

/** Adds a snapshot of a page's DOM (and its URL) to the traffic file. */
export async function snapshot(page, label) {
  try {
    traffic.push(Promise.resolve({ kind: 'dom', label, url: page.url(), fromGateway: isGateway(page.url()), body: await page.content() }));
  } catch (e) {
    log(`warning: no DOM snapshot "${label}": ${e.message}`);
  }
}

async function flushTraffic() {
  let missing = 0;
  const settled = await Promise.all(traffic.map((p) => Promise.race([
    p.catch((e) => ({ kind: 'error', error: String(e.message ?? e) })),
    sleep(15000).then(() => { missing += 1; return null; }),
  ])));
  const lines = settled.filter(Boolean).map((rec) => JSON.stringify({ scenario: cfg.scenario, ...rec }));
  if (missing) lines.push(JSON.stringify({ scenario: cfg.scenario, kind: 'missing', count: missing }));
  if (cfg.trafficFile) fs.appendFileSync(cfg.trafficFile, lines.map((l) => `${l}\n`).join(''));
  log(`recorded ${lines.length} responses and snapshots${missing ? `; ${missing} could not be read within 15 s` : ''}`);
}

// ---- browser and profiles ---------------------------------------------------------------------

let browser;

async function launch() {
  browser = await chromium.launch({
    executablePath: cfg.chromium || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A stack whose gatehouse serves a test certificate (TestBrowserTLS).
      ...(cfg.ignoreCertificateErrors ? ['--ignore-certificate-errors'] : [])],
    timeout: 30000,
  });
  log(`Chromium ${browser.version()} started`);
}

// A small in-page recorder of what the demo shows the user: every distinct state of the
// API status, the feed status, the notice and the signed-out message, in order.
const statusWatcher = () => {
  if (window.top !== window) return;
  const seen = [];
  Object.defineProperty(window, '__statusLog', { value: seen });
  const read = (id) => {
    const e = document.getElementById(id);
    if (!e) return null;
    let hidden = false;
    for (let n = e; n; n = n.parentElement) if (n.hidden) hidden = true;
    return hidden ? null : `${e.className ? `[${e.className}] ` : ''}${e.textContent.trim()}`;
  };
  let last = '';
  const sample = () => {
    const s = { api: read('api-status'), feed: read('feed-status'), notice: read('notice'), signedOut: read('signed-out-message') };
    const key = JSON.stringify(s);
    if (key !== last) {
      last = key;
      seen.push({ t: Date.now(), ...s });
    }
  };
  // Every line the live feed ever showed (the page keeps only the last ten).
  const feed = [];
  Object.defineProperty(window, '__feedLog', { value: feed });
  document.addEventListener('DOMContentLoaded', () => {
    sample();
    new MutationObserver(sample).observe(document.documentElement, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['hidden', 'class'] });
    const list = document.getElementById('feed-events');
    if (list) {
      new MutationObserver((records) => {
        for (const r of records) {
          for (const n of r.addedNodes) {
            if (n.nodeName === 'LI') feed.push({ t: Date.now(), open: n.classList.contains('stream-start'), text: n.textContent });
          }
        }
      }).observe(list, { childList: true });
    }
  });
};

/**
 * A new browser profile (its own cookie jar and storage), with every response recorded.
 * `events` is the ordered log of its requests and responses.
 */
export async function newProfile(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(15000);
  const events = [];
  context.on('request', (r) => events.push({ type: 'request', url: r.url(), method: r.method(), resourceType: r.resourceType(), request: r, t: Date.now() }));
  context.on('response', (r) => {
    events.push({ type: 'response', url: r.url(), method: r.request().method(), status: r.status(), response: r, t: Date.now() });
    recordResponse(name, r);
  });
  context.on('requestfinished', (r) => events.push({ type: 'finished', url: r.url(), method: r.method(), request: r, t: Date.now() }));
  context.on('requestfailed', (r) => events.push({ type: 'failed', url: r.url(), method: r.method(), request: r, error: r.failure()?.errorText, t: Date.now() }));
  const pageErrors = []; // of the gateway's pages (the SPA), not of attacker or provider pages
  const profile = { name, context, events, pageErrors, intercepted: [] };
  let interceptAll = false;
  const tapped = [];
  context.on('page', (page) => {
    tapped.push(tapPage(profile, page, interceptAll));
    page.on('pageerror', (e) => { if (isGateway(page.url())) pageErrors.push(`${page.url()}: ${e.message}`); });
    // "Failed to load resource" errors are Chromium reporting non-2xx answers (an anonymous
    // /bff/user is a 401); scenarios check statuses themselves.
    page.on('console', (m) => {
      if (m.type() === 'error' && isGateway(page.url()) && !m.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${m.text()}`);
    });
  });
  await context.addInitScript(statusWatcher);
  // newPage({interceptAll: true}): see tapPage.
  profile.newPage = async (opts = {}) => {
    interceptAll = Boolean(opts.interceptAll);
    try {
      const page = await context.newPage();
      await tapped.at(-1); // the tap is in place before the page goes anywhere
      return page;
    } finally {
      interceptAll = false;
    }
  };
  profiles.push(profile);
  return profile;
}

// ---- waiting, with messages that say what was expected ----------------------------------------

/** Visible text of the page, shortened, for failure messages. */
export async function pageText(page) {
  try {
    const text = await page.evaluate(() => document.body?.innerText ?? '');
    return text.replace(/\s+\n/g, '\n').replace(/\n{2,}/g, '\n').trim().slice(0, 1500);
  } catch (e) {
    return `(cannot read the page: ${e.message})`;
  }
}

export async function waitUntil(page, what, fn, arg, timeout = 15000) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    fail(`timed out after ${timeout / 1000} s waiting for ${what}\n  page: ${page.url()}\n  page text:\n    ${(await pageText(page)).replace(/\n/g, '\n    ')}`);
  }
}

export async function waitVisible(page, selector, what, timeout = 15000) {
  try {
    await page.waitForSelector(selector, { state: 'visible', timeout });
  } catch {
    fail(`timed out after ${timeout / 1000} s waiting for ${what} (${selector})\n  page: ${page.url()}\n  page text:\n    ${(await pageText(page)).replace(/\n/g, '\n    ')}`);
  }
}

export const tid = (id) => `[data-testid="${id}"]`;

export async function text(page, testid) {
  return (await page.locator(tid(testid)).first().textContent())?.trim() ?? '';
}

// ---- the provider's pages ----------------------------------------------------------------------

/** Fills in the provider's login page the browser is on. */
export async function providerLogin(page, u) {
  if (cfg.provider === 'oidc-provider') {
    await waitVisible(page, 'input[name="password"]', "oidc-provider's login form");
    await page.fill('input[name="login"]', u.name);
    await page.fill('input[name="password"]', u.password);
    await page.click('#submit');
  } else {
    await waitVisible(page, 'form.login', "devidp's login page");
    await page.click(`form.login button[name="user"][value="${u.name}"]`); // the quick button
  }
}

/** Signs in through the SPA's Sign in button and the provider's login page. */
export async function signIn(page, u) {
  await page.goto(`${gateway}/`);
  await waitVisible(page, tid('signed-out'), 'the signed-out card of the demo SPA');
  await page.click(tid('login'));
  await providerLogin(page, u);
  await waitVisible(page, tid('signed-in'), `the SPA to show ${u.name} signed in after the provider's login`);
  await waitUntil(page, `the user's name (${u.display})`, (name) => document.getElementById('user-name')?.textContent === name, u.display);
  log(`${u.name} signed in`);
}

/** Clicks one of the SPA's API buttons and returns what the page shows. */
export async function callAPI(page, button) {
  await page.click(tid(button));
  await waitUntil(page, `the answer to ${button}`, (id) => {
    const s = document.getElementById('api-status')?.textContent;
    return !document.getElementById(id).disabled && s && s !== '…';
  }, button);
  const shown = await page.evaluate(() => ({
    request: document.getElementById('api-request')?.textContent,
    status: document.getElementById('api-status')?.textContent,
    statusClass: document.getElementById('api-status')?.className,
    explain: document.getElementById('api-explain')?.textContent,
    json: document.getElementById('api-json')?.textContent,
    fingerprint: document.querySelector('[data-testid="api-fingerprint"]')?.textContent ?? null,
    signedIn: !document.getElementById('signed-in').hidden,
  }));
  try {
    shown.body = JSON.parse(shown.json);
  } catch {
    shown.body = shown.json;
  }
  return shown;
}

/** The feed's events (newest first), stream openings and tokens seen, as the page shows them. */
export async function feedState(page) {
  return page.evaluate(() => ({
    status: document.getElementById('feed-status')?.textContent,
    statusClass: document.getElementById('feed-status')?.className,
    fingerprint: document.getElementById('feed-fingerprint')?.textContent,
    ticks: [...document.querySelectorAll('#feed-events li:not(.stream-start)')].map((li) => li.textContent),
    streamStarts: [...document.querySelectorAll('#feed-events li.stream-start')].map((li) => li.textContent),
    tokens: [...document.querySelectorAll('#feed-tokens li')].map((li) => li.textContent),
  }));
}

/** Highest tick number (#n) the feed shows. */
export function lastTick(state) {
  let max = 0;
  for (const t of state.ticks) {
    const m = /^#(\d+)/.exec(t);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/** Every line the live feed showed: {t, open (a "stream opened" line), text}. */
export async function feedLog(page) {
  return page.evaluate(() => window.__feedLog ?? []);
}

export async function statusLog(page) {
  return page.evaluate(() => window.__statusLog ?? []);
}

/** The API's request log (requests that reached the demo API through gatehouse). */
export async function apiRequests() {
  const res = await fetch(cfg.apiCounter);
  if (!res.ok) fail(`the API request counter answered ${res.status}`);
  return res.json();
}

/**
 * How many /api/events streams of a profile's SPA page were open at once, at most: from the
 * browser's own network log (a request counts from its start to its end or failure; a new
 * document of the SPA starts the count again, since the old one's streams end with it).
 */
export function maxConcurrentStreams(profile) {
  let open = 0;
  let max = 0;
  const live = new Set();
  for (const ev of profile.events) {
    if (!isGateway(ev.url)) continue;
    if (ev.type === 'request' && ev.resourceType === 'document') {
      live.clear();
      open = 0;
    }
    if (new URL(ev.url).pathname !== '/api/events') continue;
    if (ev.type === 'request') {
      live.add(ev.request);
      open += 1;
      max = Math.max(max, open);
    } else if ((ev.type === 'finished' || ev.type === 'failed') && live.delete(ev.request)) {
      open -= 1;
    }
  }
  return max;
}

export async function screenshot(page, name) {
  const file = path.join(cfg.artifactsDir, `${cfg.provider}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
  return file;
}

// ---- running a scenario -----------------------------------------------------------------------

/** Runs a scenario: fn's result is printed as JSON; a failure is explained and exits 1. */
export async function run(fn) {
  const timer = setTimeout(async () => {
    process.stderr.write(`FAIL ${cfg.scenario} (${cfg.provider}): did not finish within ${cfg.timeoutMillis / 1000} s\n`);
    await Promise.race([browser?.close(), sleep(5000)]).catch(() => {});
    process.exit(1);
  }, cfg.timeoutMillis ?? 90000);
  let code = 0;
  let result;
  // Failure screenshots of an earlier run of this scenario would mislead.
  for (const f of fs.readdirSync(cfg.artifactsDir)) {
    if (f.startsWith(`${cfg.provider}-${cfg.scenario}-failure-`)) fs.rmSync(path.join(cfg.artifactsDir, f), { force: true });
  }
  try {
    await launch();
    result = await fn();
    result.elapsedSeconds = (Date.now() - t0) / 1000;
  } catch (e) {
    code = 1;
    const message = e instanceof ScenarioError ? e.message : (e.stack ?? String(e));
    let i = 0;
    for (const p of profiles) {
      for (const page of p.context.pages()) {
        i += 1;
        try {
          const file = path.join(cfg.artifactsDir, `${cfg.provider}-${cfg.scenario}-failure-${i}.png`);
          await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
          process.stderr.write(`  screenshot of ${p.name}'s page ${page.url()}: ${file}\n`);
        } catch {
          // the page may be gone
        }
      }
      if (p.pageErrors.length) process.stderr.write(`  script errors in ${p.name}: ${p.pageErrors.join(' | ')}\n`);
    }
    process.stderr.write(`FAIL ${cfg.scenario} (${cfg.provider}): ${message}\n`);
  }
  try {
    for (const p of profiles) {
      for (const page of p.context.pages()) await snapshot(page, 'end');
    }
    // Closing the profiles ends open streams, so every recording finishes.
    await Promise.race([Promise.allSettled(profiles.map((p) => p.context.close())), sleep(10000)]);
    await flushTraffic();
  } catch (e) {
    log(`warning: ${e.message}`);
  }
  await browser?.close().catch(() => {});
  clearTimeout(timer);
  if (code === 0) process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(code);
}
