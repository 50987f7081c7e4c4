//go:build release

package releasetest

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// release is one build of scripts/release.sh.
type release struct {
	dist    string
	version string
	commit  string
	epoch   time.Time // SOURCE_DATE_EPOCH: the commit's time
	targets []string
}

func TestRelease(t *testing.T) {
	// Every tool the release and these checks use; a missing one fails the test.
	var missing []string
	for _, tool := range []string{"go", "git", "tar", "gzip", "zip", "buildah", "dpkg", "dpkg-deb", "rpm", "useradd", "groupadd"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the release test needs %s (scripts/test.sh installs them: apt-get install -y buildah rpm zip)", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		t.Fatal("the release test needs root: buildah builds the image in a private store, and the packages install into sandboxed roots")
	}

	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	targets := strings.Fields(os.Getenv("GATEHOUSE_RELEASE_TARGETS"))
	if len(targets) == 0 {
		targets = []string{"linux/amd64", "linux/arm64", "darwin/arm64", "windows/amd64"}
	}
	tmp := t.TempDir()
	// buildah's storage is private to the build; its one machine-wide file, a cache of
	// blob digests, is removed again when the build created it.
	const containers = "/var/lib/containers"
	_, err = os.Stat(containers)
	hadContainers := err == nil
	a := build(t, repo, filepath.Join(tmp, "a"), targets)
	b := build(t, repo, filepath.Join(tmp, "b"), targets)
	if _, err := os.Stat(containers); !hadContainers && err == nil {
		t.Errorf("the release build left %s behind", containers)
	}
	if !hadContainers {
		// This test's own buildah (checkImage) writes that cache too.
		t.Cleanup(func() {
			_ = os.Remove(filepath.Join(containers, "cache/blob-info-cache-v1.boltdb"))
			_ = os.Remove(filepath.Join(containers, "cache"))
			_ = os.Remove(containers)
		})
	}

	t.Run("reproducible", func(t *testing.T) {
		sa, sb := readSums(t, a.dist), readSums(t, b.dist)
		if len(sa) == 0 {
			t.Fatal("SHA256SUMS is empty")
		}
		for name, sum := range sa {
			if sb[name] != sum {
				t.Errorf("%s differs between two builds of %s: %s and %s", name, a.commit, sum, sb[name])
			}
		}
		for name := range sb {
			if _, ok := sa[name]; !ok {
				t.Errorf("%s is in only one of two builds", name)
			}
		}
		// SHA256SUMS lists every file in dist/, each with its right sum.
		entries, err := os.ReadDir(a.dist)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() == "SHA256SUMS" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(a.dist, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); sa[e.Name()] != got {
				t.Errorf("SHA256SUMS: %s is %q, the file's sum is %s", e.Name(), sa[e.Name()], got)
			}
		}
		for _, want := range a.expectedFiles() {
			if _, ok := sa[want]; !ok {
				t.Errorf("the release has no %s; it has %v", want, keys(sa))
			}
		}
	})
	t.Run("archives", func(t *testing.T) { a.checkArchives(t) })
	t.Run("sbom", func(t *testing.T) { a.checkSBOMs(t, repo) })
	if !a.has("linux/amd64") && !a.has("linux/arm64") {
		return
	}
	t.Run("deb", func(t *testing.T) { a.checkDeb(t) })
	t.Run("rpm", func(t *testing.T) { a.checkRPM(t) })
	t.Run("image", func(t *testing.T) { a.checkImage(t) })
}

