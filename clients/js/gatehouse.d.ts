// Type declarations for the Gatehouse browser client (gatehouse.js, served at /bff/client.js).
// Hand-written; gatehouse.js is type-checked against these declarations (see tsconfig.json).

/** Claims of the signed-in user: the ID token's claims merged with the userinfo response. */
export interface GatehouseClaims {
  sub: string;
  [name: string]: unknown;
}

/** Timing of the current session, as reported by `GET /bff/user`. */
export interface GatehouseSessionTiming {
  /** RFC 3339 time the session was created. */
  created_at: string;
  /** RFC 3339 time of the absolute expiry. */
  expires_at: string;
  /** Seconds until the absolute expiry. */
  expires_in: number;
  /** Seconds until the idle expiry if nothing else happens. */
  idle_expires_in: number;
}

/** The body of `GET /bff/user` (200). */
export interface GatehouseUser {
  claims: GatehouseClaims;
  /** The session's public handle (not the cookie value). */
  sid: string;
  session: GatehouseSessionTiming;
  /** A `GET` logout link carrying `sid` (for plain `<a href>` logout). */
  logout_url: string;
  /** The login's authentication context class (the `acr` claim), when the provider sent one. */
  acr?: string;
  /** The name of the provider the user signed in with, in an app of several providers. */
  provider?: string;
  /** When the user last authenticated at the provider (the `auth_time` claim, seconds since the epoch). */
  auth_time?: number;
}

/** One entry of `GET /bff/sessions`. */
export interface GatehouseSession {
  sid: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  user_agent: string;
  ip: string;
  /** True for the session making the request. */
  current: boolean;
}

/**
 * Why a session ended: a `reason` from Gatehouse's `401` body, `logged_out` after `logout()`,
 * `session_revoked` after `endSession()` of the current session, or `unauthenticated` when the
 * `401` body carried no reason.
 */
export type SessionEndReason =
  | 'no_session'
  | 'session_expired'
  | 'session_revoked'
  | 'refresh_failed'
  | 'logged_out'
  | 'unauthenticated'
  | (string & {});

/** `detail` of the `sessionend` event. */
export interface SessionEndDetail {
  reason: SessionEndReason;
  /** Gatehouse's login URL (the `login_url` of the 401 body, or `${basePath}/login`). */
  loginUrl: string;
}

/** `detail` of the `sessionexpiring` event. */
export interface SessionExpiringDetail {
  /** Seconds until the session expires (as far as the client knows). */
  expiresIn: number;
  /** True when the idle timeout comes first, so activity (e.g. `getUser()`) would extend the session. */
  idle: boolean;
}

/** Argument of `onUnauthenticated`. */
export interface UnauthenticatedInfo extends SessionEndDetail {
  /** The `401` response (its body is still unread: the client read a clone). */
  response: Response;
}

/**
 * `detail` of the `stepuprequired` event: Gatehouse answered `401 step_up_required` (RFC 9470),
 * so the action needs a stronger or more recent sign-in. The session stays as it is.
 */
export interface StepUpDetail {
  /** Why: `insufficient_user_authentication`. */
  reason: string;
  /** Space-separated acr values one of which the sign-in must reach, or `null`. */
  acrValues: string | null;
  /** Seconds: the sign-in must be at most this old, or `null`. */
  maxAge: number | null;
  /** Gatehouse's own login URL for this step-up (returning to the page that made the call), or `null`. */
  loginUrl: string | null;
}

/** Argument of `onStepUp`. */
export interface StepUpInfo extends StepUpDetail {
  /** The `401` response (its body is still unread: the client read a clone). */
  response: Response;
}

/**
 * What a step-up sign-in asks for: a `StepUpDetail` (or `StepUpInfo`), or a `step_up_required`
 * body as Gatehouse sent it (`acr_values`, `max_age`).
 */
export interface StepUpRequest {
  acrValues?: string | null;
  maxAge?: number | null;
  acr_values?: string | null;
  max_age?: number | null;
}

export interface StepUpOptions {
  /** Local path to come back to after the sign-in. Default: the current path, query and hash. */
  returnUrl?: string;
}

/** The parts of `window.location` the client uses. */
export interface GatehouseLocation {
  readonly origin: string;
  readonly pathname: string;
  readonly search: string;
  readonly hash: string;
  /** Used to resolve relative URLs; defaults to `origin + pathname + search`. */
  readonly href?: string;
  assign(url: string): void;
}

/** A `fetch`-compatible function. */
export type GatehouseFetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

