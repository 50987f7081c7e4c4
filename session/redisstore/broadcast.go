package redisstore

import (
	"context"
	"errors"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/session"
)

var _ session.Broadcaster = (*Store)(nil)

// Publish sends msg on channel (PUBLISH <prefix><channel>) to every Store subscribed to
// it, in any process. In a Redis Cluster a message reaches the subscribers of every node.
func (s *Store) Publish(ctx context.Context, channel, msg string) error {
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return wrap("publish", c.Do(ctx, c.B().Publish().Channel(s.prefix+channel).Message(msg).Build()).Error())
}

// Subscribe listens on channel over a connection of its own (SUBSCRIBE), calling ready
// once Redis confirmed the subscription and fn for each message, until ctx is done or
// the connection breaks. It does not resubscribe by itself: a caller that subscribes
// again knows that messages may have been missed in between.
func (s *Store) Subscribe(ctx context.Context, channel string, ready func(), fn func(msg string)) error {
	if s.closed.Load() {
		return errClosed
	}
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	dc, release := c.Dedicate()
	defer release()
	defer dc.Close()
	broken := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) { fn(m.Message) }})
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	err = dc.Do(sctx, dc.B().Subscribe().Channel(s.prefix+channel).Build()).Error()
	cancel()
	if err != nil {
		return wrap("subscribe", err)
	}
	ready()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errClosed
	case err, ok := <-broken:
		if !ok || err == nil {
			err = errors.New("subscription ended")
		}
		return wrap("subscribe", err)
	}
}