// build runs scripts/release.sh into dist and reads back what it built.
func build(t *testing.T, repo, dist string, targets []string) release {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("scripts/release.sh")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "DIST="+dist, "TARGETS="+strings.Join(targets, " "), "VERSION=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, out)
	}
	t.Logf("scripts/release.sh into %s: %s", dist, time.Since(start).Round(time.Second))

	r := release{dist: dist, targets: targets}
	r.commit = strings.TrimSpace(run(t, repo, "git", "rev-parse", "HEAD"))
	sec, err := strconv.ParseInt(strings.TrimSpace(run(t, repo, "git", "log", "-1", "--format=%ct", "HEAD")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	r.epoch = time.Unix(sec, 0).UTC()
	names, _ := filepath.Glob(filepath.Join(dist, "gatehouse_*_"+strings.ReplaceAll(targets[0], "/", "_")+".cdx.json"))
	if len(names) != 1 {
		t.Fatalf("no SBOM for %s in %s", targets[0], dist)
	}
	r.version = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(names[0]), "gatehouse_"), "_"+strings.ReplaceAll(targets[0], "/", "_")+".cdx.json")
	// Not a tagged commit: the version names it.
	if tag := strings.TrimSpace(runAllowFail(repo, "git", "describe", "--tags", "--exact-match", "--match", "v[0-9]*")); tag != "" {
		if r.version != strings.TrimPrefix(tag, "v") {
			t.Errorf("version %q on the tagged commit %s", r.version, tag)
		}
	} else if !strings.HasPrefix(r.version, "0.0.0-dev.") || !strings.HasSuffix(r.version, "."+r.commit[:12]) {
		t.Errorf("version %q of an untagged commit, want 0.0.0-dev.<time>.%s", r.version, r.commit[:12])
	}
	return r
}

func (r release) has(target string) bool { return slices.Contains(r.targets, target) }

func (r release) debVersion() string { return strings.Replace(r.version, "-", "~", 1) + "-1" }

// expectedFiles are the names of everything one release holds.
func (r release) expectedFiles() []string {
	var names []string
	for _, target := range r.targets {
		goos, goarch, _ := strings.Cut(target, "/")
		base := fmt.Sprintf("gatehouse_%s_%s_%s", r.version, goos, goarch)
		names = append(names, base+".cdx.json")
		if goos == "windows" {
			names = append(names, base+".zip")
			continue
		}
		names = append(names, base+".tar.gz")
		if goos == "linux" {
			names = append(names,
				base+".oci.tar",
				fmt.Sprintf("gatehouse_%s_%s.deb", r.debVersion(), goarch),
				fmt.Sprintf("gatehouse-%s.%s.rpm", r.debVersion(), rpmArch(goarch)))
		}
	}
	return names
}

func rpmArch(goarch string) string {
	return map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[goarch]
}

func (r release) checkArchives(t *testing.T) {
	for _, target := range r.targets {
		goos, goarch, _ := strings.Cut(target, "/")
		prefix := fmt.Sprintf("gatehouse_%s_%s_%s", r.version, goos, goarch)
		exe := "gatehouse"
		if goos == "windows" {
			exe = "gatehouse.exe"
		}
		want := []string{exe, "README.md", "gatehouse.example.yaml"}
		if goos == "linux" {
			want = append(want, "gatehouse.service")
		}
		files := map[string][]byte{}
		var order []string
		if goos == "windows" {
			zr, err := zip.OpenReader(filepath.Join(r.dist, prefix+".zip"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				order = append(order, strings.TrimSuffix(f.Name, "/"))
				// MS-DOS times have a resolution of two seconds (zip rounds up).
				if d := f.Modified.Sub(r.epoch); d <= -2*time.Second || d >= 2*time.Second {
					t.Errorf("%s: %s modified %v, want the commit's time %v", prefix+".zip", f.Name, f.Modified, r.epoch)
				}
				if len(f.Extra) != 0 {
					t.Errorf("%s: %s has extra fields (uid, gid or times of the builder)", prefix+".zip", f.Name)
				}
				if f.FileInfo().IsDir() {
					continue
				}
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				files[f.Name], _ = io.ReadAll(rc)
				rc.Close()
			}
			zr.Close()
		} else {
			for h, body := range readTarGz(t, filepath.Join(r.dist, prefix+".tar.gz")) {
				order = append(order, strings.TrimSuffix(h.Name, "/"))
				if !h.ModTime.Equal(r.epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
					t.Errorf("%s: %s has time %v, owner %d:%d (%q:%q); want %v, 0:0 and no names",
						prefix, h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname, r.epoch)
				}
				if h.Mode&0o022 != 0 {
					t.Errorf("%s: %s mode %o is group- or world-writable", prefix, h.Name, h.Mode)
				}
				if h.Typeflag == tar.TypeReg {
					files[h.Name] = body
				}
			}
		}
		if !slices.IsSorted(order) {
			t.Errorf("%s: entries are not in name order: %v", prefix, order)
		}
		for _, name := range want {
			if _, ok := files[prefix+"/"+name]; !ok {
				t.Errorf("%s has no %s; it has %v", prefix, name, order)
			}
		}
		checkBinary(t, prefix+"/"+exe, files[prefix+"/"+exe], goos, goarch)
		if goos == runtime.GOOS && goarch == runtime.GOARCH {
			dir := t.TempDir()
			p := filepath.Join(dir, exe)
			if err := os.WriteFile(p, files[prefix+"/"+exe], 0o755); err != nil {
				t.Fatal(err)
			}
			r.checkVersion(t, prefix, p)
		}
	}
}

// checkBinary checks a binary is for its platform, and static on Linux.
func checkBinary(t *testing.T, name string, b []byte, goos, goarch string) {
	t.Helper()
	switch goos {
	case "linux":
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != want {
			t.Errorf("%s: machine %v, want %v", name, f.Machine, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (%v): the build must be CGO_ENABLED=0", name, p.Type)
			}
		}
	case "darwin":
		f, err := macho.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.Cpu != macho.CpuArm64 {
			t.Errorf("%s: cpu %v, want arm64", name, f.Cpu)
		}
	case "windows":
		f, err := pe.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
			t.Errorf("%s: machine %#x, want amd64", name, f.Machine)
		}
	}
	if bytes.Contains(b, []byte("/work/")) || bytes.Contains(b, []byte("gatehouse-release.")) {
		t.Errorf("%s holds a path of the build machine: the build must be -trimpath", name)
	}
}

