package session

import (
	"context"
	"errors"
	"time"
)

// PutFlow keeps a login in progress (its PKCE verifier, nonce, return address: data)
// until its callback comes back with state, for at most ttl. The flow is sealed with a
// new random key that PutFlow returns and the caller gives only to the browser (in a
// cookie): a dump of the store cannot complete the login, and neither can someone who
// learnt the state alone.
func (m *Manager) PutFlow(ctx context.Context, state string, data []byte, ttl time.Duration) (key []byte, err error) {
	key = NewRandomKey()
	k := flowKey(state)
	sealed, err := Seal(key, []byte(k), data)
	if err != nil {
		return nil, err
	}
	if err := m.storeSet(ctx, k, sealed, ttl); err != nil {
		return nil, err
	}
	return key, nil
}

// TakeFlow returns the data of the flow stored under state and consumes it: a flow
// completes once, even when two callbacks race. It returns ErrNotFound when there is
// no such flow (never started, already completed, or expired), and ErrDecrypt when key
// does not open it (it was started in another browser): such a flow is left in place
// for its own browser.
func (m *Manager) TakeFlow(ctx context.Context, state string, key []byte) ([]byte, error) {
	k := flowKey(state)
	sealed, err := m.storeGet(ctx, k)
	if err != nil {
		return nil, err
	}
	data, err := Open(key, []byte(k), sealed)
	if err != nil {
		return nil, err
	}
	existed, err := m.storeDelete(ctx, k)
	if err != nil {
		return nil, err
	}
	if !existed {
		return nil, ErrNotFound // a racing callback took it first
	}
	return data, nil
}

// AddOnce records id (something that may be used only once, such as a logout token's
// issuer and jti) for ttl, and reports whether it is new. When several callers add the
// same id at once exactly one sees true: across processes when the store is an Adder,
// within this process otherwise.
func (m *Manager) AddOnce(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errors.New("session: AddOnce needs a positive ttl")
	}
	return m.storeAdd(ctx, onceKey(id), []byte{1}, ttl)
}

// ForgetOnce removes an id recorded by AddOnce, so that the operation it guarded can be
// tried again after it failed.
func (m *Manager) ForgetOnce(ctx context.Context, id string) error {
	_, err := m.storeDelete(ctx, onceKey(id))
	return err
}
