package retry

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lockstep-go/lockstep"
)

// Transient reports whether a failed etcd call is worth retrying: the
// cluster is electing a leader, is overloaded or slow, or the connection to
// a member broke (a restart, a partition). A context's end, a session's end
// and everything the server refused on its merits are final, and so is a
// full database (NOSPACE lasts until an operator acts). clientv3 returns a
// call's own ctx error as it is (context.DeadlineExceeded), so a caller
// that bounds each attempt with a timeout of its own must not rely on this
// to retry the attempts that timed out.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, lockstep.ErrSessionLost) || errors.Is(err, lockstep.ErrSessionClosed) ||
		errors.Is(err, rpctypes.ErrGRPCNoSpace) || errors.Is(err, rpctypes.ErrNoSpace) {
		return false
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}
