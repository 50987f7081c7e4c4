package idp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

func groupsOf(claims map[string]any) []string {
	var out []string
	list, _ := claims["groups"].([]any)
	for _, g := range list {
		s, _ := g.(string)
		out = append(out, s)
	}
	return out
}

func TestDistributedClaims(t *testing.T) {
	overage := []string{"g-1", "g-2", "g-3"}
	for _, tc := range []struct {
		name   string
		names  []string // Config.DistributedClaims
		knobs  func(k *idptest.Knobs)
		want   []string // groups after login
		err    error
		source int // requests to /groups
	}{
		{name: "JSON object", names: []string{"groups"}, knobs: func(k *idptest.Knobs) { k.DistributedGroups = overage }, want: overage, source: 1},
		{name: "signed JWT", names: []string{"groups"}, knobs: func(k *idptest.Knobs) { k.DistributedGroups, k.GroupsFormat = overage, "jwt" }, want: overage, source: 1},
		{name: "not configured: the pointer is dropped", knobs: func(k *idptest.Knobs) { k.DistributedGroups = overage }, want: nil, source: 0},
		{name: "no pointer: the token's groups", names: []string{"groups"}, knobs: func(k *idptest.Knobs) {}, want: []string{"staff"}, source: 0},
		{name: "source down", names: []string{"groups"}, knobs: func(k *idptest.Knobs) {
			k.DistributedGroups, k.GroupsStatus = overage, http.StatusServiceUnavailable
		}, err: idp.ErrUnavailable, source: 1},
		{name: "source refuses", names: []string{"groups"}, knobs: func(k *idptest.Knobs) {
			k.DistributedGroups, k.GroupsStatus = overage, http.StatusForbidden
		}, err: idp.ErrRefused, source: 1},
		{name: "JWT not signed by the provider", names: []string{"groups"}, knobs: func(k *idptest.Knobs) {
			k.DistributedGroups, k.GroupsFormat = overage, "forged-jwt"
		}, err: idp.ErrInvalidToken, source: 1},
		{name: "endpoint not https", names: []string{"groups"}, knobs: func(k *idptest.Knobs) {
			k.DistributedGroups = overage
			k.IDTokenMutate = func(c map[string]any) {
				c["_claim_sources"] = map[string]any{"src1": map[string]any{"endpoint": "http://groups.example/"}}
			}
		}, err: idp.ErrRefused, source: 0},
		{name: "JWT about another subject", names: []string{"groups"}, knobs: func(k *idptest.Knobs) {
			k.DistributedGroups, k.GroupsFormat = overage, "jwt"
			k.IDTokenMutate = func(c map[string]any) { c["sub"] = "mallory" }
			k.UserinfoSubject = "mallory"
		}, err: idp.ErrInvalidToken, source: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := idptest.New(t)
			c := newClient(t, p, func(c *idp.Config) { c.DistributedClaims = tc.names })
			p.Set(tc.knobs)
			_, id, err := login(t, p, c)
			wantErr(t, err, tc.err)
			if got := p.Count("groups"); got != tc.source {
				t.Fatalf("the source was asked %d times, want %d", got, tc.source)
			}
			if err != nil {
				return
			}
			if got := groupsOf(id.Claims); !slices.Equal(got, tc.want) {
				t.Fatalf("groups = %v, want %v", got, tc.want)
			}
			if _, ok := id.Claims["_claim_names"]; ok {
				t.Fatal("_claim_names kept in the claims")
			}
			if _, ok := id.Claims["_claim_sources"]; ok {
				t.Fatal("_claim_sources kept in the claims")
			}
		})
	}
}

// With GraphGroups, an Entra-style overage (the pointer names a source Gatehouse cannot
// use, here the retired Azure AD Graph) is read from Microsoft Graph's getMemberObjects
// with the user's access token.
func TestGraphGroupsOverage(t *testing.T) {
	var seen []string // Authorization of each Graph request
	status := http.StatusOK
	graph := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1.0/me/getMemberObjects" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		seen = append(seen, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"value":["g-1","g-2"]}`)
	}))
	t.Cleanup(graph.Close)
	retired := func(c map[string]any) {
		delete(c, "groups")
		c["_claim_names"] = map[string]any{"groups": "src1"}
		c["_claim_sources"] = map[string]any{"src1": map[string]any{"endpoint": "https://graph.windows.net/tid/users/oid/getMemberObjects"}}
	}
	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
		status int
		want   []string
		err    error
		calls  int
	}{
		{name: "overage pointer", mutate: retired, want: []string{"g-1", "g-2"}, calls: 1},
		{name: "hasgroups", mutate: func(c map[string]any) { delete(c, "groups"); c["hasgroups"] = true }, want: []string{"g-1", "g-2"}, calls: 1},
		{name: "no overage: the token's groups, Graph not asked", mutate: func(map[string]any) {}, want: []string{"staff"}},
		{name: "Graph refuses the token", mutate: retired, status: http.StatusForbidden, err: idp.ErrRefused, calls: 1},
		{name: "Graph down", mutate: retired, status: http.StatusServiceUnavailable, err: idp.ErrUnavailable, calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen, status = nil, http.StatusOK
			if tc.status != 0 {
				status = tc.status
			}
			p := idptest.New(t)
			c := newClient(t, p, func(c *idp.Config) { c.GraphGroups, c.GraphURL = true, graph.URL })
			p.Set(func(k *idptest.Knobs) { k.IDTokenMutate = tc.mutate })
			tokens, id, err := login(t, p, c)
			wantErr(t, err, tc.err)
			if len(seen) != tc.calls {
				t.Fatalf("Graph was asked %d times, want %d", len(seen), tc.calls)
			}
			if err != nil {
				return
			}
			if seen != nil && seen[0] != "Bearer "+tokens.AccessToken {
				t.Fatal("Graph was not asked with the user's access token")
			}
			if got := groupsOf(id.Claims); !slices.Equal(got, tc.want) {
				t.Fatalf("groups = %v, want %v", got, tc.want)
			}
			for _, k := range []string{"_claim_names", "_claim_sources", "hasgroups"} {
				if _, ok := id.Claims[k]; ok {
					t.Fatalf("%s kept in the claims", k)
				}
			}
		})
	}
}
