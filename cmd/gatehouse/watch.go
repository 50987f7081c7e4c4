package main

import (
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadDebounce is how long the files must stay quiet after a change before the
// reload: an editor's save or a ConfigMap update is several events.
const reloadDebounce = 200 * time.Millisecond

// configWatcher signals Changed when the configuration file, or a file it names (the
// *_file secrets, the client key, the Redis CA), has new content. It watches their
// directories, not the files: an editor's rename-on-save and a Kubernetes ConfigMap
// update (a new directory, then the `..data` symlink swapped to it) replace the file,
// which a watch on the file itself would lose. Events are debounced, and a change whose
// content is the same as before (a touch, a chmod, a rewrite) does not signal.
type configWatcher struct {
	w       *fsnotify.Watcher
	changed chan struct{}
	log     *slog.Logger
	quiet   time.Duration

	mu    sync.Mutex
	files []string        // absolute, cleaned
	dirs  map[string]bool // watched
	sum   [sha256.Size]byte
	done  chan struct{}
}

func newConfigWatcher(files []string, quiet time.Duration, log *slog.Logger) (*configWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	cw := &configWatcher{w: w, changed: make(chan struct{}, 1), log: log, quiet: quiet,
		dirs: map[string]bool{}, done: make(chan struct{})}
	if err := cw.SetFiles(files); err != nil {
		w.Close()
		return nil, err
	}
	go cw.loop()
	return cw, nil
}

// Changed receives after the files changed. It is nil for a nil watcher (watching off).
func (cw *configWatcher) Changed() <-chan struct{} {
	if cw == nil {
		return nil
	}
	return cw.changed
}

// SetFiles replaces the files watched (a reload may name other secret files) and takes
// their content now as the baseline.
func (cw *configWatcher) SetFiles(files []string) error {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.files = cw.files[:0]
	for _, f := range files {
		if abs, err := filepath.Abs(f); err == nil {
			cw.files = append(cw.files, abs)
		}
	}
	for _, f := range cw.files {
		d := filepath.Dir(f)
		if cw.dirs[d] {
			continue
		}
		if err := cw.w.Add(d); err != nil {
			return err
		}
		cw.dirs[d] = true
	}
	cw.sum = fingerprint(cw.files)
	return nil
}

func (cw *configWatcher) Close() {
	if cw != nil {
		cw.w.Close()
		<-cw.done
	}
}

// relevant reports whether an event in a watched directory may have changed a watched
// file: the file itself, or a `..name` entry (Kubernetes' `..data` and its timestamped
// directories), whose swap changes what the file's symlink points to.
func (cw *configWatcher) relevant(name string) bool {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	name = filepath.Clean(name)
	return slices.Contains(cw.files, name) ||
		(strings.HasPrefix(filepath.Base(name), "..") && cw.dirs[filepath.Dir(name)])
}

func (cw *configWatcher) loop() {
	defer close(cw.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case ev, ok := <-cw.w.Events:
			if !ok {
				timer.Stop()
				return
			}
			if cw.relevant(ev.Name) {
				timer.Reset(cw.quiet)
			}
		case err, ok := <-cw.w.Errors:
			if !ok {
				timer.Stop()
				return
			}
			cw.log.Warn("watching the configuration files", "error", err)
		case <-timer.C:
			cw.mu.Lock()
			sum := fingerprint(cw.files)
			same := sum == cw.sum
			cw.sum = sum
			cw.mu.Unlock()
			if same {
				continue
			}
			select {
			case cw.changed <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}
}

// fingerprint hashes the content of files (through symlinks); a file that cannot be
// read counts by its error, so that its reappearance is a change.
func fingerprint(files []string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte("\x00error: " + err.Error())
		}
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// watchedFiles are the configuration file and the files its settings name, resolved
// as loadConfig resolves them.
func watchedFiles(path string, fc fileConfig) []string {
	base := filepath.Dir(path)
	out := []string{path}
	files := []string{
		fc.Session.KeysFile, fc.Session.AcceptKeysFile,
		fc.Session.Redis.PasswordFile, fc.Session.Redis.SentinelPasswordFile, fc.Session.Redis.TLSCAFile, fc.Admin.TokenFile,
		fc.Identity.SigningKeyFile, fc.Identity.PublishKeysFile,
		fc.TLS.CertFile, fc.TLS.KeyFile, // reloaded into the public listener's certificate
	}
	for _, p := range append([]fileProvider{fc.Provider}, fc.Providers...) {
		files = append(files, p.ClientSecretFile, p.ClientKeyFile, p.TLSClientCertFile, p.TLSClientKeyFile, p.TLSCAFile)
	}
	for _, f := range files {
		if f == "" || slices.Contains(out, f) {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(base, f)
		}
		out = append(out, f)
	}
	return out
}
