package queue_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

func values(n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("v%03d", i)
	}
	return vs
}

// A batch of 100 is one transaction, and its items are served in order,
// after the items enqueued before it.
func TestEnqueueBatchIsOneTransaction(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	prefix := testutil.Prefix(t)
	p, calls := newProducer(t, prefix)
	first, err := p.Enqueue(ctx, "before")
	if err != nil {
		t.Fatal(err)
	}
	calls.Reset()
	vs := values(100)
	ids, err := p.EnqueueBatch(ctx, vs)
	if err != nil {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	if calls.KV() != 1 || calls.Calls("Txn") != 1 {
		t.Fatalf("KV calls %d (Txn %d), want 1 transaction", calls.KV(), calls.Calls("Txn"))
	}
	if len(ids) != len(vs) {
		t.Fatalf("%d IDs for %d values", len(ids), len(vs))
	}
	q := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	if it := mustDequeue(t, ctx, q); it.ID() != first {
		t.Fatalf("first served %s (%q), want the item enqueued before the batch", it.ID(), it.Value())
	} else {
		mustAck(t, ctx, it)
	}
	for i, v := range vs {
		it := mustDequeue(t, ctx, q)
		if it.ID() != ids[i] || it.Value() != v {
			t.Fatalf("served %s %q, want %s %q", it.ID(), it.Value(), ids[i], v)
		}
		mustAck(t, ctx, it)
	}
}

// A batch that cannot go in one request is refused whole: before any write
// when the producer knows the server's limit, and by the server (nothing
// written) when the producer was told a larger limit than the server's.
func TestEnqueueBatchTooLargeWritesNothing(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	p, calls := newProducer(t, prefix)

	big := strings.Repeat("x", 100<<10)
	tooMany := make([]string, 20) // 2 MB: more than etcd's default 1.5 MiB
	for i := range tooMany {
		tooMany[i] = big
	}
	for name, vs := range map[string][]string{
		"over the request limit": tooMany,
		"over MaxBatch":          values(queue.MaxBatch + 1),
		"one value too large":    {"a", strings.Repeat("x", p.MaxValueSize()+1)},
	} {
		if _, err := p.EnqueueBatch(ctx, vs); !errors.Is(err, queue.ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", name, err)
		}
	}
	if calls.KV() != 0 {
		t.Fatalf("KV calls %d for refused batches, want 0", calls.KV())
	}

	lax, err := queue.NewProducer(cli, prefix, queue.WithMaxRequestBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lax.EnqueueBatch(ctx, tooMany); !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("a batch the server refuses: %v, want etcd's ErrRequestTooLarge", err)
	}
	if n, err := p.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after refused batches: %d, %v; want 0", n, err)
	}
	if _, err := p.EnqueueBatch(ctx, values(3), queue.WithPriority(queue.MaxPriority)); err != nil {
		t.Fatalf("a batch at the highest priority: %v", err)
	}
	if ids, err := p.EnqueueBatch(ctx, nil); ids != nil || err != nil {
		t.Fatalf("an empty batch: %v, %v; want nothing", ids, err)
	}
}

// A batch whose answer was lost is enqueued once: the retry finds its
// first item in etcd's history.
func TestEnqueueBatchLostAnswerEnqueuesOnce(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	p, loser := losingProducer(t, prefix)
	loser.Next("Txn", testutil.TxnPuts(prefix+"/items/"), func() {})
	ids, err := p.EnqueueBatch(ctx, values(10))
	if err != nil {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	if loser.Lost() != 1 {
		t.Fatalf("answers lost: %d, want 1", loser.Lost())
	}
	if n, err := p.Len(ctx); err != nil || n != 10 {
		t.Fatalf("Len: %d, %v; want 10", n, err)
	}
	q := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	if it := mustDequeue(t, ctx, q); it.ID() != ids[0] {
		t.Fatalf("served %s, EnqueueBatch returned %s first", it.ID(), ids[0])
	}
}
