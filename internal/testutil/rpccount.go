package testutil

import (
	"context"
	"path"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// RPCCounter counts the gRPC calls a client makes, by method name ("Txn",
// "Range", "Put", "DeleteRange", "LeaseGrant", "Watch", ...), and the watch
// events it receives. Counts are deterministic, so tests assert them.
type RPCCounter struct {
	mu            sync.Mutex
	calls         map[string]int
	watchEvents   int
	watchesOpened int
}

// CountingClient returns a client of the shared server whose RPCs are
// counted, closed when the test ends.
func CountingClient(t testing.TB) (*clientv3.Client, *RPCCounter) {
	t.Helper()
	c := NewRPCCounter()
	cfg := Server(t).ClientConfig()
	c.Count(&cfg)
	return ClientWith(t, cfg), c
}

// NewRPCCounter returns a counter that counts nothing until Count adds it
// to a client's configuration.
func NewRPCCounter() *RPCCounter { return &RPCCounter{calls: map[string]int{}} }

// Count makes the clients created from cfg count their calls in c.
func (c *RPCCounter) Count(cfg *clientv3.Config) {
	cfg.DialOptions = append(cfg.DialOptions,
		grpc.WithChainUnaryInterceptor(c.unary),
		grpc.WithChainStreamInterceptor(c.stream))
}

// Calls returns how many calls of method were made since the last Reset.
func (c *RPCCounter) Calls(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// AwaitCall fails t unless a call of method is made (since the last Reset)
// before ctx ends: for a test that breaks the network while that call is
// in flight.
func (c *RPCCounter) AwaitCall(t testing.TB, ctx context.Context, method string) {
	t.Helper()
	for c.Calls(method) == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s call was made", method)
		case <-time.After(time.Millisecond):
		}
	}
}

// KV returns the number of key-value calls (Range, Put, DeleteRange, Txn)
// since the last Reset: the round trips an operation costs.
func (c *RPCCounter) KV() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls["Range"] + c.calls["Put"] + c.calls["DeleteRange"] + c.calls["Txn"]
}

// WatchEvents returns the number of watch events received since the last
// Reset.
func (c *RPCCounter) WatchEvents() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchEvents
}

// WatchesCreated returns the number of watches the server confirmed as
// created since the last Reset. Tests wait on it to know that a waiter is
// watching before they make the change it waits for.
func (c *RPCCounter) WatchesCreated() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchesOpened
}

// Reset sets every count to zero.
func (c *RPCCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = map[string]int{}
	c.watchEvents = 0
	c.watchesOpened = 0
}

func (c *RPCCounter) add(method string) {
	c.mu.Lock()
	c.calls[path.Base(method)]++
	c.mu.Unlock()
}

func (c *RPCCounter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.add(method)
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *RPCCounter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c.add(method)
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &countingStream{ClientStream: cs, c: c}, nil
}

type countingStream struct {
	grpc.ClientStream
	c *RPCCounter
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if wr, ok := m.(*pb.WatchResponse); ok && err == nil {
		s.c.mu.Lock()
		s.c.watchEvents += len(wr.Events)
		if wr.Created {
			s.c.watchesOpened++
		}
		s.c.mu.Unlock()
	}
	return err
}
