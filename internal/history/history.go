// Package history reads what etcd still holds of a range's past: the
// events of a span of revisions, read from a watch that starts in the past
// and ends when the server says it has sent everything up to the span's
// end.
package history

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrWatchEnded is returned when the watch closed before the history was
// read. It is an Unavailable status: the caller may try again.
var ErrWatchEnded = status.Error(codes.Unavailable, "history: watch ended")

// Range names the keys to read: Key alone if End is empty, else [Key, End).
type Range struct {
	Key, End string
	PrevKV   bool // the events carry the values they replaced
}

// Between returns the events of r with revisions from from to upTo. If
// from is compacted it returns no events and the compaction revision; the
// caller decides whether a shorter history will do.
//
// upTo must be a revision the server has reached (one read's header): the
// read ends at the first event past it or at a progress notification that
// says the watch has caught up with it. It needs etcd 3.5.8 or newer,
// which answers a progress request only once a stream's watches have
// caught up.
func Between(ctx context.Context, cli *clientv3.Client, r Range, from, upTo int64) (events []*clientv3.Event, compacted int64, err error) {
	// A watch stream of its own, so that the progress answer speaks of
	// this watch alone.
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx,
		"lockstep-history", strconv.FormatUint(rand.Uint64(), 16)))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRev(from), clientv3.WithCreatedNotify()}
	if r.End != "" {
		opts = append(opts, clientv3.WithRange(r.End))
	}
	if r.PrevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	ch := cli.Watch(wctx, r.Key, opts...)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case resp, ok := <-ch:
			switch {
			case !ok:
				if ctx.Err() != nil {
					return nil, 0, ctx.Err()
				}
				return nil, 0, ErrWatchEnded
			case resp.CompactRevision != 0:
				return nil, resp.CompactRevision, nil
			case resp.Err() != nil:
				return nil, 0, resp.Err()
			case resp.IsProgressNotify() && resp.Header.Revision >= upTo:
				return events, 0, nil
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision > upTo {
					return events, 0, nil
				}
				events = append(events, ev)
			}
		case <-tick.C:
			cli.RequestProgress(wctx) // answered once the watch has caught up
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}
