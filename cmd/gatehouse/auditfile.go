package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// auditFile is the audit log's file. It is appended to, never truncated, and reopened
// on SIGHUP so that logrotate can move it away (no copytruncate needed).
type auditFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openAuditFile(path string) (*auditFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s for appending: %v", path, errors.Unwrap(err))
	}
	return &auditFile{path: path, f: f}, nil
}

func (a *auditFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Write(p)
}

// Reopen starts writing to a new file at the same path (after a rotation); on error the
// old file stays in use.
func (a *auditFile) Reopen() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	return old.Close()
}

func (a *auditFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}

// reopenAccessLog reopens the access log's file, if any, on SIGHUP (for logrotate).
func reopenAccessLog(access *auditFile, log *slog.Logger) {
	if access == nil {
		return
	}
	if err := access.Reopen(); err != nil {
		log.Error("cannot reopen the access log", "error", err)
	}
}
