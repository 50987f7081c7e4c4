package main

import (
	"strings"
	"testing"
)

// TestCheckFailsWhereServeFails: check builds the gateway serve builds, so a frontend.dir
// that does not exist fails both (check used to pass it).
func TestCheckFailsWhereServeFails(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", watchBase+"frontend:\n  dir: ./no-such-dir\n")
	code, out, errOut := runCmd(t, "check", "--config", p)
	if code != 1 || !strings.Contains(errOut, "frontend.dir:") || strings.Contains(out, "configuration OK") {
		t.Fatalf("check = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// TestCheckOneMissingVariableOneProblem: an unset ${VAR} is one problem, not also the
// "is required" of the field it left empty.
func TestCheckOneMissingVariableOneProblem(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "gatehouse.yaml", strings.Replace(watchBase, "http://127.0.0.1:9000", "${GH_TEST_UNSET_ISSUER}", 1))
	code, _, errOut := runCmd(t, "check", "--config", p)
	if code != 1 || !strings.Contains(errOut, "1 problem(s)") || strings.Count(errOut, "provider.issuer") != 1 ||
		!strings.Contains(errOut, "GH_TEST_UNSET_ISSUER is not set") {
		t.Fatalf("check = %d\nstderr: %s", code, errOut)
	}
}

func TestCheckWarnsAboutProductionFootguns(t *testing.T) {
	dir := t.TempDir()
	risky := writeFile(t, dir, "risky.yaml", watchBase+`
listen: 0.0.0.0:9080
admin:
  listen: 0.0.0.0:9090
  allow_non_loopback: true
`)
	code, out, errOut := runCmd(t, "check", "--config", risky)
	if code != 0 {
		t.Fatalf("check = %d (warnings must not fail without --strict)\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, want := range []string{"warning: session.store: memory behind a non-loopback listener",
		"warning: session.keys: not set", "warning: admin.token: not set while admin.listen"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := runCmd(t, "check", "--strict", "--config", risky); code != 1 || !strings.Contains(errOut, "--strict") {
		t.Fatalf("check --strict = %d, want 1\nstderr: %s", code, errOut)
	}

	safe := writeFile(t, dir, "safe.yaml", watchBase+`
listen: 127.0.0.1:9080
session:
  keys: [AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]
admin:
  listen: 127.0.0.1:9090
`)
	code, out, errOut = runCmd(t, "check", "--strict", "--config", safe)
	if code != 0 || strings.Contains(out, "warning:") {
		t.Fatalf("check --strict of a safe file = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

func TestGatehouseConfigEnvNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "from-env.yaml", watchBase)
	t.Setenv("GATEHOUSE_CONFIG", p)
	code, out, errOut := runCmd(t, "check")
	if code != 0 || !strings.Contains(out, p+": configuration OK") {
		t.Fatalf("check without --config = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	other := writeFile(t, dir, "flag.yaml", watchBase)
	if code, out, _ := runCmd(t, "check", "--config", other); code != 0 || !strings.Contains(out, other+":") {
		t.Fatalf("--config does not win over GATEHOUSE_CONFIG: %d %s", code, out)
	}
}

func TestEverySubcommandHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"serve", "check", "devidp", "probe", "keygen", "version", "help"} {
		for _, flag := range []string{"--help", "-h"} {
			code, out, errOut := runCmd(t, cmd, flag)
			if code != 0 || !strings.Contains(out, "Usage") || errOut != "" {
				t.Errorf("gatehouse %s %s = %d\nstdout: %s\nstderr: %s", cmd, flag, code, out, errOut)
			}
		}
	}
}

// TestCheckTenantProblems: check lists every problem of a multi-tenant provider at once.
func TestCheckTenantProblems(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "tenants.yaml", strings.Replace(watchBase, "http://127.0.0.1:9000", "https://{tenantid}.login.example/v2.0", 1)+
		"  allowed_tenants: [Contoso, a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d]\n")
	code, _, errOut := runCmd(t, "check", "--config", bad)
	if code != 1 || !strings.Contains(errOut, "provider.issuer: {tenantid} must be a whole path segment") ||
		!strings.Contains(errOut, `provider.allowed_tenants: "Contoso" is not a tenant id`) || strings.Contains(errOut, "a1b2c3d4") {
		t.Fatalf("check = %d\nstderr: %s", code, errOut)
	}
	plain := writeFile(t, dir, "plain.yaml", watchBase+"  allowed_tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47]\n")
	if code, _, errOut := runCmd(t, "check", "--config", plain); code != 1 || !strings.Contains(errOut, "provider.allowed_tenants: needs an issuer with {tenantid}") {
		t.Fatalf("check of allowed_tenants without a template = %d\nstderr: %s", code, errOut)
	}
	good := writeFile(t, dir, "good.yaml", strings.Replace(watchBase, "http://127.0.0.1:9000", "https://login.microsoftonline.com/{tenantid}/v2.0", 1)+
		"  allowed_tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47]\n")
	if code, out, errOut := runCmd(t, "check", "--config", good); code != 0 {
		t.Fatalf("check of an Entra template = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}
