// Scenario 3: the access token expires and the SPA keeps working with no visible glitch.
// Access tokens live cfg.accessTTL seconds; the scenario waits past an expiry, calls the API
// again (200, another token fingerprint), and watches the live feed across the expiry. With
// JWT access tokens (devidp) the demo API ends a stream when its token expires, so the feed
// reconnects and shows a new fingerprint; with opaque ones (oidc-provider) it cannot know the
// expiry and the stream simply carries on. Throughout, no request of the page may fail and
// the page may show no error.
import {
  run, newProfile, signIn, callAPI, feedState, feedLog, lastTick, waitUntil, sleep, snapshot, cfg,
  user, isGateway, maxConcurrentStreams, statusLog, log, fail,
} from './lib.mjs';

run(async () => {
  const carol = user(0);
  const profile = await newProfile('browser');
  const page = await profile.newPage();
  await signIn(page, carol);
  const signedInAt = Date.now();

  await waitUntil(page, 'the first feed event', () => document.querySelectorAll('#feed-events li:not(.stream-start)').length >= 1, undefined, 20000);
  const first = await callAPI(page, 'call-api');
  if (first.status !== '200') fail(`the first API call answered ${first.status}: ${first.json}`);
  const firstAt = Date.now();
  const feedBefore = await feedState(page);
  log(`token ${first.fingerprint} (${first.body?.token?.kind}); feed at #${lastTick(feedBefore)} with ${feedBefore.fingerprint}`);

  // The token of that call was issued before it: past accessTTL it has expired for sure.
  const waitMs = cfg.accessTTL * 1000 + 1500 - (Date.now() - firstAt);
  log(`waiting ${(waitMs / 1000).toFixed(1)} s for the access token to expire`);
  await sleep(waitMs);

  const second = await callAPI(page, 'call-api');
  const secondAt = Date.now();
  log(`after the expiry: ${second.status}, token ${second.fingerprint}`);

  if (first.body?.token?.kind === 'jwt') {
    // The stream ended with its token; the page must have reconnected with a fresh one.
    await waitUntil(page, 'the live feed to show a new token fingerprint after the expiry',
      (fp) => {
        const shown = document.getElementById('feed-fingerprint')?.textContent;
        return shown && shown !== fp && document.querySelectorAll('#feed-tokens li').length >= 2;
      }, feedBefore.fingerprint, 15000);
  }
  // Either way: events keep coming after the expiry, and the stream is live.
  const expiredAt = firstAt + cfg.accessTTL * 1000;
  await waitUntil(page, 'three live feed events after the expiry', (since) => document.getElementById('feed-status').textContent === 'live'
    && window.__feedLog.filter((l) => !l.open && l.t > since).length >= 3, expiredAt, 15000);
  const feedAfter = await feedState(page);
  await snapshot(page, 'after the expiry');

  // Everything the page asked of the gateway, and what the user saw.
  const failures = profile.events
    .filter((e) => e.type === 'response' && isGateway(e.url) && e.status >= 400 && e.t > signedInAt)
    .map((e) => `${e.method} ${new URL(e.url).pathname} → ${e.status}`);
  const aborted = profile.events
    .filter((e) => e.type === 'failed' && isGateway(e.url) && e.t > signedInAt)
    .map((e) => `${e.method} ${new URL(e.url).pathname}: ${e.error}`);
  const shown = await statusLog(page);
  const visibleErrors = shown
    .filter((s) => s.t > signedInAt)
    .flatMap((s) => [s.api, s.feed, s.notice, s.signedOut])
    .filter((v) => v && /error|retrying|failed|stopped|ended:/i.test(v) && !/^stream ended \((token_expired|max_duration)\); reconnecting/.test(v.replace(/^\[[^\]]*\] /, '')));
  const api = await (await fetch(cfg.apiCounter)).json();
  const lines = await feedLog(page);

  return {
    kind: first.body?.token?.kind ?? null,
    first: { status: first.status, fingerprint: first.fingerprint },
    second: { status: second.status, fingerprint: second.fingerprint, afterSeconds: (secondAt - firstAt) / 1000 },
    feedBefore: { fingerprint: feedBefore.fingerprint, lastTick: lastTick(feedBefore), streams: feedBefore.streamStarts.length },
    feedAfter: { status: feedAfter.status, fingerprint: feedAfter.fingerprint, lastTick: lastTick(feedAfter), tokens: feedAfter.tokens, streamStarts: feedAfter.streamStarts },
    ticksAfterExpiry: lines.filter((l) => !l.open && l.t > expiredAt).length,
    feedLog: lines.map((l) => ({ ...l, t: (l.t - signedInAt) / 1000 })),
    failedResponses: failures,
    abortedRequests: aborted,
    visibleErrors,
    pageErrors: profile.pageErrors,
    maxConcurrentStreams: maxConcurrentStreams(profile),
    streamsAtAPI: api.requests.filter((r) => r.path === '/api/events').length,
    statusLog: shown.map((s) => ({ ...s, t: (s.t - signedInAt) / 1000 })),
  };
});
