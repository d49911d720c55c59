package barrier_test

import (
	"context"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

// probe tells a test when a client's reads and transactions have
// completed, not just been sent (testutil.RPCCounter counts a call before
// making it), and counts the watch events it receives. A test that must act
// only once a waiter is blocked waits for the waiter's calls to complete.
type probe struct {
	mu     sync.Mutex
	calls  int // completed Range and Txn calls
	events int
	cond   *sync.Cond
}

func probeClient(t *testing.T) (*clientv3.Client, *probe) {
	t.Helper()
	p := &probe{}
	p.cond = sync.NewCond(&p.mu)
	cfg := testutil.Server(t).ClientConfig()
	cfg.DialOptions = append(cfg.DialOptions,
		grpc.WithChainUnaryInterceptor(p.unary),
		grpc.WithChainStreamInterceptor(p.stream))
	return testutil.ClientWith(t, cfg), p
}

// waitCalls returns once n reads or transactions have completed, or ctx
// has ended.
func (p *probe) waitCalls(ctx context.Context, n int) {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.calls < n && ctx.Err() == nil {
		p.cond.Wait()
	}
}

func (p *probe) watchEvents() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events
}

func (p *probe) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	switch req.(type) {
	case *pb.RangeRequest, *pb.TxnRequest:
		p.mu.Lock()
		p.calls++
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	return err
}

func (p *probe) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &probeStream{ClientStream: cs, p: p}, nil
}

type probeStream struct {
	grpc.ClientStream
	p *probe
}

func (s *probeStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if wr, ok := m.(*pb.WatchResponse); ok && err == nil {
		s.p.mu.Lock()
		s.p.events += len(wr.Events)
		s.p.mu.Unlock()
	}
	return err
}
