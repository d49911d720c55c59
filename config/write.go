package config

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/rpc"
)

// PutOption configures Put.
type PutOption func(*putOptions)

type putOptions struct {
	ifRevision int64
	guarded    bool
}

// IfRevision makes Put a compare-and-swap: it writes only if the key was
// not written after revision rev (its ModRevision is at most rev; a key
// that does not exist qualifies). A key's own ModRevision and a Version's
// Revision both work as rev. Otherwise Put returns ErrConflict.
func IfRevision(rev int64) PutOption {
	return func(o *putOptions) { o.ifRevision, o.guarded = rev, true }
}

// Put writes value to key and returns the revision of the write. With
// IfRevision two editors cannot overwrite each other's changes unseen.
// Errors that may pass are retried; a retry that finds the key holding
// value, written after rev, takes that for its own lost write.
func Put(ctx context.Context, cli *clientv3.Client, key, value string, opts ...PutOption) (int64, error) {
	if key == "" {
		return 0, fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	var o putOptions
	for _, opt := range opts {
		opt(&o)
	}
	t := rpc.Txn{Then: []clientv3.Op{clientv3.OpPut(key, value)}, Else: []clientv3.Op{clientv3.OpGet(key)}}
	if o.guarded {
		t.If = []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "<", o.ifRevision+1)}
	}
	res, err := rpc.Commit(ctx, cli, nil, t)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("config: put %s: %w", key, err)
	}
	if res.Succeeded {
		return res.Header.Revision, nil
	}
	cur := res.Responses[0].GetResponseRange().Kvs
	if res.Retried && len(cur) == 1 && string(cur[0].Value) == value {
		return cur[0].ModRevision, nil // our write, whose answer was lost
	}
	at := int64(0)
	if len(cur) == 1 {
		at = cur[0].ModRevision
	}
	return 0, fmt.Errorf("%w: %s was written at revision %d, after %d", ErrConflict, key, at, o.ifRevision)
}