export interface GatehouseOptions {
  /** Where Gatehouse's endpoints live (a same-origin path). Default `'/bff'`. */
  basePath?: string;
  /** Name of the CSRF header. Default `'X-CSRF'`. */
  csrfHeader?: string;
  /** Value of the CSRF header. Default `'1'`. */
  csrfValue?: string;
  /**
   * Called when a request made through the client gets Gatehouse's `401 unauthenticated`
   * (not for `getUser()`). Default: `client.login()` back to the current page.
   * `null` turns the default off.
   */
  onUnauthenticated?: ((info: UnauthenticatedInfo) => void) | null;
  /**
   * Called when a request made through the client gets Gatehouse's `401 step_up_required`
   * (after the `stepuprequired` event). Default: `client.stepUp(info)`, a sign-in with the
   * asked `acr_values`/`max_age` back to the current page, except when this tab started the
   * same step-up less than a minute ago (no login loop; an error is reported instead). `null`
   * turns the default off (handle the event or the response yourself, e.g. to ask the user first).
   */
  onStepUp?: ((info: StepUpInfo) => void) | null;
  /** Seconds before expiry at which `sessionexpiring` fires. Default `60`. */
  expiringThreshold?: number;
  /** The `fetch` to use. Default `globalThis.fetch`. */
  fetch?: GatehouseFetch;
  /** The location to read and navigate. Default `globalThis.location`. */
  location?: GatehouseLocation;
  /** The document `trySilentLogin()` adds its hidden iframe to. Default `globalThis.document`. */
  document?: Document;
}

/** Options of `trySilentLogin()`. */
export interface SilentLoginOptions {
  /** Milliseconds to wait for the frame's answer before resolving `false`. Default `10000`. */
  timeout?: number;
}

export interface GetUserOptions {
  /** `false` reads the user without extending the idle timeout (`?slide=false`). Default `true`. */
  slide?: boolean;
}

export interface LogoutOptions {
  /** Local path where the logout finally lands. Anything else becomes `/`. */
  returnUrl?: string;
}

export interface GatehouseEventMap {
  sessionend: CustomEvent<SessionEndDetail>;
  sessionexpiring: CustomEvent<SessionExpiringDetail>;
  stepuprequired: CustomEvent<StepUpDetail>;
  user: CustomEvent<GatehouseUser>;
}

export interface GatehouseClient extends EventTarget {
  /** The user returned by the last `getUser()`, or `null` (unknown, anonymous, or ended). */
  readonly user: GatehouseUser | null;

  /**
   * `fetch` with Gatehouse's conventions: same-origin requests get `credentials: 'same-origin'`
   * and the CSRF header; cross-origin requests are passed through untouched. Resolves with the
   * response also on `401` (after emitting `sessionend` and calling `onUnauthenticated`, or for
   * `step_up_required` after emitting `stepuprequired` and calling `onStepUp`).
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;

  /** The current user, or `null` when there is no session. Throws `GatehouseError` otherwise. */
  getUser(options?: GetUserOptions): Promise<GatehouseUser | null>;

  /** The login URL for a local `returnUrl` (default: the current path, query and hash). */
  loginUrl(returnUrl?: string, options?: { provider?: string }): string;

  /** Navigates to the login URL (`location.assign`). */
  login(returnUrl?: string, options?: { provider?: string }): void;

  /**
   * The login URL of a step-up sign-in: `acr_values` and `max_age` from `request`, and a local
   * `returnUrl` (default: the current path, query and hash).
   */
  stepUpUrl(request?: StepUpRequest | null, options?: StepUpOptions): string;

  /** Navigates to `stepUpUrl(request, options)` (`location.assign`). */
  stepUp(request?: StepUpRequest | null, options?: StepUpOptions): void;

  /**
   * A silent login (`GET /bff/silent-login` in a hidden iframe, `prompt=none` at the
   * provider): resolves `true` when the provider signed the user in without interaction (a
   * new session exists; call `getUser()` next), `false` when it could not, or no answer came
   * within `timeout`. Only a message from that frame, of this origin, counts.
   */
  trySilentLogin(options?: SilentLoginOptions): Promise<boolean>;

  /** `POST /bff/logout`, emits `sessionend` (`logged_out`), then navigates to the provider's logout. */
  logout(options?: LogoutOptions): Promise<void>;

  /** The caller's sessions (`GET /bff/sessions`). */
  sessions(): Promise<GatehouseSession[]>;

  /** Ends one of the caller's sessions (`DELETE /bff/sessions/{sid}`). */
  endSession(sid: string): Promise<void>;

  /** Ends all of the caller's sessions except the current one. */
  endOtherSessions(): Promise<void>;

  /** Stops the session timers. The client can still make requests but schedules nothing. */
  dispose(): void;

  addEventListener<K extends keyof GatehouseEventMap>(
    type: K,
    listener: (this: GatehouseClient, event: GatehouseEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof GatehouseEventMap>(
    type: K,
    listener: (this: GatehouseClient, event: GatehouseEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

export interface GatehouseErrorDetails {
  status: number;
  code?: string | null;
  reason?: string | null;
  body?: unknown;
}

/** A Gatehouse endpoint answered with an unexpected status. */
export class GatehouseError extends Error {
  constructor(message: string, details: GatehouseErrorDetails);
  readonly name: 'GatehouseError';
  /** HTTP status. */
  readonly status: number;
  /** The JSON body's `error`, if any. */
  readonly code: string | null;
  /** The JSON body's `reason`, if any. */
  readonly reason: string | null;
  /** The parsed JSON body, or `null`. */
  readonly body: unknown;
}

/** Creates a client. */
export function createClient(options?: GatehouseOptions): GatehouseClient;
