package testutil

import (
	"context"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReplyLoser makes chosen calls of a client reach etcd and take effect,
// then reports them failed with Unavailable, as a connection that breaks
// after the request was sent but before the answer came back: the fault
// that says nothing about whether a write was applied.
type ReplyLoser struct {
	mu    sync.Mutex
	rules []*loseRule
	lost  int
}

type loseRule struct {
	method string // "Txn", "DeleteRange", ...
	match  func(req any) bool
	after  func() // runs after etcd applied the request, before the caller hears
	keep   bool   // the answer is not lost: the rule only runs after
	left   int
	until  time.Time // outage rule: fail without sending until then
	err    error     // what an outage rule fails with
}

// LosingClient returns a client of the shared server whose replies l can
// lose, closed when the test ends.
func LosingClient(t testing.TB) (*clientv3.Client, *ReplyLoser) {
	t.Helper()
	l := &ReplyLoser{}
	cfg := Server(t).ClientConfig()
	l.Lose(&cfg)
	return ClientWith(t, cfg), l
}

// Lose makes the clients created from cfg subject to l.
func (l *ReplyLoser) Lose(cfg *clientv3.Config) {
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(l.unary))
}

// Next loses the answer of the next call of method (the gRPC method's last
// element: "Txn", "Put", "DeleteRange", "Range") whose request match
// accepts (a nil match takes any). after, if not nil, runs once etcd has
// applied the request and before the caller hears of the failure: a test
// makes others act in that window.
func (l *ReplyLoser) Next(method string, match func(req any) bool, after func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules = append(l.rules, &loseRule{method: method, match: match, after: after, left: 1})
}

// After runs fn once, after the next call of method that match accepts
// was applied and before its caller hears the answer, which is not lost:
// a test makes others act between a caller's read and its write.
func (l *ReplyLoser) After(method string, match func(req any) bool, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules = append(l.rules, &loseRule{method: method, match: match, after: fn, keep: true, left: 1})
}

// Outage fails every call of method that match accepts for d, with
// Unavailable and without sending it: a member that cannot be reached for
// longer than the client's own retries last.
func (l *ReplyLoser) Outage(method string, match func(req any) bool, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules = append(l.rules, &loseRule{method: method, match: match, until: time.Now().Add(d),
		err: status.Error(codes.Unavailable, "testutil: the member cannot be reached")})
}

// Deny fails every call of method that match accepts from now on with
// etcd's permission denied, without sending it: a user whose role does
// not grant the keys.
func (l *ReplyLoser) Deny(method string, match func(req any) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules = append(l.rules, &loseRule{method: method, match: match,
		until: time.Now().Add(1000000 * time.Hour), err: rpctypes.ErrGRPCPermissionDenied})
}

// Clear drops every rule that has not taken effect yet and ends every
// outage.
func (l *ReplyLoser) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules = nil
}

// Lost returns how many answers were lost so far.
func (l *ReplyLoser) Lost() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func (l *ReplyLoser) out(method string, req any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rules {
		if !r.until.IsZero() && time.Now().Before(r.until) && r.method == method && (r.match == nil || r.match(req)) {
			return r.err
		}
	}
	return nil
}

func (l *ReplyLoser) take(method string, req any) (lose bool, after func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rules {
		if r.left > 0 && r.method == method && (r.match == nil || r.match(req)) {
			r.left--
			if !r.keep {
				l.lost++
			}
			return !r.keep, r.after
		}
	}
	return false, nil
}

func (l *ReplyLoser) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	m := path.Base(method)
	if err := l.out(m, req); err != nil {
		return err
	}
	if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
		return err
	}
	lose, after := l.take(m, req)
	if after != nil {
		after()
	}
	if lose {
		return status.Error(codes.Unavailable, "testutil: the answer was lost after etcd applied the request")
	}
	return nil
}

// TxnPuts matches a transaction that puts, in either branch, a key that
// starts with prefix.
func TxnPuts(prefix string) func(req any) bool {
	return txnHas(func(op *pb.RequestOp) bool {
		p := op.GetRequestPut()
		return p != nil && strings.HasPrefix(string(p.Key), prefix)
	})
}

// TxnDeletes matches a transaction that deletes, in either branch, a key
// that starts with prefix.
func TxnDeletes(prefix string) func(req any) bool {
	return txnHas(func(op *pb.RequestOp) bool {
		d := op.GetRequestDeleteRange()
		return d != nil && strings.HasPrefix(string(d.Key), prefix)
	})
}

// CurrentRange matches a read at the current revision (not a historical
// one).
func CurrentRange() func(req any) bool {
	return func(req any) bool {
		r, ok := req.(*pb.RangeRequest)
		return ok && r.Revision == 0
	}
}

// TxnWrites matches a transaction that puts or deletes anything.
func TxnWrites() func(req any) bool {
	return txnHas(func(op *pb.RequestOp) bool {
		return op.GetRequestPut() != nil || op.GetRequestDeleteRange() != nil || op.GetRequestTxn() != nil
	})
}

// TxnPutsValue matches a transaction that puts a value that starts with
// prefix.
func TxnPutsValue(prefix string) func(req any) bool {
	return txnHas(func(op *pb.RequestOp) bool {
		p := op.GetRequestPut()
		return p != nil && strings.HasPrefix(string(p.Value), prefix)
	})
}

func txnHas(f func(*pb.RequestOp) bool) func(req any) bool {
	return func(req any) bool {
		t, ok := req.(*pb.TxnRequest)
		if !ok {
			return false
		}
		for _, op := range append(append([]*pb.RequestOp(nil), t.Success...), t.Failure...) {
			if f(op) {
				return true
			}
		}
		return false
	}
}
