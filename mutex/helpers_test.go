package mutex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// newMutex returns the mutex named prefix for s.
func newMutex(t *testing.T, s *lockstep.Session, prefix string) *mutex.Mutex {
	t.Helper()
	m, err := mutex.New(s, prefix)
	if err != nil {
		t.Fatalf("mutex.New(%q): %v", prefix, err)
	}
	return m
}

// mustLock locks m or fails the test.
func mustLock(t *testing.T, ctx context.Context, m *mutex.Mutex) *mutex.Lock {
	t.Helper()
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	return l
}

// result is what a Lock call in a goroutine returned, and when.
type result struct {
	l   *mutex.Lock
	err error
	at  time.Time
}

// lockAsync calls m.Lock in a goroutine; the result arrives on the channel.
func lockAsync(ctx context.Context, m *mutex.Mutex) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := m.Lock(ctx)
		ch <- result{l, err, time.Now()}
	}()
	return ch
}

// await returns the result of an asynchronous Lock, failing the test if
// ctx ends first.
func await(t *testing.T, ctx context.Context, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		t.Fatalf("Lock did not return: %v\ngoroutines:\n%s", ctx.Err(), testutil.Stacks())
		return result{}
	}
}

// queue returns the keys under prefix, oldest first.
func queue(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("read queue: %v", err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// waitQueue waits until n keys are under prefix.
func waitQueue(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		if len(queue(t, ctx, cli, prefix)) == n {
			return
		}
		if err := retry.Sleep(ctx, min(attempt, 3)); err != nil {
			t.Fatalf("waiting for %d keys under %s: %v (have %v)", n, prefix, err, queue(t, context.Background(), cli, prefix))
		}
	}
}

// waitDone waits until l ends and returns its Err.
func waitDone(t *testing.T, ctx context.Context, l lockstep.Ownership) error {
	t.Helper()
	select {
	case <-l.Done():
		return l.Err()
	case <-ctx.Done():
		t.Fatalf("ownership of %s did not end: %v", l.Key(), ctx.Err())
		return nil
	}
}

// stillLocked checks that Lock on m does not succeed within a short while:
// it must end with the deadline.
func stillLocked(t *testing.T, ctx context.Context, m *mutex.Mutex) {
	t.Helper()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	l, err := m.Lock(short)
	if err == nil {
		t.Fatalf("Lock succeeded while the mutex was held (key %s)", l.Key())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held: got %v, want DeadlineExceeded", err)
	}
}
