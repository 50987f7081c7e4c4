// A real OpenID Provider for Gatehouse's end-to-end tests: npm `oidc-provider` (OpenID
// Certified) with a test-friendly configuration, plain offline pages, a token log and a few
// control endpoints.
//
//   node e2e/provider/server.mjs <config.json>
//
// Listens on 127.0.0.1 only, prints exactly one line "READY <issuer>" on stdout once it
// listens, and exits cleanly on SIGTERM / SIGINT (and, when the config says "exitOnStdinClose",
// when its stdin is closed, so that it never outlives the test process that started it).
// Everything else it says goes to stderr. See README.md beside this file for the config format.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';

import { Store, createAdapterFactory } from './adapter.mjs';
import {
  errorPage, loginPage, logoutPage, logoutSuccessPage,
} from './pages.mjs';

// stdout carries the READY line and nothing else: oidc-provider prints its notices with
// console.info, so send every console method to stderr before loading it.
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}

function fatal(message) {
  process.stderr.write(`provider: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// configuration

const configPath = process.argv[2];
if (!configPath) fatal('usage: node server.mjs <config.json>');

let cfg;
try {
  cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
} catch (err) {
  fatal(`cannot read config ${configPath}: ${err.message}`);
}

const port = Number(cfg.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fatal('config: "port" must be a TCP port');
if (typeof cfg.issuer !== 'string' || !cfg.issuer) fatal('config: "issuer" is required');
if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) fatal('config: "clients" must be a non-empty array');

const issuerURL = new URL(cfg.issuer);
// "http://127.0.0.1:9000/" and "http://127.0.0.1:9000" mount at the root, ".../oidc" (or
// ".../oidc/") under /oidc.
const mountPath = issuerURL.pathname.replace(/\/+$/, '');

const num = (value, fallback) => (typeof value === 'number' && value > 0 ? value : fallback);
const ttls = {
  accessToken: num(cfg.accessTokenTTL, 60),
  idToken: num(cfg.idTokenTTL, 3600),
  refreshToken: num(cfg.refreshTokenTTL, 86400),
  clientCredentials: num(cfg.clientCredentialsTTL, 60),
  session: num(cfg.sessionTTL, 86400),
  grant: num(cfg.grantTTL, 14 * 86400),
  interaction: num(cfg.interactionTTL, 3600),
  authorizationCode: num(cfg.authorizationCodeTTL, 60),
};

// Authentication context classes (acr) the provider offers, weakest first. Empty: no acr at all.
const acrValues = cfg.acrValues ?? [];
if (!Array.isArray(acrValues) || acrValues.some((v) => typeof v !== 'string' || !v)) {
  fatal('config: "acrValues" must be an array of non-empty strings');
}

const users = new Map();
for (const user of cfg.users ?? [{ id: 'alice', password: 'wonderland', claims: {} }]) {
  if (!user.id || typeof user.password !== 'string') fatal('config: every user needs "id" and "password"');
  if (user.acr !== undefined && (!Array.isArray(user.acr) || user.acr.some((v) => !acrValues.includes(v)))) {
    fatal(`config: user ${user.id}: "acr" must be a list of values from "acrValues"`);
  }
  users.set(user.id, user);
}

// The acr a login gets: the first of the request's acr_values this user may reach, else the
// weakest the user has (their first "acr", or the provider's first of "acrValues").
function loginACR(user, requested) {
  if (acrValues.length === 0) return undefined;
  const mine = user.acr?.length ? user.acr : [acrValues[0]];
  const wanted = (requested ?? '').split(' ').filter(Boolean);
  return wanted.find((v) => mine.includes(v)) ?? mine[0];
}

function findUserByLogin(login) {
  if (users.has(login)) return users.get(login);
  const wanted = String(login).toLowerCase();
  for (const user of users.values()) {
    if (typeof user.claims?.email === 'string' && user.claims.email.toLowerCase() === wanted) return user;
  }
  return undefined;
}

const resources = new Map();
for (const rs of cfg.resources ?? []) {
  if (!rs.resource) fatal('config: every resource needs "resource"');
  resources.set(rs.resource, rs);
}
const resourceScopes = new Set([...resources.values()].flatMap((rs) => (rs.scope ?? '').split(' ').filter(Boolean)));

// Claims released per scope. With conformIdTokenClaims: false they go into the ID token too.
const claims = {
  acr: null,
  auth_time: null,
  iss: null,
  sid: null,
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at'],
  phone: ['phone_number', 'phone_number_verified'],
  address: ['address'],
  groups: ['groups'],
  ...(cfg.claims ?? {}),
};
// With acr values every ID token says how and when the user signed in (oidc-provider
// otherwise adds acr only when acr_values asked, and auth_time only for max_age).
if (acrValues.length > 0) claims.openid = [...new Set([...claims.openid, 'acr', 'auth_time'])];

// Every scope any client may ask for is a known OpenID scope, except the resource servers'.
const scopes = new Set(['openid', 'offline_access', ...(cfg.scopes ?? [])]);
for (const client of cfg.clients) {
  for (const scope of (client.scope ?? '').split(' ').filter(Boolean)) {
    if (!resourceScopes.has(scope)) scopes.add(scope);
  }
}

// ---------------------------------------------------------------------------------------------
// token log and statistics

function logSecret(kind, value) {
  if (!cfg.tokenLog || typeof value !== 'string' || !value) return;
  // Synchronous, so the line is on disk before the response that carries the secret is sent.
  fs.appendFileSync(cfg.tokenLog, `${JSON.stringify({ kind, value })}\n`);
}

function newStats() {
  return {
    token_requests: { authorization_code: 0, refresh_token: 0, client_credentials: 0 },
    token_responses: {},
    revocations: 0,
    introspections: 0,
    userinfo_requests: 0,
    authorization_requests: 0,
    pushed_authorization_requests: 0,
    end_session_requests: 0,
    logins: 0,
    failed_logins: 0,
    backchannel: [],
    // With "recordRefreshes": every refresh grant that reached oidc-provider: a hash of the
    // refresh token presented (never the token), its grant and account, the status, when.
    refresh_uses: [],
  };
}
let stats = newStats();

function countTokenRequest(grantType) {
  const key = typeof grantType === 'string' && grantType ? grantType : 'unknown';
  stats.token_requests[key] = (stats.token_requests[key] ?? 0) + 1;
}

function countTokenResponse(status) {
  const key = String(status);
  stats.token_responses[key] = (stats.token_responses[key] ?? 0) + 1;
}

const faults = { mode: 'normal', ms: 0 };

function decodeJwtPayload(jwt) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function capturePayloadSecrets(params) {
  for (const kind of ['code', 'access_token', 'id_token', 'refresh_token']) {
    const value = params.get(kind);
    if (value) logSecret(kind === 'code' ? 'authorization_code' : kind, value);
  }
}

// Authorization responses (query or fragment in a redirect, or a form_post page).
function captureAuthorizationResponse(ctx) {
  const location = ctx.response.get('Location');
  if (location) {
    let url;
    try {
      url = new URL(location, 'http://127.0.0.1');
    } catch {
      url = undefined;
    }
    if (url) {
      capturePayloadSecrets(url.searchParams);
      if (url.hash.length > 1) capturePayloadSecrets(new URLSearchParams(url.hash.slice(1)));
    }
  }
  if (typeof ctx.body === 'string' && ctx.body.includes('type="hidden"')) {
    const params = new URLSearchParams();
    for (const m of ctx.body.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g)) {
      params.set(m[1], m[2].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
    }
    capturePayloadSecrets(params);
  }
}

// ---------------------------------------------------------------------------------------------
// keys

function generateJwks() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rs256-${crypto.randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' },
      { ...ec, kid: `es256-${crypto.randomBytes(4).toString('hex')}`, alg: 'ES256', use: 'sig' },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// the provider

const { default: Provider, errors, interactionPolicy } = await import('oidc-provider');

// The login prompt also comes back when acr_values asks for a class the provider session
// does not have (a step-up), unless this very interaction just logged in: oidc-provider only
// does that for an essential acr claim.
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check('acr_values', 'requested ACR not met by the session', (ctx) => {
  const { oidc } = ctx;
  const requested = oidc.params.acr_values;
  if (acrValues.length === 0 || !requested || !oidc.session.accountId || oidc.result?.login) {
    return interactionPolicy.Check.NO_NEED_TO_PROMPT;
  }
  return requested.split(' ').includes(oidc.session.acr)
    ? interactionPolicy.Check.NO_NEED_TO_PROMPT
    : interactionPolicy.Check.REQUEST_PROMPT;
}));

const store = new Store();

// RFC 8705: with "mtls", a second listener speaks TLS on its own port, asks every client
// for a certificate (verified against mtls.clientCA for tls_client_auth, taken as it is for
// self_signed_tls_client_auth), and discovery names its endpoints as mtls_endpoint_aliases.
const mtls = cfg.mtls;
if (mtls && (!Number.isInteger(mtls.port) || !mtls.cert || !mtls.key || !mtls.clientCA)) {
  fatal('config: "mtls" needs port, cert, key and clientCA');
}
const mtlsBase = mtls ? `https://127.0.0.1:${mtls.port}${mountPath}` : '';

function peerCertificate(ctx) {
  const c = ctx.req.socket.getPeerCertificate?.();
  return c && c.raw ? c : undefined;
}

const configuration = {
  adapter: createAdapterFactory(store),
  ...(mtls
    ? {
        clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
          'tls_client_auth', 'self_signed_tls_client_auth'],
        discovery: {
          mtls_endpoint_aliases: {
            token_endpoint: `${mtlsBase}/token`,
            revocation_endpoint: `${mtlsBase}/token/revocation`,
            introspection_endpoint: `${mtlsBase}/token/introspection`,
            userinfo_endpoint: `${mtlsBase}/me`,
            pushed_authorization_request_endpoint: `${mtlsBase}/request`,
          },
        },
      }
    : {}),
  clients: cfg.clients,
  jwks: cfg.jwks ?? generateJwks(),
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    // Cookies ignore ports: name them per provider so that two providers (or a provider and
    // a gateway) on 127.0.0.1 never overwrite each other's cookies in one browser.
    names: {
      session: `op${port}_session`,
      interaction: `op${port}_interaction`,
      resume: `op${port}_interaction_resume`,
    },
  },
  claims,
  acrValues,
  scopes: [...scopes],
  conformIdTokenClaims: false,
  clockTolerance: 0,
  responseTypes: ['code'],
  pkce: {
    // PKCE for every client; oidc-provider 9 only implements S256 (no "plain").
    required: () => true,
  },
  rotateRefreshToken: cfg.rotateRefreshToken !== false,
  features: {
    devInteractions: { enabled: false },
    mTLS: mtls
      ? {
          enabled: true,
          tlsClientAuth: true,
          selfSignedTlsClientAuth: true,
          getCertificate(ctx) {
            const c = peerCertificate(ctx);
            return c ? new crypto.X509Certificate(c.raw).toString() : undefined;
          },
          certificateAuthorized(ctx) {
            return ctx.req.socket.authorized === true;
          },
          certificateSubjectMatches(ctx, property, expected) {
            const c = peerCertificate(ctx);
            return property === 'tls_client_auth_subject_dn' && !!c && `CN=${c.subject?.CN}` === expected;
          },
        }
      : { enabled: false },
    // RFC 9449: on, as oidc-provider has it; dpopNonce: true makes every proof need a
    // server nonce (use_dpop_nonce first).
    dPoP: cfg.dpopNonce
      ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    // RFC 9126: offered by default, as oidc-provider does; "off" or "required" by config.
    pushedAuthorizationRequests: {
      enabled: cfg.par !== 'off',
      requirePushedAuthorizationRequests: cfg.par === 'required',
    },
    revocation: {
      enabled: true,
      // A client may revoke only its own tokens (oidc-provider's default policy, made explicit).
      async allowedPolicy(_ctx, client, token) {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    introspection: {
      enabled: true,
      // Any authenticated client may introspect (public clients only their own tokens).
      async allowedPolicy(_ctx, client, token) {
        return client.clientAuthMethod !== 'none' || token.clientId === client.clientId;
      },
    },
    clientCredentials: { enabled: true },
    backchannelLogout: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, formHtml) {
        ctx.type = 'html';
        ctx.body = logoutPage({ formHtml, host: ctx.host });
      },
      async postLogoutSuccessSource(ctx) {
        ctx.type = 'html';
        ctx.body = logoutSuccessPage({ clientId: ctx.oidc.client?.clientId });
      },
    },
    resourceIndicators: {
      enabled: true,
      // Without a resource parameter a token is the normal, opaque, userinfo-capable one.
      async defaultResource(_ctx, _client, oneOf) {
        return oneOf ?? undefined;
      },
      async useGrantedResource() {
        return false;
      },
      async getResourceServerInfo(_ctx, resourceIndicator) {
        const rs = resources.get(resourceIndicator);
        if (!rs) throw new errors.InvalidTarget();
        const info = {
          scope: rs.scope ?? '',
          audience: rs.audience ?? rs.resource,
          accessTokenTTL: num(rs.accessTokenTTL, ttls.accessToken),
          accessTokenFormat: rs.accessTokenFormat === 'opaque' ? 'opaque' : 'jwt',
        };
        if (info.accessTokenFormat === 'jwt') info.jwt = { sign: { alg: rs.alg ?? 'RS256' } };
        return info;
      },
    },
  },
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || ttls.accessToken,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || ttls.clientCredentials,
    IdToken: ttls.idToken,
    RefreshToken: ttls.refreshToken,
    AuthorizationCode: ttls.authorizationCode,
    Session: ttls.session,
    Grant: ttls.grant,
    Interaction: ttls.interaction,
  },
  interactions: {
    policy,
    url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}`,
  },
  // Access tokens carry the login's acr (in a JWT's payload, or, for opaque tokens, in what
  // introspection returns), so that a test API can ask for a stronger login.
  async extraTokenClaims(ctx, token) {
    if (acrValues.length === 0 || token.kind !== 'AccessToken') return undefined;
    const entities = ctx?.oidc?.entities ?? {};
    const acr = entities.AuthorizationCode?.acr ?? entities.RefreshToken?.acr;
    return acr ? { acr } : undefined;
  },
  async findAccount(_ctx, sub) {
    const user = users.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { ...(user.claims ?? {}), sub };
      },
    };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = errorPage({ error: out.error, description: out.error_description });
  },
  // oidc-provider guards its outgoing requests (back-channel logout, jwks_uri, ...) against
  // special-use addresses, loopback included, by handing `fetch` an undici dispatcher that
  // destroys such sockets. Dropping that dispatcher lets back-channel logout reach 127.0.0.1.
  // Logout tokens are logged and every back-channel POST is recorded for /__test/stats.
  async fetch(url, options) {
    delete options.dispatcher;
    const body = options.body instanceof URLSearchParams ? options.body : undefined;
    const logoutToken = body?.get('logout_token');
    if (!logoutToken) return globalThis.fetch(url, options);

    logSecret('logout_token', logoutToken);
    const payload = decodeJwtPayload(logoutToken);
    const entry = {
      client_id: Array.isArray(payload.aud) ? payload.aud[0] : payload.aud,
      status: 0,
      sid: payload.sid ?? '',
      sub: payload.sub ?? '',
      url: String(url),
    };
    try {
      const response = await globalThis.fetch(url, options);
      entry.status = response.status;
      return response;
    } catch (err) {
      entry.error = err.cause?.message ?? err.message;
      throw err;
    } finally {
      stats.backchannel.push(entry);
    }
  },
};

const provider = new Provider(cfg.issuer, configuration);

// ---------------------------------------------------------------------------------------------
// token exchange (RFC 8693), which oidc-provider leaves to a registered grant: a live access
// token of this provider, issued to the same client, is exchanged for an opaque access token
// for one of cfg.exchangeAudiences (given as audience or resource), with the subject token's
// account and grant (so that revoking the grant revokes it too) and the requested scope.

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const exchangeAudiences = new Set(cfg.exchangeAudiences ?? []);

provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const { params, client } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens can be exchanged here');
  }
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens are issued here');
  }
  const subject = await provider.AccessToken.find(params.subject_token);
  if (!subject || subject.isExpired || subject.clientId !== client.clientId) {
    throw new errors.InvalidGrant('subject_token is not a live access token of this client');
  }
  const audience = params.audience || params.resource;
  if (!audience || !exchangeAudiences.has(audience)) throw new errors.InvalidTarget();
  const token = new provider.AccessToken({
    accountId: subject.accountId,
    client,
    grantId: subject.grantId,
    gty: 'token_exchange',
    scope: params.scope || undefined,
    aud: audience,
    sid: subject.sid,
  });
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    scope: token.scope,
  };
}, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope', 'actor_token', 'actor_token_type']);

provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`provider: server_error: ${err?.stack ?? err}\n`);
});
provider.on('backchannel.error', (_ctx, err, client) => {
  process.stderr.write(`provider: back-channel logout to ${client?.clientId} failed: ${err?.message}\n`);
});

// ---------------------------------------------------------------------------------------------
// interactions: login form, automatic consent

async function interactionRoutes(ctx) {
  const m = /^\/interaction\/([^/]+)(\/login|\/abort)?$/.exec(ctx.path);
  if (!m) {
    ctx.status = 404;
    ctx.type = 'html';
    ctx.body = errorPage({ error: 'not_found' });
    return;
  }
  const [, uid, action] = m;
  const base = `${mountPath}/interaction/${uid}`;

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = errorPage({ error: err.error ?? 'invalid_request', description: err.error_description ?? 'interaction not found' });
    return;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = errorPage({ error: 'invalid_request', description: 'interaction mismatch' });
    return;
  }
  ctx.set('Cache-Control', 'no-store');
  const { prompt, params } = details;

  // merge: keep this flow's login in a later interaction's result (consent), so that the
  // acr_values check sees that the user has just signed in (with acr values only).
  const finish = async (result, merge = false) => {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
    ctx.status = 303;
    ctx.redirect(returnTo);
  };

  if (action === '/abort') {
    if (ctx.method !== 'POST') { ctx.status = 405; return; }
    await finish({ error: 'access_denied', error_description: 'End-User aborted interaction' });
    return;
  }

  if (action === '/login') {
    if (ctx.method !== 'POST') { ctx.status = 405; return; }
    const form = new URLSearchParams(await readBody(ctx.req));
    const login = form.get('login') ?? '';
    const user = findUserByLogin(login);
    if (prompt.name !== 'login') {
      // Already past login (e.g. a resubmitted form): carry on with the flow.
      ctx.status = 303;
      ctx.redirect(base);
      return;
    }
    if (!user || !crypto.timingSafeEqual(
      crypto.createHash('sha256').update(form.get('password') ?? '').digest(),
      crypto.createHash('sha256').update(user.password).digest(),
    )) {
      stats.failed_logins += 1;
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage({
        action: `${base}/login`, abortAction: `${base}/abort`, clientId: params.client_id, login, error: 'Invalid username or password.',
      });
      return;
    }
    stats.logins += 1;
    const acr = loginACR(user, params.acr_values);
    // ts: a later merge of this result (see finish) keeps the time of this login.
    await finish({ login: { accountId: user.id, remember: true, ts: Math.floor(Date.now() / 1000), ...(acr ? { acr } : undefined) } });
    return;
  }

  if (ctx.method !== 'GET') { ctx.status = 405; return; }

  if (prompt.name === 'login') {
    ctx.status = 200;
    ctx.type = 'html';
    ctx.body = loginPage({
      action: `${base}/login`, abortAction: `${base}/abort`, clientId: params.client_id, login: params.login_hint ?? '',
    });
    return;
  }

  if (prompt.name === 'consent') {
    // Consent is given automatically: grant everything that was asked for.
    const { details: missing } = prompt;
    let grant;
    if (details.grantId) grant = await provider.Grant.find(details.grantId);
    const existing = !!grant;
    if (!grant) grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, list] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, list.join(' '));
      }
    }
    const grantId = await grant.save();
    await finish({ consent: existing ? {} : { grantId } }, acrValues.length > 0);
    return;
  }

  ctx.status = 400;
  ctx.type = 'html';
  ctx.body = errorPage({ error: 'invalid_request', description: `unsupported prompt ${prompt.name}` });
}

// ---------------------------------------------------------------------------------------------
// middleware on the provider's own koa app (runs before oidc-provider's routes)

async function tokenEndpoint(ctx, next) {
  const { mode, ms } = faults;
  if (mode === '503' || mode === 'reset' || mode === '429') {
    let grantType;
    try {
      grantType = new URLSearchParams(await readBody(ctx.req)).get('grant_type');
    } catch {
      grantType = undefined;
    }
    countTokenRequest(grantType);
    if (mode === 'reset') {
      countTokenResponse('reset');
      ctx.respond = false;
      const { socket } = ctx.req;
      if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else socket.destroy();
      return;
    }
    if (mode === '429') {
      // A busy provider: Retry-After in whole seconds (ms rounded up), at least 1.
      countTokenResponse(429);
      ctx.status = 429;
      ctx.set('Cache-Control', 'no-store');
      ctx.set('Retry-After', String(Math.max(1, Math.ceil(ms / 1000))));
      ctx.body = { error: 'temporarily_unavailable', error_description: 'too many requests (injected fault)' };
      return;
    }
    countTokenResponse(503);
    ctx.status = 503;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error: 'temporarily_unavailable', error_description: 'the token endpoint is unavailable (injected fault)' };
    return;
  }
  if (mode === 'delay' && ms > 0) await sleep(ms);

  try {
    await next();
  } finally {
    const grantType = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type;
    countTokenRequest(grantType);
    countTokenResponse(ctx.status);
    const presented = ctx.oidc?.params?.refresh_token;
    if (cfg.recordRefreshes && grantType === 'refresh_token' && typeof presented === 'string') {
      const rt = ctx.oidc?.entities?.RefreshToken;
      stats.refresh_uses.push({
        rt: crypto.createHash('sha256').update(presented).digest('hex').slice(0, 16),
        grant: rt?.grantId ?? '',
        sub: rt?.accountId ?? '',
        status: ctx.status,
        at: Date.now(),
      });
    }
    const body = ctx.body;
    if (body && typeof body === 'object' && !Buffer.isBuffer(body)) {
      for (const kind of ['access_token', 'refresh_token', 'id_token']) logSecret(kind, body[kind]);
    }
  }
}

provider.use(async (ctx, next) => {
  // oidc-provider builds its URLs from ctx.mountPath when the request path was rewritten.
  ctx.mountPath = mountPath;
  const path = ctx.path;

  if (path === '/interaction' || path.startsWith('/interaction/')) {
    await interactionRoutes(ctx);
    return;
  }
  if (path === '/token') {
    await tokenEndpoint(ctx, next);
    return;
  }

  if (path === '/token/revocation' && ctx.method === 'POST') stats.revocations += 1;
  else if (path === '/token/introspection' && ctx.method === 'POST') stats.introspections += 1;
  else if (path === '/me') stats.userinfo_requests += 1;
  else if (path === '/auth') stats.authorization_requests += 1;
  else if (path === '/session/end') stats.end_session_requests += 1;
  else if (path === '/request' && ctx.method === 'POST') stats.pushed_authorization_requests += 1;

  await next();

  if (path === '/auth' || path.startsWith('/auth/')) captureAuthorizationResponse(ctx);
});

// ---------------------------------------------------------------------------------------------
// control endpoints

function revokeGrant(grantId) {
  store.revokeByGrantId(grantId);
  store.delete(`Grant:${grantId}`);
}

function revokeGrantsOf(sub) {
  let n = 0;
  for (const [grantId, grant] of store.list('Grant')) {
    if (grant.accountId === sub) {
      revokeGrant(grantId);
      n += 1;
    }
  }
  return n;
}

// Ends every provider session of an account, as an admin "sign out everywhere" would:
// a back-channel logout to every client of each session, all of the sessions' grants revoked
// (offline_access ones included), the sessions gone.
async function endSessionsOf(sub) {
  let sessions = 0;
  let backchannel = 0;
  for (const [id, session] of store.list('Session')) {
    if (session.accountId !== sub) continue;
    sessions += 1;
    const pending = [];
    for (const [clientId, authorization] of Object.entries(session.authorizations ?? {})) {
      const client = await provider.Client.find(clientId);
      if (client?.backchannelLogoutUri) {
        backchannel += 1;
        pending.push(client.backchannelLogout(sub, authorization.sid).catch((err) => {
          process.stderr.write(`provider: back-channel logout to ${clientId} failed: ${err.message}\n`);
        }));
      }
      // Unlike the provider's own end_session (which keeps grants that "persist logout",
      // i.e. offline_access ones), an admin ending the sessions revokes every grant of them.
      if (authorization.grantId) revokeGrant(authorization.grantId);
    }
    await Promise.all(pending);
    store.removeSecondaryIndexes(session, id);
    store.delete(`Session:${id}`);
  }
  return { sessions, backchannel };
}

function sendJSON(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}

async function control(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /__test/stats':
      sendJSON(res, 200, stats);
      return;
    case 'POST /__test/reset':
      stats = newStats();
      sendJSON(res, 200, { ok: true });
      return;
    case 'POST /__test/token-endpoint': {
      const mode = url.searchParams.get('mode') ?? 'normal';
      if (!['normal', '503', '429', 'reset', 'delay'].includes(mode)) {
        sendJSON(res, 400, { error: 'invalid_request', error_description: 'mode must be normal, 503, 429, reset or delay' });
        return;
      }
      faults.mode = mode;
      faults.ms = Math.max(0, Number(url.searchParams.get('ms') ?? 0) || 0);
      sendJSON(res, 200, { ...faults });
      return;
    }
    case 'POST /__test/revoke-grants': {
      const sub = url.searchParams.get('sub');
      if (!sub) { sendJSON(res, 400, { error: 'invalid_request', error_description: 'sub is required' }); return; }
      sendJSON(res, 200, { revoked: revokeGrantsOf(sub) });
      return;
    }
    case 'POST /__test/end-sessions': {
      const sub = url.searchParams.get('sub');
      if (!sub) { sendJSON(res, 400, { error: 'invalid_request', error_description: 'sub is required' }); return; }
      sendJSON(res, 200, await endSessionsOf(sub));
      return;
    }
    default:
      sendJSON(res, 404, { error: 'not_found' });
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP server

const callback = provider.callback();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');

  if (cfg.control && url.pathname.startsWith('/__test/')) {
    control(req, res, url).catch((err) => {
      process.stderr.write(`provider: control ${url.pathname}: ${err.stack}\n`);
      if (!res.headersSent) sendJSON(res, 500, { error: 'server_error' });
    });
    return;
  }

  if (mountPath) {
    if (url.pathname !== mountPath && !url.pathname.startsWith(`${mountPath}/`)) {
      res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' });
      res.end(errorPage({ error: 'not_found' }));
      return;
    }
    req.url = req.url.slice(mountPath.length) || '/';
    if (req.url.startsWith('?')) req.url = `/${req.url}`;
  }
  callback(req, res);
});
server.keepAliveTimeout = 5000;

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`provider: ${signal}, shutting down\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  mtlsServer?.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
if (cfg.exitOnStdinClose) {
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();
}

server.on('error', (err) => fatal(`listen 127.0.0.1:${port}: ${err.message}`));

let mtlsServer;
if (mtls) {
  mtlsServer = https.createServer({
    cert: fs.readFileSync(mtls.cert), key: fs.readFileSync(mtls.key), ca: fs.readFileSync(mtls.clientCA),
    requestCert: true, rejectUnauthorized: false,
  }, (req, res) => {
    if (mountPath) {
      req.url = req.url.slice(mountPath.length) || '/';
    }
    callback(req, res);
  });
  mtlsServer.on('error', (err) => fatal(`listen 127.0.0.1:${mtls.port} (mtls): ${err.message}`));
  mtlsServer.listen(mtls.port, '127.0.0.1');
}
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${provider.issuer}\n`);
});
