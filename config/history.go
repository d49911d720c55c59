package config

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/history"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// maxTxnOps is what one etcd transaction may hold by default
// (--max-txn-ops).
const maxTxnOps = 128

// Entry is one state of a prefix: what its keys held right after the
// change at Revision.
type Entry struct {
	Revision int64
	// Values maps each key, relative to the prefix, to its value.
	Values map[string]string
}

// History returns the newest n states of the prefix that etcd's history
// still holds, newest first: the current one, then the state before each
// earlier change. History goes back only to etcd's last compaction; with
// automatic compaction (--auto-compaction-retention) that is a window of
// time or of revisions. It reads the prefix once and replays its changes
// since the compaction from a watch.
func History(ctx context.Context, cli *clientv3.Client, prefix string, n int) ([]Entry, error) {
	if n < 1 || prefix == "" {
		return nil, fmt.Errorf("%w: prefix %q, n %d", ErrInvalidArgument, prefix, n)
	}
	now, err := rpc.Get(ctx, cli, nil, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fail(ctx, "history", prefix, err)
	}
	events, err := replay(ctx, cli, prefix, now.Header.Revision)
	if err != nil {
		return nil, fail(ctx, "history", prefix, err)
	}
	state := make(map[string]string, len(now.Kvs))
	rev := int64(0)
	for _, kv := range now.Kvs {
		state[strings.TrimPrefix(string(kv.Key), prefix)] = string(kv.Value)
		rev = max(rev, kv.ModRevision)
	}
	if len(events) > 0 {
		rev = events[len(events)-1].Kv.ModRevision
	}
	var out []Entry
	for i := len(events); len(out) < n; {
		out = append(out, Entry{Revision: rev, Values: maps.Clone(state)})
		if i == 0 {
			break // what came before is compacted
		}
		// Undo the change at rev, every event of it.
		for ; i > 0 && events[i-1].Kv.ModRevision == rev; i-- {
			ev := events[i-1]
			k := strings.TrimPrefix(string(ev.Kv.Key), prefix)
			if ev.PrevKv != nil {
				state[k] = string(ev.PrevKv.Value)
			} else {
				delete(state, k)
			}
		}
		if i == 0 {
			break // the state before the oldest change kept is not labelled
		}
		rev = events[i-1].Kv.ModRevision
	}
	return out, nil
}

// replay returns every event under prefix from the oldest revision etcd
// still holds up to rev, with the values they replaced.
func replay(ctx context.Context, cli *clientv3.Client, prefix string, rev int64) ([]*clientv3.Event, error) {
	r := history.Range{Key: prefix, End: clientv3.GetPrefixRangeEnd(prefix), PrevKV: true}
	from := int64(1)
	for {
		events, compacted, err := history.Between(ctx, cli, r, from, rev)
		if compacted == 0 || err != nil {
			return events, err
		}
		from = compacted
	}
}

// Rollback writes the prefix as it was at revision toRev, in one
// transaction: keys are given their values of then, keys added since are
// deleted. It fails with ErrConflict, writing nothing, if the prefix
// changes while it works; with ErrCompacted if toRev was compacted away;
// with ErrTooLarge if it would touch more keys than one transaction may.
// It returns the revision of the write (the current one if nothing
// differs).
func Rollback(ctx context.Context, cli *clientv3.Client, prefix string, toRev int64) (int64, error) {
	if prefix == "" || toRev < 1 {
		return 0, fmt.Errorf("%w: prefix %q, revision %d", ErrInvalidArgument, prefix, toRev)
	}
	then, err := rpc.Get(ctx, cli, nil, prefix, clientv3.WithPrefix(), clientv3.WithRev(toRev))
	if errors.Is(err, rpctypes.ErrCompacted) {
		return 0, fmt.Errorf("%w: %s at revision %d", ErrCompacted, prefix, toRev)
	}
	if err != nil {
		return 0, fail(ctx, "rollback", prefix, err)
	}
	now, err := rpc.Get(ctx, cli, nil, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fail(ctx, "rollback", prefix, err)
	}
	cmps, ops := rollbackTxn(prefix, then.Kvs, now)
	if len(ops) == 0 {
		return now.Header.Revision, nil
	}
	if len(cmps) > maxTxnOps || len(ops) > maxTxnOps {
		return 0, fmt.Errorf("%w: %s has %d keys", ErrTooLarge, prefix, max(len(cmps), len(ops)))
	}
	res, err := rpc.Commit(ctx, cli, nil, rpc.Txn{If: cmps, Then: ops})
	if err != nil {
		return 0, fail(ctx, "rollback", prefix, err)
	}
	if !res.Succeeded {
		return 0, fmt.Errorf("%w: %s changed during the rollback", ErrConflict, prefix)
	}
	return res.Header.Revision, nil
}

// rollbackTxn returns the guard (every key as now read, and nothing new)
// and the writes that turn now into then.
func rollbackTxn(prefix string, then []*mvccpb.KeyValue, now *clientv3.GetResponse) ([]clientv3.Cmp, []clientv3.Op) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(prefix), "<", now.Header.Revision+1).WithPrefix()}
	current := make(map[string]*mvccpb.KeyValue, len(now.Kvs))
	for _, kv := range now.Kvs {
		current[string(kv.Key)] = kv
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
	}
	var ops []clientv3.Op
	for _, kv := range then {
		k := string(kv.Key)
		if cur, ok := current[k]; !ok || string(cur.Value) != string(kv.Value) {
			ops = append(ops, clientv3.OpPut(k, string(kv.Value)))
		}
		delete(current, k)
	}
	for k := range current {
		ops = append(ops, clientv3.OpDelete(k))
	}
	return cmps, ops
}

// fail names a failed call, or returns ctx's error if ctx ended.
func fail(ctx context.Context, op, prefix string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("config: %s %s: %w", op, prefix, err)
}
