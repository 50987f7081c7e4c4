package idp

import (
	"strings"
	"testing"
)

// FuzzIssuerMatches: whatever the iss, a template issuer matches it only if it is the
// template with a tenant id in place of {tenantid}, and tenantOf returns that id.
func FuzzIssuerMatches(f *testing.F) {
	const tmpl = "https://login.example/{tenantid}/v2.0"
	for _, s := range []string{"https://login.example/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d/v2.0",
		"https://login.example/common/v2.0", tmpl, "https://login.example//v2.0", "https://login.example/v2.0",
		"https://login.example/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d/x/v2.0"} {
		f.Add(s)
	}
	c, err := New(Config{Issuer: tmpl, ClientID: "c", ClientSecret: "s"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, iss string) {
		tid, ok := c.tenantOf(iss)
		if ok != c.IssuerMatches(iss) {
			t.Fatal("IssuerMatches disagrees with tenantOf")
		}
		if !ok {
			return
		}
		if !IsTenantID(tid) || strings.Replace(tmpl, TenantPlaceholder, tid, 1) != iss {
			t.Fatalf("%q matched with tenant %q", iss, tid)
		}
	})
}
