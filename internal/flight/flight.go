// Package flight collapses concurrent calls for the same key into one: the first caller
// runs the function, the others wait for its result. It is how 200 requests arriving at
// the moment a session's access token expires cause one refresh, not 200.
package flight

import (
	"context"
	"sync"
)

// Group runs at most one call per key at a time. The zero value is ready to use.
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
	err  error
	dups int
}

// Do runs fn for key unless a call for key is already running, in which case it waits
// for that call's result. fn runs with a context detached from any single caller's
// cancellation (one browser going away must not fail the others); a waiter whose own ctx
// ends stops waiting and gets ctx.Err(). shared reports whether the result came from
// another caller's run.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (v T, err error, shared bool) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*call[T]{}
	}
	c, running := g.calls[key]
	if running {
		c.dups++
	} else {
		c = &call[T]{done: make(chan struct{})}
		g.calls[key] = c
	}
	g.mu.Unlock()

	if !running {
		go func() {
			defer func() {
				g.mu.Lock()
				delete(g.calls, key)
				g.mu.Unlock()
				close(c.done)
			}()
			c.val, c.err = fn(context.WithoutCancel(ctx))
		}()
	}
	select {
	case <-c.done:
		return c.val, c.err, running
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err(), running
	}
}
