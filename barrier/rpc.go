package barrier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lockstep-go/lockstep/internal/retry"
)

const (
	// cleanupTimeout bounds the removal of a participant's key after Enter
	// or Leave failed: the caller may be giving up on a server it cannot
	// reach.
	cleanupTimeout = 5 * time.Second

	// attemptTimeout bounds one attempt of a transaction. A member cut off
	// from its peers holds a request until its own timeout (about 7s); the
	// retry goes to the next member. Normal transactions take milliseconds.
	attemptTimeout = 2 * time.Second
)

// txn commits one transaction, retrying errors that say nothing about its
// outcome (no leader, leader changed, unavailable) with backoff. Every
// transaction of this package is guarded so that applying it twice is
// harmless, which makes the retry safe even when the first attempt was
// applied and only its answer was lost. It stops at ctx's end, at the end of
// done (a session), and on errors a retry cannot fix.
func txn(ctx context.Context, cli *clientv3.Client, done <-chan struct{}, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		resp, err := cli.Txn(actx).If(cmps...).Then(then...).Else(els...).Commit()
		cancel()
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !transient(cli, err) {
			return nil, err
		}
		select {
		case <-done:
			return nil, err
		default:
		}
		if err := retry.Sleep(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// transient reports whether err may go away on its own.
func transient(cli *clientv3.Client, err error) bool {
	if cli.Ctx().Err() != nil {
		return false // the client is closed
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated,
		codes.Canceled:
		return false
	}
	return true
}

// wrap prefixes an RPC error with the package name and what failed; if ctx
// has ended, that is the error, unwrapped, so that callers can compare it.
func wrap(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("barrier: %s: %w", what, err)
}
