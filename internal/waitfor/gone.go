// Package waitfor has the watch loops the primitives block in.
package waitfor

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
)

// Gone blocks until key no longer holds the incarnation created at rev:
// it is deleted, or deleted and created again. It watches from fromRev, the
// first revision the caller has not seen; pass the header revision of the
// read that found the key plus one, so that etcd registers the watch as
// current and delivers the delete at once rather than from its 100ms
// catch-up loop.
//
// It survives compaction (it looks at the key and watches again), watches
// cancelled by the server and broken streams. It returns nil once the key
// is gone, or ctx's error.
func Gone(ctx context.Context, cli *clientv3.Client, key string, rev, fromRev int64) error {
	_, err := GoneAt(ctx, cli, key, rev, fromRev)
	return err
}

// GoneAt is Gone that also returns the revision of the delete, or 0 if it
// is not known (the key went in a compacted stretch of history).
func GoneAt(ctx context.Context, cli *clientv3.Client, key string, rev, fromRev int64) (int64, error) {
	for attempt := 0; ; attempt++ {
		deleted, compacted, err := watchOnce(ctx, cli, key, fromRev)
		if err != nil || deleted != 0 {
			return deleted, err
		}
		if compacted {
			resp, err := cli.Get(ctx, key)
			if err == nil {
				if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev {
					return 0, nil
				}
				fromRev = resp.Header.Revision + 1
				continue
			}
		}
		if err := retry.Sleep(ctx, attempt); err != nil {
			return 0, err
		}
	}
}

// watchOnce runs one watch until a delete arrives (it returns its
// revision), fromRev turns out to be compacted, or the watch ends.
func watchOnce(ctx context.Context, cli *clientv3.Client, key string, fromRev int64) (deleted int64, compacted bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range cli.Watch(wctx, key, clientv3.WithRev(fromRev), clientv3.WithFilterPut()) {
		if resp.CompactRevision != 0 {
			return 0, true, nil
		}
		for _, ev := range resp.Events {
			if ev.Type == mvccpb.DELETE {
				return ev.Kv.ModRevision, false, nil
			}
		}
		if resp.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return 0, false, ctx.Err()
	}
	if err := cli.Ctx().Err(); err != nil {
		return 0, false, fmt.Errorf("waitfor: client closed: %w", err)
	}
	return 0, false, nil
}
