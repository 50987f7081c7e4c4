// An in-memory storage adapter for oidc-provider, made for tests.
//
// Unlike oidc-provider's bundled development adapter (an LRU capped at 1000 entries, which can
// silently evict sessions and grants in a long e2e run) this one never evicts anything before it
// expires, and it lets the test control endpoints enumerate what is stored: every grant and
// session of an account, so that an admin-style revocation or a provider-initiated logout can be
// triggered without a browser.

const grantable = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

function epochTime() {
  return Math.floor(Date.now() / 1000);
}

export class Store {
  // key ("Model:id" or an index key) -> { value, expiresAt (ms since epoch) | undefined }
  #entries = new Map();

  // grantId -> Set of "Model:id" keys that belong to that grant
  #grantMembers = new Map();

  get(key) {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    this.#entries.set(key, { value, expiresAt });
  }

  delete(key) {
    this.#entries.delete(key);
  }

  addGrantMember(grantId, key) {
    let members = this.#grantMembers.get(grantId);
    if (!members) {
      members = new Set();
      this.#grantMembers.set(grantId, members);
    }
    members.add(key);
  }

  removeGrantMember(grantId, key) {
    const members = this.#grantMembers.get(grantId);
    if (members) {
      members.delete(key);
      if (members.size === 0) this.#grantMembers.delete(grantId);
    }
  }

  // Deletes every artifact (tokens, codes, ...) issued under grantId. Returns how many were live.
  revokeByGrantId(grantId) {
    const members = this.#grantMembers.get(grantId);
    this.#grantMembers.delete(grantId);
    let n = 0;
    for (const key of members ?? []) {
      const payload = this.get(key);
      if (payload) {
        n += 1;
        this.removeSecondaryIndexes(payload, key.slice(key.indexOf(':') + 1));
      }
      this.#entries.delete(key);
    }
    return n;
  }

  removeSecondaryIndexes(payload, id) {
    if (payload.uid && this.get(`sessionUid:${payload.uid}`) === id) {
      this.#entries.delete(`sessionUid:${payload.uid}`);
    }
    if (payload.userCode && this.get(`userCode:${payload.userCode}`) === id) {
      this.#entries.delete(`userCode:${payload.userCode}`);
    }
  }

  // Live [id, payload] pairs stored for one model ("Grant", "Session", ...).
  list(model) {
    const prefix = `${model}:`;
    const out = [];
    for (const key of [...this.#entries.keys()]) {
      if (key.startsWith(prefix)) {
        const payload = this.get(key);
        if (payload) out.push([key.slice(prefix.length), payload]);
      }
    }
    return out;
  }
}

export function createAdapterFactory(store) {
  class TestAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const previous = store.get(key);
      if (previous) this.#removeIndexes(id, key, previous);

      if (this.model === 'Session') {
        store.set(`sessionUid:${payload.uid}`, id, expiresIn);
      }
      if (payload.userCode) {
        store.set(`userCode:${payload.userCode}`, id, expiresIn);
      }
      if (grantable.has(this.model) && payload.grantId) {
        store.addGrantMember(payload.grantId, key);
      }
      store.set(key, payload, expiresIn);
    }

    async find(id) {
      return store.get(this.key(id));
    }

    async findByUid(uid) {
      const id = store.get(`sessionUid:${uid}`);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode) {
      const id = store.get(`userCode:${userCode}`);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id) {
      const payload = store.get(this.key(id));
      if (payload) payload.consumed = epochTime();
    }

    async destroy(id) {
      const key = this.key(id);
      const payload = store.get(key);
      store.delete(key);
      if (payload) this.#removeIndexes(id, key, payload);
    }

    async revokeByGrantId(grantId) {
      store.revokeByGrantId(grantId);
    }

    #removeIndexes(id, key, payload) {
      store.removeSecondaryIndexes(payload, id);
      if (grantable.has(this.model) && payload.grantId) {
        store.removeGrantMember(payload.grantId, key);
      }
    }
  }

  return (model) => new TestAdapter(model);
}
