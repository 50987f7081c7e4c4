package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Bounds on fetching the provider's JWKS again. go-oidc's RemoteKeySet fetches it on
// every verification failure, so each token with a bad signature (which anyone can send
// to the back-channel endpoint) would cost one request to the provider.
const (
	// KeyRefetchInterval: after a signature fails under a key we know (or a token without
	// kid fails under all of them), the JWKS is fetched again at most this often.
	KeyRefetchInterval = 5 * time.Second
	// UnknownKeyRefetchInterval: a kid we do not know (the provider may have rotated) is
	// looked up at once, but never more often than this, so random kids cannot force a
	// fetch each.
	UnknownKeyRefetchInterval = time.Second
	// KeyMaxAge: cached keys are fetched again once they are this old, so that a key the
	// provider removed stops being accepted. A failed fetch keeps the old keys.
	KeyMaxAge = time.Hour
)

// keySet is the provider's JWKS as an [oidc.KeySet]. It verifies against the cached keys
// first and fetches the JWKS again only within the bounds above. Concurrent fetches are
// merged: callers that wanted one while it ran use its result. Safe for concurrent use.
type keySet struct {
	url  string
	http *http.Client
	now  func() time.Time

	fetchMu sync.Mutex // held while fetching; serialises fetches

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last successful fetch
	tried   time.Time // last fetch attempt
}

var _ oidc.KeySet = (*keySet)(nil)

func newKeySet(url string, hc *http.Client, now func() time.Time) *keySet {
	return &keySet{url: url, http: hc, now: now}
}

// verifyReport is put in the context of a verification by the Client, so that it learns
// what the key set saw through go-oidc, which formats the key set's error with %v.
type verifyReport struct {
	unavailable bool // no keys could be loaded at all
	noKey       bool // no key verified the signature, even after a refetch (if one was allowed)
}

type verifyReportKey struct{}

// asymmetricAlgs are the algorithms the key set parses with; the verifier has already
// restricted the token to the accepted ones.
var asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384,
	jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// VerifySignature implements [oidc.KeySet].
func (ks *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	report, _ := ctx.Value(verifyReportKey{}).(*verifyReport)
	if report == nil {
		report = &verifyReport{}
	}
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID

	ks.mu.Lock()
	keys, fetched, tried := ks.keys, ks.fetched, ks.tried
	ks.mu.Unlock()
	if fetched.IsZero() || ks.now().Sub(fetched) >= KeyMaxAge {
		// Never loaded, or old: load now (a failure keeps what we have), within the bound
		// for unknown keys so that a provider that is down is not asked on every token.
		keys, tried = ks.refetch(ctx, tried, UnknownKeyRefetchInterval)
	}
	payload, known := verifyWith(jws, keys, kid)
	if payload != nil {
		return payload, nil
	}
	gap := KeyRefetchInterval
	if !known {
		gap = UnknownKeyRefetchInterval
	}
	keys, _ = ks.refetch(ctx, tried, gap)
	if payload, _ := verifyWith(jws, keys, kid); payload != nil {
		return payload, nil
	}
	if len(keys) == 0 {
		report.unavailable = true
		return nil, errors.New("the provider's keys could not be loaded")
	}
	report.noKey = true
	if !known {
		// The kid itself stays out: it is whatever the sender wrote.
		return nil, errors.New("no published key has the token's kid")
	}
	return nil, errors.New("the signature does not verify with the provider's keys")
}

// verifyWith tries the keys that match kid (all of them when the token has none) and
// reports whether any matched.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, known bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		known = true
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true
		}
	}
	return nil, known
}

// refetch fetches the JWKS unless one was tried after seen (the caller's last view) or
// less than gap ago; either way it returns the keys to use now and the time of the last
// attempt.
func (ks *keySet) refetch(ctx context.Context, seen time.Time, gap time.Duration) ([]jose.JSONWebKey, time.Time) {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	ks.mu.Lock()
	if ks.tried.After(seen) || !ks.tried.IsZero() && ks.now().Sub(ks.tried) < gap {
		keys, tried := ks.keys, ks.tried
		ks.mu.Unlock()
		return keys, tried
	}
	ks.tried = ks.now()
	ks.mu.Unlock()

	keys, err := ks.fetch(ctx)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err == nil {
		ks.keys, ks.fetched = keys, ks.now()
	}
	return ks.keys, ks.tried
}

// expire makes the next verification fetch the keys again (within the bounds).
func (ks *keySet) expire() {
	ks.mu.Lock()
	ks.fetched = time.Time{}
	ks.mu.Unlock()
}

func (ks *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	// The fetch serves every caller waiting on fetchMu, so the first one's cancellation
	// must not fail it; the HTTP client's timeout bounds it.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.http.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks answered %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("jwks is not a JSON Web Key Set")
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Only public signing keys: never a symmetric key, never an encryption key.
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks holds no public signing key")
	}
	return keys, nil
}
