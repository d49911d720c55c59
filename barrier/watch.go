package barrier

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// errResync says a watch ended or fell behind compaction: the caller must
// arm a new one and read the state again.
var errResync = errors.New("barrier: watch interrupted")

// armed is a watch the server has registered before the caller's next read
// or write. Such a watch starts at the server's current revision and gets
// every later event at once. The usual alternative, a watch from the
// revision after a read, is registered as a catch-up watcher whenever any
// write reached the server in between (under load, almost always), and a
// catch-up watcher is served by a loop that runs every 100 ms: a barrier
// would lose up to 100 ms per wake-up.
type armed struct {
	ch     clientv3.WatchChan
	cancel context.CancelFunc
}

// arm watches key (with opts, e.g. a range end or a filter) and returns once
// the server has registered the watch, or with errSession if the session s
// (nil: none) ends first. The watch asks for a leader, so that a member
// cut off from the others ends it instead of going quiet.
func arm(ctx context.Context, cli *clientv3.Client, s *lockstep.Session, key string, opts ...clientv3.OpOption) (*armed, error) {
	var done <-chan struct{}
	if s != nil {
		done = s.Done()
	}
	ch, cancel := rpc.Watch(clientv3.WithRequireLeader(ctx), cli, s, key, append(opts, clientv3.WithCreatedNotify())...)
	select {
	case resp, ok := <-ch:
		if ok && resp.Created && resp.Err() == nil {
			return &armed{ch: ch, cancel: cancel}, nil
		}
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if s != nil && s.Err() != nil {
			return nil, errSession // the watch ended with the session
		}
		if !ok {
			return nil, errResync
		}
		if retry.Refused(resp.Err()) {
			// Permission denied: watching again changes nothing.
			return nil, fmt.Errorf("barrier: watch %s: %w", key, retry.Refusal(resp.Err()))
		}
		return nil, fmt.Errorf("%w: %v", errResync, resp.Err())
	case <-done:
		cancel()
		return nil, errSession
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
}

// next returns the next response that carries events. It returns ctx's
// error, errSession when done closes, or errResync when the watch ended.
func (a *armed) next(ctx context.Context, done <-chan struct{}) (clientv3.WatchResponse, error) {
	return nextEvents(ctx, a.ch, done)
}

// errSession says the participant's session ended while it waited.
var errSession = errors.New("barrier: session ended")

func nextEvents(ctx context.Context, ch clientv3.WatchChan, done <-chan struct{}) (clientv3.WatchResponse, error) {
	for {
		select {
		case resp, ok := <-ch:
			if !ok || resp.Canceled || resp.CompactRevision != 0 || resp.Err() != nil {
				if ctx.Err() != nil {
					return resp, ctx.Err()
				}
				return resp, errResync
			}
			if len(resp.Events) > 0 {
				return resp, nil
			}
		case <-done:
			return clientv3.WatchResponse{}, errSession
		case <-ctx.Done():
			return clientv3.WatchResponse{}, ctx.Err()
		}
	}
}
