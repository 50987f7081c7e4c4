// Scenario 4: the user logs out at the provider, in the same browser; the provider tells
// gatehouse through back-channel logout; the SPA's next API call gets 401 and the page shows
// that the session ended.
//   oidc-provider: its end_session page, confirmed with "Yes, sign me out" (ends the provider
//                  session, back-channel logout to every client of it).
//   devidp:        its /sessions page, the "back-channel logout" button of this browser's row.
// Takes e2e/artifacts/<provider>-session-ended.png.
import {
  run, newProfile, signIn, callAPI, waitUntil, waitVisible, sleep, snapshot, screenshot, cfg,
  user, tid, text, isGateway, log, fail, pageText,
} from './lib.mjs';

run(async () => {
  const dave = user(0);
  const profile = await newProfile('browser');
  const page = await profile.newPage();
  await signIn(page, dave);
  const before = await callAPI(page, 'call-api');
  if (before.status !== '200') fail(`the API answered ${before.status} before the logout: ${before.json}`);

  // Pause the live feed, so that "the next API call" is the button below and not a reconnect.
  await page.click(tid('feed-toggle'));
  await waitUntil(page, 'the live feed to pause', () => document.getElementById('feed-status').textContent === 'paused');

  // Log out at the provider, in another tab of the same browser.
  const idp = await profile.newPage();
  let providerSays;
  if (cfg.provider === 'oidc-provider') {
    await idp.goto(`${cfg.issuer.replace(/\/$/, '')}/session/end`);
    await waitVisible(idp, '#logout-yes', "oidc-provider's sign-out confirmation");
    await idp.click('#logout-yes');
    await waitVisible(idp, '#signed-out', "oidc-provider's signed-out page");
    providerSays = await pageText(idp);
    // oidc-provider sends back-channel logouts while it ends the session; wait until it
    // reports the delivery (its test control endpoint), so the next step is deterministic.
    const deadline = Date.now() + 10000;
    let delivered;
    for (;;) {
      const stats = await (await fetch(`${cfg.providerBase}/__test/stats`)).json();
      delivered = stats.backchannel.filter((b) => b.sub === dave.name);
      if (delivered.length || Date.now() > deadline) break;
      await sleep(100);
    }
    if (!delivered.length) fail("oidc-provider reported no back-channel logout for the user within 10 s");
    providerSays += `\nback-channel: ${JSON.stringify(delivered)}`;
  } else {
    await idp.goto(`${cfg.issuer.replace(/\/$/, '')}/sessions`);
    const row = idp.locator('tr', { hasText: '(this browser)' });
    await waitVisible(idp, 'tr:has-text("(this browser)")', "this browser's row on devidp's sessions page");
    await row.locator('button', { hasText: 'back-channel logout' }).click();
    await waitVisible(idp, 'text=back-channel logout to', "devidp's report of the back-channel logout");
    providerSays = await pageText(idp);
  }
  log(`the provider says: ${providerSays.split('\n').filter((l) => /signed out|back-channel|HTTP/i.test(l)).join(' | ')}`);
  await idp.close();

  // The SPA's next API call.
  const mark = profile.events.length;
  await page.click(tid('call-api'));
  await waitVisible(page, tid('signed-out'), 'the SPA to show the signed-out state after the API call');
  const message = await text(page, 'signed-out-message');
  const apiResponse = profile.events.slice(mark).find((e) => e.type === 'response' && isGateway(e.url) && new URL(e.url).pathname === '/api/me');
  let apiBody = null;
  try {
    apiBody = await apiResponse?.response.json();
  } catch {
    // not JSON
  }
  await snapshot(page, 'session ended');
  const shot = await screenshot(page, 'session-ended');

  // A reload does not bring the session back.
  await page.reload();
  await waitVisible(page, tid('signed-out'), 'the SPA to stay signed out after a reload');

  return {
    before: { status: before.status },
    providerSays,
    apiStatus: apiResponse?.status ?? null,
    apiBody,
    message,
    signedInHidden: await page.locator(tid('signed-in')).isHidden(),
    screenshot: shot,
    pageErrors: profile.pageErrors,
  };
});
