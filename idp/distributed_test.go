package idp_test

import (
	"net/http"
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
