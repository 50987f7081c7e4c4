// Compile-time tests of gatehouse.d.ts (checked by `tsc -p .`, never executed).
// Each `@ts-expect-error` line must fail to compile: that proves the types are not `any`.
import {
  createClient,
  GatehouseError,
  type GatehouseClient,
  type GatehouseSession,
  type GatehouseUser,
  type SessionEndDetail,
  type SessionExpiringDetail,
  type StepUpDetail,
  type StepUpInfo,
  type UnauthenticatedInfo,
} from '../gatehouse.js';

export async function typeTests(): Promise<void> {
  const gh: GatehouseClient = createClient({
    basePath: '/bff',
    csrfHeader: 'X-CSRF',
    csrfValue: '1',
    expiringThreshold: 60,
    onUnauthenticated: (info: UnauthenticatedInfo) => {
      const status: number = info.response.status;
      const reason: string = info.reason;
      void [status, reason, info.loginUrl];
    },
    fetch: (input, init) => fetch(input, init),
    location: { origin: 'https://app.example', pathname: '/', search: '', hash: '', assign: (_url: string) => {} },
  });
  createClient();
  createClient({ onUnauthenticated: null });
  createClient({ onStepUp: null });
  createClient({
    onStepUp: (info: StepUpInfo) => {
      const acr: string | null = info.acrValues;
      const maxAge: number | null = info.maxAge;
      void [acr, maxAge, info.response.status, info.loginUrl];
    },
  });

  // @ts-expect-error expiringThreshold is a number of seconds
  createClient({ expiringThreshold: '60' });
  // @ts-expect-error unknown option
  createClient({ basepath: '/bff' });

  const response: Response = await gh.fetch('/api/orders', { method: 'POST', headers: { 'X-Trace': '1' } });
  await gh.fetch(new URL('https://app.example/api'));
  await gh.fetch(new Request('https://app.example/api'));
  void response;

  const user: GatehouseUser | null = await gh.getUser();
  await gh.getUser({ slide: false });
  if (user) {
    const sub: string = user.claims.sub;
    const email: unknown = user.claims['email'];
    const idle: number = user.session.idle_expires_in;
    const logoutUrl: string = user.logout_url;
    void [sub, email, idle, logoutUrl];
  }
  // @ts-expect-error the user may be null
  const sid: string = (await gh.getUser()).sid;
  void sid;
  // @ts-expect-error slide is a boolean
  await gh.getUser({ slide: 'no' });

  const known: GatehouseUser | null = gh.user;
  void known;
  // @ts-expect-error user is read-only
  gh.user = null;

  gh.login();
  gh.login('/orders?id=1');
  const href: string = gh.loginUrl('/orders');
  void href;
  // @ts-expect-error returnUrl is a string
  gh.login(42);

  await gh.logout();
  await gh.logout({ returnUrl: '/bye' });
  // @ts-expect-error logout takes an options object
  await gh.logout('/bye');

  const sessions: GatehouseSession[] = await gh.sessions();
  const current: boolean | undefined = sessions[0]?.current;
  void current;
  await gh.endSession('abc');
  // @ts-expect-error sid is a string
  await gh.endSession(1);
  const nothing: void = await gh.endOtherSessions();
  void nothing;

  gh.addEventListener('sessionend', (event) => {
    const detail: SessionEndDetail = event.detail;
    const loginUrl: string = event.detail.loginUrl;
    // @ts-expect-error sessionend has no expiresIn
    event.detail.expiresIn;
    void [detail, loginUrl];
  });
  gh.addEventListener('sessionexpiring', (event) => {
    const detail: SessionExpiringDetail = event.detail;
    const seconds: number = event.detail.expiresIn;
    // @ts-expect-error expiresIn is a number
    const text: string = event.detail.expiresIn;
    void [detail, seconds, text];
  });
  gh.addEventListener('stepuprequired', (event) => {
    const detail: StepUpDetail = event.detail;
    gh.stepUp(detail);
    gh.stepUp(detail, { returnUrl: '/pay' });
    const url: string = gh.stepUpUrl({ acr_values: 'gold', max_age: 300 });
    // @ts-expect-error maxAge is a number of seconds
    gh.stepUp({ maxAge: '300' });
    // @ts-expect-error returnUrl goes in the options
    gh.stepUp(detail, '/pay');
    void url;
  });
  gh.stepUp();
  gh.addEventListener('user', (event) => {
    const acr: string | undefined = event.detail.acr;
    const authTime: number | undefined = event.detail.auth_time;
    void [acr, authTime];
    const name: unknown = event.detail.claims['name'];
    void name;
  });
  gh.addEventListener('somethingelse', (event: Event) => void event);
  gh.dispose();

  try {
    await gh.getUser();
  } catch (error) {
    if (error instanceof GatehouseError) {
      const status: number = error.status;
      const code: string | null = error.code;
      const reason: string | null = error.reason;
      void [status, code, reason, error.body, error.message];
    }
  }
  const made = new GatehouseError('boom', { status: 503, code: 'unavailable' });
  // @ts-expect-error status is required
  new GatehouseError('boom', {});
  void made;
}
