import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../gatehouse.js';
import { fakeFetch, fakeLocation } from './helpers.js';

/** A document just big enough for trySilentLogin: one window, frames that record themselves. */
function fakeDocument() {
  const win = new EventTarget();
  /** @type {any[]} */
  const frames = [];
  const doc = {
    defaultView: win,
    body: {
      /** @param {any} frame */
      appendChild(frame) {
        frames.push(frame);
        frame.attached = true;
      },
    },
    createElement(/** @type {string} */ tag) {
      assert.equal(tag, 'iframe');
      const frame = {
        style: {},
        attrs: /** @type {Record<string, string>} */ ({}),
        contentWindow: { name: 'frame window' },
        src: '',
        title: '',
        attached: false,
        /** @param {string} k @param {string} v */
        setAttribute(k, v) {
          this.attrs[k] = v;
        },
        remove() {
          this.attached = false;
        },
      };
      return frame;
    },
  };
  /** @param {any} source @param {string} origin @param {any} data */
  const post = (source, origin, data) => {
    // Node's MessageEvent takes only MessagePorts as sources: a plain event with the fields.
    const event = Object.assign(new Event('message'), { source, origin, data });
    win.dispatchEvent(event);
  };
  return { doc, win, frames, post };
}

function setup() {
  const fake = fakeDocument();
  const gh = createClient({
    fetch: fakeFetch(),
    location: fakeLocation('https://app.example/orders'),
    document: /** @type {any} */ (fake.doc),
  });
  return { gh, ...fake };
}

test('trySilentLogin loads /bff/silent-login in a hidden frame and resolves its answer', async () => {
  for (const isLoggedIn of [true, false]) {
    const { gh, frames, post } = setup();
    const result = gh.trySilentLogin();
    assert.equal(frames.length, 1);
    const [frame] = frames;
    assert.equal(frame.src, '/bff/silent-login');
    assert.equal(frame.style.display, 'none');
    assert.equal(frame.attrs['aria-hidden'], 'true');
    post(frame.contentWindow, 'https://app.example', { source: 'bff-silent-login', isLoggedIn });
    assert.equal(await result, isLoggedIn);
    assert.equal(frame.attached, false, 'the frame is removed');
  }
});

test('trySilentLogin ignores messages from other origins, other windows and other shapes', async () => {
  const { gh, frames, post } = setup();
  const result = gh.trySilentLogin({ timeout: 50 });
  const [frame] = frames;
  post(frame.contentWindow, 'https://evil.example', { source: 'bff-silent-login', isLoggedIn: true });
  post({ other: true }, 'https://app.example', { source: 'bff-silent-login', isLoggedIn: true });
  post(frame.contentWindow, 'https://app.example', { source: 'something-else', isLoggedIn: true });
  post(frame.contentWindow, 'https://app.example', { source: 'bff-silent-login', isLoggedIn: 'yes' });
  assert.equal(await result, false, 'only a boolean true from the frame counts; then the timeout answers false');
  assert.equal(frame.attached, false);
});

test('trySilentLogin resolves false when no answer comes in time', async () => {
  const { gh, frames } = setup();
  const started = Date.now();
  assert.equal(await gh.trySilentLogin({ timeout: 30 }), false);
  assert.ok(Date.now() - started >= 25);
  assert.equal(frames[0].attached, false);
});

test('trySilentLogin without a document rejects', async () => {
  const gh = createClient({ fetch: fakeFetch(), location: fakeLocation() });
  await assert.rejects(gh.trySilentLogin(), /needs a document/);
});