// checkVersion runs `gatehouse version` and checks it reports the release's version and
// commit.
func (r release) checkVersion(t *testing.T, what, binary string) {
	t.Helper()
	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: gatehouse version: %v\n%s", what, err, out)
	}
	want := fmt.Sprintf("gatehouse %s (%s, commit %s %s)", r.version, runtime.Version(), r.commit, r.epoch.Format(time.RFC3339))
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("%s: gatehouse version printed %q, want %q", what, got, want)
	}
}

func (r release) checkSBOMs(t *testing.T, repo string) {
	// The modules the binary links, as go list sees them for linux/amd64.
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}@{{.Version}}{{end}}{{end}}", "./cmd/gatehouse")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	linked := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		linked[m] = true
	}
	for _, target := range r.targets {
		name := fmt.Sprintf("gatehouse_%s_%s.cdx.json", r.version, strings.ReplaceAll(target, "/", "_"))
		b, err := os.ReadFile(filepath.Join(r.dist, name))
		if err != nil {
			t.Fatal(err)
		}
		var bom struct {
			BOMFormat    string `json:"bomFormat"`
			SpecVersion  string `json:"specVersion"`
			SerialNumber string `json:"serialNumber"`
			Metadata     struct {
				Timestamp string `json:"timestamp"`
				Component struct {
					Name    string `json:"name"`
					Version string `json:"version"`
					PURL    string `json:"purl"`
				} `json:"component"`
			} `json:"metadata"`
			Components []struct {
				Name    string `json:"name"`
				Version string `json:"version"`
				PURL    string `json:"purl"`
			} `json:"components"`
		}
		if err := json.Unmarshal(b, &bom); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if bom.BOMFormat != "CycloneDX" || bom.SpecVersion == "" {
			t.Errorf("%s: bomFormat %q, specVersion %q; want a CycloneDX document", name, bom.BOMFormat, bom.SpecVersion)
		}
		if bom.SerialNumber != "" || bom.Metadata.Timestamp != "" {
			t.Errorf("%s: serial number %q and timestamp %q make two builds differ", name, bom.SerialNumber, bom.Metadata.Timestamp)
		}
		if bom.Metadata.Component.Name != "github.com/gatehouse-bff/gatehouse" || !strings.Contains(bom.Metadata.Component.Version, r.commit[:12]) && !strings.HasPrefix(bom.Metadata.Component.Version, "v"+r.version) {
			t.Errorf("%s: the application is %q %q, want gatehouse at %s", name, bom.Metadata.Component.Name, bom.Metadata.Component.Version, r.commit[:12])
		}
		listed := map[string]bool{}
		std := false
		for _, c := range bom.Components {
			listed[c.Name+"@"+c.Version] = true
			std = std || c.Name == "std"
		}
		if !std {
			t.Errorf("%s: no component for the Go standard library", name)
		}
		if target == "linux/amd64" {
			for m := range linked {
				if !listed[m] {
					t.Errorf("%s: the binary links %s, the SBOM does not list it", name, m)
				}
			}
		}
		if !listed["github.com/coreos/go-oidc/v3@v3.21.0"] {
			t.Errorf("%s: no github.com/coreos/go-oidc/v3@v3.21.0 among %d components", name, len(bom.Components))
		}
	}
}

