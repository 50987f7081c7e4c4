package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAccessLogKeys(t *testing.T) {
	dir := t.TempDir()
	base := "public_url: http://127.0.0.1:9080\nprovider: {issuer: \"http://127.0.0.1:9000\", client_id: bff, client_secret: s}\n"
	l, err := loadConfig(writeFile(t, dir, "off.yaml", base))
	if err != nil {
		t.Fatal(err)
	}
	if l.gw.AccessLogger != nil || l.accessPath != "" {
		t.Fatal("the access log is on by default")
	}
	l, err = loadConfig(writeFile(t, dir, "stdout.yaml", base+"log: {access: stdout, access_subject: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.gw.AccessLogger == nil || !l.gw.Log.AccessSubject {
		t.Fatal("log.access: stdout, log.access_subject: true not applied")
	}
	l, err = loadConfig(writeFile(t, dir, "file.yaml", base+"log: {access: file, access_file: access.log}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.accessPath != filepath.Join(dir, "access.log") {
		t.Fatalf("access path %q", l.accessPath)
	}
	if _, err := os.Stat(l.accessPath); err == nil {
		t.Fatal("check created the access log file")
	}
	for _, tc := range []struct{ log, want string }{
		{"{access: file}", "log.access_file: is required when log.access is file"},
		{"{access: syslog}", `log.access: "syslog" is not off, stdout, stderr or file`},
		{"{access: stdout, access_file: a.log}", "log.access_file: is set but log.access is"},
	} {
		_, err := loadConfig(writeFile(t, dir, "bad.yaml", base+"log: "+tc.log+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("log: %s: %v, want %q", tc.log, err, tc.want)
		}
	}
}
