package queue_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// newQueue returns the queue named prefix for s.
func newQueue(t testing.TB, s *lockstep.Session, prefix string, opts ...queue.Option) *queue.Queue {
	t.Helper()
	q, err := queue.New(s, prefix, opts...)
	if err != nil {
		t.Fatalf("queue.New(%q): %v", prefix, err)
	}
	return q
}

func mustEnqueue(t testing.TB, ctx context.Context, q *queue.Queue, value string, prio int) string {
	t.Helper()
	id, err := q.Enqueue(ctx, value, queue.WithPriority(prio))
	if err != nil {
		t.Fatalf("Enqueue(%q, %d): %v", value, prio, err)
	}
	return id
}

func mustDequeue(t testing.TB, ctx context.Context, q *queue.Queue) *queue.Item {
	t.Helper()
	it, err := q.Dequeue(ctx)
	if err != nil {
		t.Fatalf("Dequeue: %v", err)
	}
	return it
}

func mustAck(t testing.TB, ctx context.Context, it *queue.Item) {
	t.Helper()
	if err := it.Ack(ctx); err != nil {
		t.Fatalf("Ack %s: %v", it.ID(), err)
	}
}

// keysUnder returns the keys under prefix.
func keysUnder(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

// noneUnder fails the test if any key is left under prefix.
func noneUnder(t testing.TB, cli *clientv3.Client, prefix string) {
	t.Helper()
	if ks := keysUnder(t, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left under %s: %v", prefix, ks)
	}
}

// dequeueAsync calls q.Dequeue in a goroutine; the result arrives on the
// channel.
func dequeueAsync(ctx context.Context, q *queue.Queue) <-chan result {
	ch := make(chan result, 1)
	go func() {
		it, err := q.Dequeue(ctx)
		ch <- result{it, err}
	}()
	return ch
}

type result struct {
	it  *queue.Item
	err error
}

func await(t testing.TB, ctx context.Context, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		t.Fatal("Dequeue did not return")
		return result{}
	}
}
