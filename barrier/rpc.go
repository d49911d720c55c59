package barrier

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/rpc"
)

// commit commits one transaction of the participant through rpc.Commit:
// attempts bounded and retried while the session lives. Every transaction
// of this package is guarded so that applying it twice is harmless, and
// reads in its Else branch what tells a retry whether an earlier attempt
// was applied.
func (d *DoubleBarrier) commit(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (rpc.Result, error) {
	return rpc.Commit(ctx, d.cli, d.s, rpc.Txn{If: cmps, Then: then, Else: els})
}

// wrap prefixes an RPC error with the package name and what failed; if ctx
// has ended, that is the error, unwrapped, so that callers can compare it.
func wrap(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("barrier: %s: %w", what, err)
}