// sandbox makes an empty root file system with only the users a base system has.
func sandbox(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/rpm"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		"etc/passwd":             "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":              "root:x:0:\n",
		"var/lib/dpkg/status":    "",
		"var/lib/dpkg/available": "",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func (r release) hostArch(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" || !r.has("linux/"+runtime.GOARCH) {
		t.Fatalf("the package and image tests run the binary: build linux/%s", runtime.GOARCH)
	}
	return runtime.GOARCH
}

// checkInstalled checks what a package left in root.
func (r release) checkInstalled(t *testing.T, what, root string) {
	t.Helper()
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^gatehouse:[^:]*:(\d+):(\d+):[^:]*:/var/lib/gatehouse:[^:]*nologin$`).FindSubmatch(passwd)
	if m == nil {
		t.Fatalf("%s: no gatehouse system user in /etc/passwd:\n%s", what, passwd)
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !regexp.MustCompile(`(?m)^gatehouse:[^:]*:` + string(m[2]) + `:`).Match(group) {
		t.Errorf("%s: no gatehouse group %s in /etc/group:\n%s", what, m[2], group)
	}
	uid, _ := strconv.Atoi(string(m[1]))
	if uid == 0 || uid >= 1000 {
		t.Errorf("%s: gatehouse has UID %d, want a system UID", what, uid)
	}
	for p, want := range map[string]struct {
		mode os.FileMode
		uid  int
	}{
		"usr/bin/gatehouse":                        {0o755, 0},
		"usr/lib/systemd/system/gatehouse.service": {0o644, 0},
		"etc/gatehouse":                            {0o755 | os.ModeDir, 0},
		"etc/gatehouse/gatehouse.yaml":             {0o644, 0},
		"etc/gatehouse/credentials":                {0o700 | os.ModeDir, 0},
		"var/lib/gatehouse":                        {0o700 | os.ModeDir, uid},
	} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		owner := int(fi.Sys().(*syscall.Stat_t).Uid)
		if fi.Mode() != want.mode || owner != want.uid {
			t.Errorf("%s: /%s has mode %v and owner %d, want %v and %d", what, p, fi.Mode(), owner, want.mode, want.uid)
		}
		if !fi.IsDir() && !fi.ModTime().Equal(r.epoch) {
			t.Errorf("%s: /%s modified %v, want the commit's time %v", what, p, fi.ModTime().UTC(), r.epoch)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/gatehouse.service"))
	for _, want := range []string{"ExecStart=/usr/bin/gatehouse serve --config /etc/gatehouse/gatehouse.yaml", "ExecReload=/usr/bin/gatehouse check", "StateDirectory=gatehouse"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("%s: the unit has no %q", what, want)
		}
	}
	if bytes.Contains(unit, []byte("/usr/local/bin")) {
		t.Errorf("%s: the packaged unit still names /usr/local/bin", what)
	}
	example, _ := os.ReadFile("../../deploy/gatehouse.example.yaml")
	if got, _ := os.ReadFile(filepath.Join(root, "etc/gatehouse/gatehouse.yaml")); !bytes.Equal(got, example) {
		t.Errorf("%s: /etc/gatehouse/gatehouse.yaml is not deploy/gatehouse.example.yaml", what)
	}
	bin := filepath.Join(root, "usr/bin/gatehouse")
	r.checkVersion(t, what, bin)
	// The example configuration is valid as installed, with the credential the unit hands over.
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "client_secret"), []byte("s3cret-for-check"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", "--config", filepath.Join(root, "etc/gatehouse/gatehouse.yaml"))
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: gatehouse check on the installed example configuration: %v\n%s", what, err, out)
	}
}

func (r release) checkDeb(t *testing.T) {
	arch := r.hostArch(t)
	deb := filepath.Join(r.dist, fmt.Sprintf("gatehouse_%s_%s.deb", r.debVersion(), arch))
	fields := run(t, "", "dpkg-deb", "--field", deb, "Package", "Version", "Architecture")
	for _, want := range []string{"Package: gatehouse", "Version: " + r.debVersion(), "Architecture: " + arch} {
		if !strings.Contains(fields, want) {
			t.Errorf("%s: control has no %q:\n%s", deb, want, fields)
		}
	}
	// dpkg installs into the sandbox and, chrootless, runs the maintainer scripts on the
	// host with DPKG_ROOT set: they write the sandbox's /etc/passwd, not this machine's.
	root := sandbox(t)
	dpkg := func(args ...string) string {
		return run(t, "", "dpkg", append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
	}
	dpkg("--install", deb)
	if status := dpkg("--status", "gatehouse"); !strings.Contains(status, "Status: install ok installed") ||
		!strings.Contains(status, "/etc/gatehouse/gatehouse.yaml ") {
		t.Errorf("dpkg --status: want installed, with the configuration a conffile:\n%s", status)
	}
	r.checkInstalled(t, "deb", root)

	// Removing keeps the conffile, the sessions and the user.
	if err := os.WriteFile(filepath.Join(root, "var/lib/gatehouse/sessions.db"), []byte("sessions"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--remove", "gatehouse")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/gatehouse")); !os.IsNotExist(err) {
		t.Errorf("after dpkg --remove, /usr/bin/gatehouse: %v", err)
	}
	for _, p := range []string{"etc/gatehouse/gatehouse.yaml", "var/lib/gatehouse/sessions.db"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("after dpkg --remove: %v", err)
		}
	}
	if passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); !bytes.Contains(passwd, []byte("\ngatehouse:")) {
		t.Errorf("after dpkg --remove, the gatehouse user is gone:\n%s", passwd)
	}
}

func (r release) checkRPM(t *testing.T) {
	arch := r.hostArch(t)
	pkg := filepath.Join(r.dist, fmt.Sprintf("gatehouse-%s.%s.rpm", r.debVersion(), rpmArch(arch)))
	info := run(t, "", "rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\n[%{FILEFLAGS:fflags} %{FILENAMES}\n]", pkg)
	if want := fmt.Sprintf("gatehouse %s %s\n", r.debVersion(), rpmArch(arch)); !strings.HasPrefix(info, want) {
		t.Errorf("rpm -qp: %q, want it to start with %q", info, want)
	}
	// config|noreplace: rpm -U keeps the operator's edits.
	if !regexp.MustCompile(`(?m)^cn /etc/gatehouse/gatehouse.yaml$`).MatchString(info) {
		t.Errorf("rpm: /etc/gatehouse/gatehouse.yaml is not %%config(noreplace):\n%s", info)
	}
	// rpm --root runs scriptlets in a chroot, and the sandbox has no shell: rpm installs the
	// files, and the package's own scriptlets then run as dpkg's chrootless ones do.
	root := sandbox(t)
	rpm := func(args ...string) string {
		return run(t, "", "rpm", append([]string{"--root", root, "--dbpath", "/var/lib/rpm"}, args...)...)
	}
	scriptlet := func(tag string) {
		t.Helper()
		body := run(t, "", "rpm", "-qp", "--qf", "%{"+tag+"}", pkg)
		if !strings.HasPrefix(body, "#!/bin/sh") {
			t.Fatalf("rpm: the %s scriptlet is %q", tag, body)
		}
		p := filepath.Join(t.TempDir(), tag)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		runEnv(t, []string{"DPKG_ROOT=" + root}, "sh", p, "1") // $1 = 1: the first install
	}
	scriptlet("PREIN")
	rpm("--install", "--nodeps", "--noscripts", pkg)
	scriptlet("POSTIN")
	if q := rpm("-q", "gatehouse"); strings.TrimSpace(q) != fmt.Sprintf("gatehouse-%s.%s", r.debVersion(), rpmArch(arch)) {
		t.Errorf("rpm -q gatehouse: %q", q)
	}
	r.checkInstalled(t, "rpm", root)
}

func (r release) checkImage(t *testing.T) {
	arch := r.hostArch(t)
	for _, target := range r.targets {
		goos, goarch, _ := strings.Cut(target, "/")
		if goos != "linux" {
			continue
		}
		t.Run(goarch, func(t *testing.T) {
			archive := filepath.Join(r.dist, fmt.Sprintf("gatehouse_%s_linux_%s.oci.tar", r.version, goarch))
			rootfs := r.checkOCIArchive(t, archive, goarch)
			if goarch != arch {
				return
			}
			r.checkVersion(t, "image rootfs", filepath.Join(rootfs, "usr/local/bin/gatehouse"))

			// buildah reads the archive as an image, and the binary runs from its mount.
			store := t.TempDir()
			buildah := func(args ...string) string {
				return run(t, "", "buildah", append([]string{"--root", filepath.Join(store, "storage"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs"}, args...)...)
			}
			ctr := strings.TrimSpace(buildah("from", "--quiet", "oci-archive:"+archive))
			t.Cleanup(func() {
				_ = exec.Command("buildah", "--root", filepath.Join(store, "storage"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs", "rm", ctr).Run()
			})
			if user := strings.TrimSpace(buildah("inspect", "--format", "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}", ctr)); user != "65532:65532 [/usr/local/bin/gatehouse]" {
				t.Errorf("buildah inspect: user and entrypoint %q", user)
			}
			mnt := strings.TrimSpace(buildah("mount", ctr))
			r.checkVersion(t, "image (buildah mount)", filepath.Join(mnt, "usr/local/bin/gatehouse"))
			buildah("umount", ctr)
		})
	}
}

// checkOCIArchive checks the image's configuration and file system, and returns the file
// system extracted.
func (r release) checkOCIArchive(t *testing.T, archive, goarch string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(r.epoch) || h.Uid != 0 {
			t.Errorf("%s: %s has time %v and owner %d", archive, h.Name, h.ModTime, h.Uid)
		}
		b, _ := io.ReadAll(tr)
		blobs[h.Name] = b
	}
	type descriptor struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	}
	blob := func(d descriptor) []byte {
		t.Helper()
		b, ok := blobs["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("%s: no blob %s", archive, d.Digest)
		}
		if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != d.Digest {
			t.Fatalf("%s: blob %s has another digest", archive, d.Digest)
		}
		return b
	}
	if !bytes.Contains(blobs["oci-layout"], []byte(`"imageLayoutVersion"`)) {
		t.Fatalf("%s is not an OCI layout: oci-layout is %q", archive, blobs["oci-layout"])
	}
	var index struct{ Manifests []descriptor }
	mustJSON(t, blobs["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("%s: %d manifests, want 1", archive, len(index.Manifests))
	}
	var manifest struct {
		Config descriptor
		Layers []descriptor
	}
	mustJSON(t, blob(index.Manifests[0]), &manifest)
	var config struct {
		Created      time.Time
		Architecture string
		OS           string
		Config       struct {
			User         string
			ExposedPorts map[string]struct{}
			Env          []string
			Entrypoint   []string
			Cmd          []string
			Volumes      map[string]struct{}
			WorkingDir   string
			Labels       map[string]string
		}
		History []struct{ Created time.Time }
	}
	mustJSON(t, blob(manifest.Config), &config)
	c := config.Config
	if config.Architecture != goarch || config.OS != "linux" || !config.Created.Equal(r.epoch) {
		t.Errorf("image: %s/%s created %v, want linux/%s at the commit's time %v", config.OS, config.Architecture, config.Created, goarch, r.epoch)
	}
	for _, h := range config.History {
		if !h.Created.Equal(r.epoch) {
			t.Errorf("image: a history entry is dated %v", h.Created)
		}
	}
	if c.User != "65532:65532" {
		t.Errorf("image: user %q, want 65532:65532 (non-root)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/gatehouse"}) || !slices.Equal(c.Cmd, []string{"serve", "--config", "/etc/gatehouse/gatehouse.yaml"}) {
		t.Errorf("image: entrypoint %q, cmd %q", c.Entrypoint, c.Cmd)
	}
	if got := keys(c.ExposedPorts); !slices.Equal(got, []string{"9080/tcp", "9090/tcp", "9091/tcp"}) {
		t.Errorf("image: exposed ports %v, want 9080, 9090 and 9091 (public, admin, health)", got)
	}
	if got := keys(c.Volumes); !slices.Equal(got, []string{"/var/lib/gatehouse"}) || c.WorkingDir != "/var/lib/gatehouse" {
		t.Errorf("image: volumes %v and working directory %q, want /var/lib/gatehouse", got, c.WorkingDir)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  r.version,
		"org.opencontainers.image.revision": r.commit,
		"org.opencontainers.image.created":  r.epoch.Format(time.RFC3339),
		"org.opencontainers.image.title":    "gatehouse",
	} {
		if c.Labels[k] != want {
			t.Errorf("image: label %s is %q, want %q", k, c.Labels[k], want)
		}
	}
	if len(manifest.Layers) != 1 {
		t.Fatalf("image: %d layers, want 1", len(manifest.Layers))
	}

	// The file system: root's, read-only to the runtime user except the state volume, so
	// the container runs with a read-only root file system.
	rootfs := t.TempDir()
	seen := map[string]bool{}
	for h, body := range readTarGz(t, "", blob(manifest.Layers[0])) {
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		seen[name] = true
		if !h.ModTime.Equal(r.epoch) {
			t.Errorf("image: /%s modified %v", name, h.ModTime)
		}
		state := name == "var/lib/gatehouse" || strings.HasPrefix(name, "var/lib/gatehouse/")
		switch {
		case state && (h.Uid != 65532 || h.Gid != 65532 || h.Mode&0o777 != 0o700):
			t.Errorf("image: the state volume /%s is %d:%d %o, want 65532:65532 0700", name, h.Uid, h.Gid, h.Mode&0o777)
		case !state && (h.Uid != 0 || h.Gid != 0 || h.Mode&0o022 != 0):
			t.Errorf("image: /%s is %d:%d %o: only the state volume may be writable by the runtime user", name, h.Uid, h.Gid, h.Mode&0o7777)
		}
		if h.Mode&0o6000 != 0 {
			t.Errorf("image: /%s is setuid or setgid", name)
		}
		dst := filepath.Join(rootfs, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, body, os.FileMode(h.Mode)&0o755); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("image: /%s is of type %q; want only files and directories", name, h.Typeflag)
		}
	}
	for _, want := range []string{"usr/local/bin/gatehouse", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group", "etc/gatehouse", "var/lib/gatehouse"} {
		if !seen[want] {
			t.Errorf("image: no /%s", want)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:`).Match(passwd) {
		t.Errorf("image: /etc/passwd has no user 65532:\n%s", passwd)
	}
	ca, _ := os.ReadFile(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt"))
	if bytes.Count(ca, []byte("BEGIN CERTIFICATE")) < 50 {
		t.Errorf("image: the CA bundle has %d certificates", bytes.Count(ca, []byte("BEGIN CERTIFICATE")))
	}
	bin, _ := os.ReadFile(filepath.Join(rootfs, "usr/local/bin/gatehouse"))
	checkBinary(t, "image /usr/local/bin/gatehouse", bin, "linux", goarch)
	return rootfs
}

// readTarGz reads a gzip'ed tar from file (or, when file is "", from data) in order.
func readTarGz(t *testing.T, file string, data ...[]byte) func(func(*tar.Header, []byte) bool) {
	t.Helper()
	var raw []byte
	if file != "" {
		var err error
		if raw, err = os.ReadFile(file); err != nil {
			t.Fatal(err)
		}
	} else {
		raw = data[0]
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	// (The image layer's compressor writes a fixed time of its own: reproducible too.)
	if file != "" && (!zr.ModTime.IsZero() || zr.Name != "") {
		t.Errorf("%s: the gzip header holds a time (%v) or a name (%q)", file, zr.ModTime, zr.Name)
	}
	return func(yield func(*tar.Header, []byte) bool) {
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if !yield(h, b) {
				return
			}
		}
	}
}

func readSums(t *testing.T, dist string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		sum, name, ok := strings.Cut(s.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("SHA256SUMS: bad line %q", s.Text())
		}
		sums[name] = sum
	}
	return sums
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

// run runs a command and returns its standard output; its standard error is in the
// failure's message (rpm and dpkg write warnings there).
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

func runEnv(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func runAllowFail(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, _ := cmd.Output()
	return string(out)
}
