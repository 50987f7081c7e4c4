// @ts-check
/**
 * Gatehouse browser client: talks to a Gatehouse Backend-for-Frontend from a single-page app.
 *
 * One plain ES module without dependencies or a build step. Gatehouse serves it at
 * `/bff/client.js`; it is also the npm package `@gatehouse/client`.
 *
 *   import { createClient } from '/bff/client.js';
 *   const gh = createClient();
 *   const user = await gh.getUser();          // null when signed out
 *   const res = await gh.fetch('/api/orders'); // CSRF header + same-origin credentials
 *
 * The types live in gatehouse.d.ts; this file is checked against them.
 *
 * @typedef {import('./gatehouse.js').GatehouseOptions} GatehouseOptions
 * @typedef {import('./gatehouse.js').GatehouseClient} GatehouseClientType
 * @typedef {import('./gatehouse.js').GatehouseUser} GatehouseUser
 * @typedef {import('./gatehouse.js').GatehouseSession} GatehouseSession
 * @typedef {import('./gatehouse.js').GatehouseLocation} GatehouseLocation
 * @typedef {import('./gatehouse.js').GatehouseFetch} GatehouseFetch
 * @typedef {import('./gatehouse.js').GatehouseErrorDetails} GatehouseErrorDetails
 * @typedef {import('./gatehouse.js').SessionEndDetail} SessionEndDetail
 * @typedef {import('./gatehouse.js').UnauthenticatedInfo} UnauthenticatedInfo
 * @typedef {import('./gatehouse.js').GetUserOptions} GetUserOptions
 * @typedef {import('./gatehouse.js').LogoutOptions} LogoutOptions
 * @typedef {import('./gatehouse.js').StepUpDetail} StepUpDetail
 * @typedef {import('./gatehouse.js').StepUpInfo} StepUpInfo
 * @typedef {import('./gatehouse.js').StepUpRequest} StepUpRequest
 * @typedef {import('./gatehouse.js').StepUpOptions} StepUpOptions
 * @typedef {import('./gatehouse.js').SilentLoginOptions} SilentLoginOptions
 */

/** Longest delay setTimeout accepts; longer waits are chained. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;
/** How long after the computed expiry the client asks Gatehouse whether the session is gone (ms). */
const CHECK_GRACE = 1000;
/** Shortest delay between two expiry checks (ms), so a session at its very edge cannot cause a loop. */
const MIN_CHECK_DELAY = 1000;
/** Retry delay of an expiry check that failed (network error, 5xx) (ms). */
const CHECK_RETRY_DELAY = 30_000;
/** sessionStorage key of the last step-up sign-in this tab started. */
const STEP_UP_KEY = 'gatehouse:stepup';
/** Within this long after a step-up (ms), the default onStepUp does not start the same one again. */
const STEP_UP_REPEAT_WINDOW = 60_000;
/** How long trySilentLogin waits for the frame's answer by default (ms). */
const SILENT_LOGIN_TIMEOUT = 10_000;
/** Base used to tell relative URLs from absolute ones when there is no location. */
const NO_ORIGIN_BASE = 'http://gatehouse.invalid/';

/** A Gatehouse endpoint answered with an unexpected status. */
export class GatehouseError extends Error {
  /**
   * @param {string} message
   * @param {GatehouseErrorDetails} details
   */
  constructor(message, details) {
    super(message);
    /** @type {'GatehouseError'} */
    this.name = 'GatehouseError';
    /** @type {number} */
    this.status = details.status;
    /** @type {string | null} */
    this.code = details.code ?? null;
    /** @type {string | null} */
    this.reason = details.reason ?? null;
    /** @type {unknown} */
    this.body = details.body ?? null;
  }
}

/**
 * What a `step_up_required` body asks for, in the client's names.
 * @param {any} body
 * @returns {StepUpDetail}
 */
function stepUpDetail(body) {
  return {
    reason: str(body?.reason) ?? 'insufficient_user_authentication',
    acrValues: str(body?.acr_values) ?? null,
    maxAge: maxAgeOf(body?.max_age),
    loginUrl: str(body?.login_url) ?? null,
  };
}

/**
 * A max_age as Gatehouse reads it: whole seconds, not negative.
 * @param {unknown} value
 * @returns {number | null}
 */
function maxAgeOf(value) {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

/**
 * The tab's sessionStorage, or null where there is none or it may not be used.
 * @returns {Storage | null}
 */
function tabStorage() {
  try {
    return /** @type {any} */ (globalThis).sessionStorage ?? null;
  } catch {
    return null; // e.g. a sandboxed frame
  }
}

/**
 * What a step-up asks for, as one string (to recognise the same request again).
 * @param {string | undefined} acrValues
 * @param {number | null} maxAge
 */
function stepUpKey(acrValues, maxAge) {
  return `${acrValues ?? ''}|${maxAge ?? ''}`;
}

/**
 * Creates a client.
 * @param {GatehouseOptions} [options]
 * @returns {GatehouseClientType}
 */
export function createClient(options = {}) {
  return new Client(options);
}

/**
 * A return URL as Gatehouse accepts it: a local path, or `/`.
 * Rejects `//host`, `/\host`, absolute URLs and control characters (which URL parsers drop).
 * @param {unknown} value
 * @returns {string}
 */
function localPath(value) {
  if (typeof value !== 'string' || value[0] !== '/' || value[1] === '/' || value[1] === '\\') return '/';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return '/';
  return value;
}

/**
 * Where logout may navigate: a local path or an http(s) URL (the provider's end-session URL).
 * @param {unknown} value
 * @returns {string | null}
 */
function logoutTarget(value) {
  if (typeof value !== 'string' || value === '') return null;
  if (value[0] === '/') return localPath(value);
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

/**
 * @param {unknown} value
 * @returns {string | undefined}
 */
function str(value) {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * The JSON body of a response, or null when it is not JSON. Consumes the body.
 * @param {Response} response
 * @returns {Promise<any>}
 */
async function readJson(response) {
  const type = response.headers.get('content-type') ?? '';
  if (!/\bjson\b/i.test(type)) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * @param {Response} response
 * @param {string} what
 * @returns {Promise<GatehouseError>}
 */
async function errorFrom(response, what) {
  const body = await readJson(response);
  const code = str(body?.error) ?? null;
  const reason = str(body?.reason) ?? null;
  let message = `Gatehouse: ${what} answered ${response.status}`;
  if (code) message += ` ${code}`;
  if (reason) message += ` (${reason})`;
  return new GatehouseError(message, { status: response.status, code, reason, body });
}

/**
 * An event with a `detail`: CustomEvent where it exists, else an Event given a `detail` property.
 * @template T
 * @param {string} type
 * @param {T} detail
 * @returns {Event}
 */
function makeEvent(type, detail) {
  if (typeof CustomEvent === 'function') return new CustomEvent(type, { detail });
  const event = new Event(type);
  Object.defineProperty(event, 'detail', { value: detail, enumerable: true });
  return event;
}

/**
 * Reports an error thrown by a callback without breaking the caller's promise.
 * @param {unknown} error
 */
function report(error) {
  const reportError = /** @type {((e: unknown) => void) | undefined} */ (
    /** @type {any} */ (globalThis).reportError
  );
  if (typeof reportError === 'function') reportError(error);
  else
    queueMicrotask(() => {
      throw error;
    });
}

/**
 * @param {unknown} seconds
 * @returns {seconds is number}
 */
function isSeconds(seconds) {
  return typeof seconds === 'number' && Number.isFinite(seconds);
}

/** @typedef {{ id: ReturnType<typeof setTimeout> | undefined }} TimerHandle */

/**
 * setTimeout that allows delays beyond ~24.8 days and does not keep a Node process alive.
 * @param {() => void} fn
 * @param {number} delay ms
 * @returns {TimerHandle}
 */
function startTimer(fn, delay) {
  /** @type {TimerHandle} */
  const handle = { id: undefined };
  const target = Date.now() + Math.max(0, delay);
  /** @param {number} remaining */
  const arm = (remaining) => {
    const step = Math.min(remaining, MAX_TIMER_DELAY);
    // After an intermediate step, measure what is left against the clock.
    handle.id = setTimeout(() => (step < remaining ? arm(Math.max(0, target - Date.now())) : fn()), step);
    /** @type {any} */ (handle.id)?.unref?.();
  };
  arm(Math.max(0, delay));
  return handle;
}

/** @param {TimerHandle | undefined} handle */
function stopTimer(handle) {
  if (handle) clearTimeout(handle.id);
}

/** @implements {GatehouseClientType} */
class Client extends EventTarget {
  /** @type {string} */ #basePath;
  /** @type {string} */ #csrfHeader;
  /** @type {string} */ #csrfValue;
  /** @type {number} */ #threshold;
  /** @type {GatehouseFetch} */ #fetchImpl;
  /** @type {GatehouseLocation | undefined} */ #locationOption;
  /** @type {((info: UnauthenticatedInfo) => void) | null} */ #onUnauthenticated;
  /** @type {((info: StepUpInfo) => void) | null} */ #onStepUp;

  /** @type {GatehouseUser | null} */ #user = null;
  /** Absolute expiry (Date.now() ms). */ #absoluteDeadline = Infinity;
  /** Idle expiry (Date.now() ms). */ #idleDeadline = Infinity;
  /** Idle timeout length (ms) that activity restarts. */ #idleWindow = Infinity;
  /** @type {TimerHandle | undefined} */ #expiringTimer;
  /** @type {TimerHandle | undefined} */ #checkTimer;
  #expiringEmitted = false;
  #disposed = false;
  /** @type {Document | undefined} */
  #documentOption;

  /** @param {GatehouseOptions} options */
  constructor(options) {
    super();
    this.#basePath = String(options.basePath ?? '/bff').replace(/\/+$/, '');
    this.#csrfHeader = options.csrfHeader ?? 'X-CSRF';
    this.#csrfValue = options.csrfValue ?? '1';
    this.#threshold = isSeconds(options.expiringThreshold) ? options.expiringThreshold : 60;
    const injected = options.fetch;
    this.#fetchImpl = injected ? (input, init) => injected(input, init) : (input, init) => globalThis.fetch(input, init);
    this.#locationOption = options.location;
    this.#documentOption = options.document;
    this.#onUnauthenticated =
      options.onUnauthenticated === undefined ? () => this.login() : options.onUnauthenticated;
    this.#onStepUp = options.onStepUp === undefined ? (info) => this.#defaultStepUp(info) : options.onStepUp;
  }

  /** @returns {GatehouseUser | null} */
  get user() {
    return this.#user;
  }

  // ---- URLs and requests -------------------------------------------------------------------

  /** @returns {GatehouseLocation | undefined} */
  #location() {
    return this.#locationOption ?? /** @type {GatehouseLocation | undefined} */ (globalThis.location);
  }

  /** @returns {GatehouseLocation} */
  #requireLocation() {
    const location = this.#location();
    if (!location) throw new TypeError('Gatehouse: no location to navigate; pass `location` to createClient');
    return location;
  }

  /**
   * Whether a URL (as given to fetch) is same-origin with the page.
   * @param {string} url
   * @returns {boolean}
   */
  #isSameOrigin(url) {
    const location = this.#location();
    if (!location) {
      // No page: only relative references (not `//host/…`) count as same-origin.
      try {
        new URL(url);
        return false;
      } catch {
        try {
          return new URL(url, NO_ORIGIN_BASE).origin === new URL(NO_ORIGIN_BASE).origin;
        } catch {
          return false;
        }
      }
    }
    let base = location.href ?? location.origin + location.pathname + location.search;
    const documentBase = globalThis.document?.baseURI;
    if (this.#locationOption === undefined && typeof documentBase === 'string') base = documentBase;
    try {
      return new URL(url, base).origin === (location.origin ?? new URL(base).origin);
    } catch {
      return false;
    }
  }

  /**
   * Adds the CSRF header and credentials to a request's init.
   * @param {RequestInfo | URL} input
   * @param {RequestInit | undefined} init
   * @returns {RequestInit}
   */
  #gatehouseInit(input, init) {
    const request = typeof input === 'object' && 'url' in input ? input : undefined;
    const headers = new Headers(init?.headers !== undefined ? init.headers : request?.headers);
    if (!headers.has(this.#csrfHeader)) headers.set(this.#csrfHeader, this.#csrfValue);
    const credentials = init?.credentials ?? request?.credentials ?? 'same-origin';
    return { ...init, headers, credentials };
  }

  /**
   * Looks at a same-origin response: `401 unauthenticated` ends the session, `401
   * step_up_required` asks for a stronger sign-in (the session stays), success is activity.
   * @param {Response} response
   */
  async #inspect(response) {
    if (response.status === 401) {
      const body = await readJson(response.clone());
      if (body?.error === 'unauthenticated') this.#unauthenticated(body, response);
      else if (body?.error === 'step_up_required') this.#stepUpRequired(body, response);
    } else if (response.ok) {
      this.#activity();
    }
  }

  /**
   * A request to one of Gatehouse's own endpoints.
   * @param {string} method
   * @param {string} path below basePath
   * @returns {Promise<Response>}
   */
  #call(method, path) {
    const url = this.#basePath + path;
    return this.#fetchImpl(url, this.#gatehouseInit(url, { method, headers: { Accept: 'application/json' } }));
  }

  /** @param {string} path */
  #url(path) {
    return this.#basePath + path;
  }

  /**
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async fetch(input, init) {
    const url = typeof input === 'object' && 'url' in input ? input.url : String(input);
    if (!this.#isSameOrigin(url)) return this.#fetchImpl(input, init);
    const response = await this.#fetchImpl(input, this.#gatehouseInit(input, init));
    await this.#inspect(response);
    return response;
  }

  // ---- user and session ----------------------------------------------------------------------

  /**
   * @param {GetUserOptions} [options]
   * @returns {Promise<GatehouseUser | null>}
   */
  async getUser({ slide = true } = {}) {
    const path = slide ? '/user' : '/user?slide=false';
    const response = await this.#call('GET', path);
    if (response.status === 401) {
      const body = await readJson(response);
      if (this.#user) this.#end(this.#endDetail(body));
      return null;
    }
    if (!response.ok) throw await errorFrom(response, `GET ${this.#url(path)}`);
    /** @type {GatehouseUser} */
    let user;
    try {
      user = await response.json();
    } catch {
      throw new GatehouseError(`Gatehouse: GET ${this.#url(path)} answered invalid JSON`, {
        status: response.status,
      });
    }
    this.#setUser(user, slide);
    return user;
  }

  /**
   * @param {string} [returnUrl]
   * @param {{provider?: string}} [options] the provider to sign in with, by name
   * @returns {string}
   */
  loginUrl(returnUrl, { provider } = {}) {
    let target = returnUrl;
    if (target === undefined) {
      const location = this.#location();
      target = location ? location.pathname + location.search + location.hash : '/';
    }
    const p = provider === undefined ? '' : `provider=${encodeURIComponent(String(provider))}&`;
    return `${this.#url('/login')}?${p}returnUrl=${encodeURIComponent(localPath(target))}`;
  }

  /**
   * @param {string} [returnUrl]
   * @param {{provider?: string}} [options]
   */
  login(returnUrl, options) {
    this.#requireLocation().assign(this.loginUrl(returnUrl, options));
  }

  /**
   * @param {StepUpRequest | null} [request]
   * @param {StepUpOptions} [options]
   * @returns {string}
   */
  stepUpUrl(request, { returnUrl } = {}) {
    const query = new URLSearchParams();
    const { acrValues, maxAge } = this.#stepUpParams(request);
    if (acrValues !== undefined) query.set('acr_values', acrValues);
    if (maxAge !== null) query.set('max_age', String(maxAge));
    let target = returnUrl;
    if (target === undefined) {
      const location = this.#location();
      target = location ? location.pathname + location.search + location.hash : '/';
    }
    query.set('returnUrl', localPath(target));
    return `${this.#url('/login')}?${query}`;
  }

  /**
   * @param {StepUpRequest | null} [request]
   * @param {StepUpOptions} [options]
   */
  stepUp(request, options) {
    const location = this.#requireLocation();
    const url = this.stepUpUrl(request, options);
    const { acrValues, maxAge } = this.#stepUpParams(request);
    try {
      tabStorage()?.setItem(STEP_UP_KEY, JSON.stringify({ key: stepUpKey(acrValues, maxAge), at: Date.now() }));
    } catch {
      // storage full or refused: only the repeat guard is lost
    }
    location.assign(url);
  }

  /**
   * A request as given (camelCase), or a step_up_required body as Gatehouse sent it.
   * @param {StepUpRequest | null | undefined} request
   */
  #stepUpParams(request) {
    const raw = /** @type {any} */ (request ?? {});
    return {
      acrValues: str(raw.acrValues) ?? str(raw.acr_values),
      maxAge: maxAgeOf(raw.maxAge) ?? maxAgeOf(raw.max_age),
    };
  }

  /**
   * The default onStepUp: the step-up sign-in, unless this tab started the same one less than
   * a minute ago. Then the sign-in did not give the API what it wants (its provider's tokens
   * may not carry the acr), and navigating again would loop.
   * @param {StepUpInfo} info
   */
  #defaultStepUp(info) {
    let last = null;
    try {
      last = JSON.parse(tabStorage()?.getItem(STEP_UP_KEY) ?? 'null');
    } catch {
      last = null;
    }
    const { acrValues, maxAge } = this.#stepUpParams(info);
    const age = Date.now() - Number(last?.at);
    if (last?.key === stepUpKey(acrValues, maxAge) && age >= 0 && age < STEP_UP_REPEAT_WINDOW) {
      report(new Error('Gatehouse: the same step-up was asked again right after one; not navigating again'));
      return;
    }
    this.stepUp(info);
  }

  /**
   * @param {SilentLoginOptions} [options]
   * @returns {Promise<boolean>}
   */
  trySilentLogin({ timeout = SILENT_LOGIN_TIMEOUT } = {}) {
    const doc = this.#documentOption ?? globalThis.document;
    if (!doc?.body) return Promise.reject(new Error('Gatehouse: trySilentLogin needs a document'));
    const win = doc.defaultView ?? globalThis;
    const origin = this.#location()?.origin;
    return new Promise((resolve) => {
      const frame = doc.createElement('iframe');
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      /** @param {boolean} loggedIn */
      const done = (loggedIn) => {
        clearTimeout(timer);
        win.removeEventListener('message', onMessage);
        frame.remove();
        resolve(loggedIn);
      };
      /** @param {MessageEvent} event */
      const onMessage = (event) => {
        // Only the frame's own answer, from this origin, in the shape Gatehouse posts.
        if (event.source !== frame.contentWindow || event.origin !== origin) return;
        if (event.data?.source !== 'bff-silent-login') return;
        done(event.data.isLoggedIn === true);
      };
      win.addEventListener('message', /** @type {EventListener} */ (onMessage));
      timer = setTimeout(() => done(false), timeout);
      frame.style.display = 'none';
      frame.setAttribute('aria-hidden', 'true');
      frame.title = 'Silent sign-in';
      frame.src = this.#url('/silent-login');
      doc.body.appendChild(frame);
    });
  }

  /**
   * @param {LogoutOptions} [options]
   * @returns {Promise<void>}
   */
  async logout({ returnUrl } = {}) {
    const query = returnUrl === undefined ? '' : `?returnUrl=${encodeURIComponent(localPath(returnUrl))}`;
    const response = await this.#call('POST', `/logout${query}`);
    if (!response.ok) throw await errorFrom(response, `POST ${this.#url('/logout')}`);
    const body = await readJson(response);
    const target = logoutTarget(body?.redirect_url) ?? localPath(returnUrl);
    this.#end({ reason: 'logged_out', loginUrl: this.#url('/login') });
    this.#requireLocation().assign(target);
  }

  /** @returns {Promise<GatehouseSession[]>} */
  async sessions() {
    const response = await this.#call('GET', '/sessions');
    await this.#inspect(response);
    if (!response.ok) throw await errorFrom(response, `GET ${this.#url('/sessions')}`);
    const body = await readJson(response);
    return Array.isArray(body?.sessions) ? body.sessions : [];
  }

  /**
   * @param {string} sid
   * @returns {Promise<void>}
   */
  async endSession(sid) {
    const path = `/sessions/${encodeURIComponent(sid)}`;
    const response = await this.#call('DELETE', path);
    await this.#inspect(response);
    if (!response.ok) throw await errorFrom(response, `DELETE ${this.#url(path)}`);
    if (this.#user && this.#user.sid === sid) {
      this.#end({ reason: 'session_revoked', loginUrl: this.#url('/login') });
    }
  }

  /** @returns {Promise<void>} */
  async endOtherSessions() {
    const path = '/sessions?others=true';
    const response = await this.#call('DELETE', path);
    await this.#inspect(response);
    if (!response.ok) throw await errorFrom(response, `DELETE ${this.#url(path)}`);
  }

  dispose() {
    this.#disposed = true;
    this.#clearTimers();
  }

  // ---- state, events and timers ----------------------------------------------------------------

  /**
   * @param {any} body a 401 body
   * @returns {SessionEndDetail}
   */
  #endDetail(body) {
    return {
      reason: str(body?.reason) ?? 'unauthenticated',
      loginUrl: str(body?.login_url) ?? this.#url('/login'),
    };
  }

  /**
   * @param {any} body
   * @param {Response} response
   */
  #unauthenticated(body, response) {
    const detail = this.#endDetail(body);
    this.#end(detail);
    if (this.#onUnauthenticated) {
      try {
        this.#onUnauthenticated({ ...detail, response });
      } catch (error) {
        report(error);
      }
    }
  }

  /**
   * An action needs a stronger sign-in: the session stays; `stepuprequired` and `onStepUp`.
   * @param {any} body
   * @param {Response} response
   */
  #stepUpRequired(body, response) {
    const detail = stepUpDetail(body);
    this.dispatchEvent(makeEvent('stepuprequired', detail));
    if (this.#onStepUp) {
      try {
        this.#onStepUp({ ...detail, response });
      } catch (error) {
        report(error);
      }
    }
  }

  /** @param {SessionEndDetail} detail */
  #end(detail) {
    this.#user = null;
    this.#clearTimers();
    this.#absoluteDeadline = this.#idleDeadline = this.#idleWindow = Infinity;
    this.#expiringEmitted = false;
    this.dispatchEvent(makeEvent('sessionend', detail));
  }

  /**
   * @param {GatehouseUser} user
   * @param {boolean} slid whether this read extended the idle timeout
   */
  #setUser(user, slid) {
    const previous = this.#user;
    this.#user = user;
    const now = Date.now();
    const timing = user?.session;
    this.#absoluteDeadline = isSeconds(timing?.expires_in) ? now + timing.expires_in * 1000 : Infinity;
    if (isSeconds(timing?.idle_expires_in)) {
      const idle = timing.idle_expires_in * 1000;
      this.#idleDeadline = now + idle;
      // A sliding read reports the whole idle timeout; a non-sliding one only what is left of it.
      if (slid || previous?.sid !== user.sid || this.#idleWindow === Infinity) this.#idleWindow = idle;
    } else {
      this.#idleDeadline = this.#idleWindow = Infinity;
    }
    this.#schedule();
    this.dispatchEvent(makeEvent('user', user));
  }

  /** A successful request through Gatehouse: the idle timeout starts again. */
  #activity() {
    if (!this.#user || this.#idleWindow === Infinity) return;
    this.#idleDeadline = Date.now() + this.#idleWindow;
    this.#schedule();
  }

  #clearTimers() {
    stopTimer(this.#expiringTimer);
    stopTimer(this.#checkTimer);
    this.#expiringTimer = this.#checkTimer = undefined;
  }

  #deadline() {
    return Math.min(this.#absoluteDeadline, this.#idleDeadline);
  }

  #schedule() {
    this.#clearTimers();
    if (this.#disposed || !this.#user) return;
    const deadline = this.#deadline();
    if (deadline === Infinity) return;
    const now = Date.now();
    const expiringAt = deadline - this.#threshold * 1000;
    if (expiringAt > now) {
      this.#expiringEmitted = false;
      this.#expiringTimer = startTimer(() => this.#expiring(), expiringAt - now);
    } else if (!this.#expiringEmitted) {
      this.#expiringTimer = startTimer(() => this.#expiring(), 0);
    }
    this.#checkTimer = startTimer(() => this.#check(), Math.max(deadline - now + CHECK_GRACE, MIN_CHECK_DELAY));
  }

  #expiring() {
    this.#expiringTimer = undefined;
    this.#expiringEmitted = true;
    const deadline = this.#deadline();
    this.dispatchEvent(
      makeEvent('sessionexpiring', {
        expiresIn: Math.max(0, Math.round((deadline - Date.now()) / 1000)),
        idle: this.#idleDeadline <= this.#absoluteDeadline,
      }),
    );
  }

  /** At the expected expiry: ask Gatehouse (without sliding) whether the session is gone. */
  async #check() {
    this.#checkTimer = undefined;
    try {
      // null ends the session (sessionend); a user reschedules from the fresh numbers.
      await this.getUser({ slide: false });
    } catch {
      if (!this.#disposed && this.#user && !this.#checkTimer) {
        this.#checkTimer = startTimer(() => this.#check(), CHECK_RETRY_DELAY);
      }
    }
  }
}
