package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

func newProducer(t testing.TB, prefix string) (*queue.Producer, *testutil.RPCCounter) {
	t.Helper()
	cli, calls := testutil.CountingClient(t)
	p, err := queue.NewProducer(cli, prefix)
	if err != nil {
		t.Fatalf("NewProducer(%q): %v", prefix, err)
	}
	return p, calls
}

// losingProducer returns a producer of prefix whose client loses answers.
func losingProducer(t testing.TB, prefix string) (*queue.Producer, *testutil.ReplyLoser) {
	t.Helper()
	cli, loser := testutil.LosingClient(t)
	p, err := queue.NewProducer(cli, prefix)
	if err != nil {
		t.Fatalf("NewProducer(%q): %v", prefix, err)
	}
	return p, loser
}

// A producer needs a client only: it enqueues and counts without a lease,
// one round trip each, and consumers on sessions get its items in order.
func TestProducerNeedsNoSession(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	p, calls := newProducer(t, prefix)
	var ids []string
	for i, v := range []string{"a", "b", "c"} {
		id, err := p.Enqueue(ctx, v, queue.WithPriority(i%2))
		if err != nil {
			t.Fatalf("Enqueue(%q): %v", v, err)
		}
		ids = append(ids, id)
	}
	if n, err := p.Len(ctx); err != nil || n != 3 {
		t.Fatalf("Len: %d, %v; want 3", n, err)
	}
	if got := calls.Calls("LeaseGrant") + calls.Calls("LeaseKeepAlive"); got != 0 {
		t.Fatalf("lease calls: %d, want 0", got)
	}
	if got := calls.Calls("Txn"); got != 3 {
		t.Fatalf("transactions: %d, want 3 (one per Enqueue)", got)
	}
	q := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	for _, want := range []string{ids[0], ids[2], ids[1]} {
		it := mustDequeue(t, ctx, q)
		if it.ID() != want {
			t.Fatalf("dequeued %s, want %s", it.ID(), want)
		}
		mustAck(t, ctx, it)
	}
}

// A producer's Enqueue whose answer was lost enqueues its item once, as a
// Queue's does.
func TestProducerLostAnswerEnqueuesOnce(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	p, loser := losingProducer(t, prefix)
	loser.Next("Txn", testutil.TxnPuts(prefix+"/items/"), func() {})
	id, err := p.Enqueue(ctx, "v")
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if loser.Lost() != 1 {
		t.Fatalf("answers lost: %d, want 1", loser.Lost())
	}
	if n, err := p.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len: %d, %v; want 1", n, err)
	}
	q := newQueue(t, testutil.Session(t, testutil.Client(t)), prefix)
	if it := mustDequeue(t, ctx, q); it.ID() != id {
		t.Fatalf("served %s, Enqueue returned %s", it.ID(), id)
	}
}

// NewProducer refuses what New refuses, with the same errors, before any
// I/O.
func TestNewProducerInvalid(t *testing.T) {
	cli := testutil.Client(t)
	for _, tt := range []struct {
		name   string
		prefix string
		opts   []queue.Option
		want   error
	}{
		{"empty prefix", "", nil, lockstep.ErrInvalidPrefix},
		{"root prefix", "/", nil, lockstep.ErrInvalidPrefix},
		{"dead letter inside", "/q", []queue.Option{queue.WithDeadLetter("/q/dead", 3)}, lockstep.ErrInvalidPrefix},
		{"dead letter limit", "/q", []queue.Option{queue.WithDeadLetter("/dead", 0)}, queue.ErrInvalidOption},
		{"request too small", "/q", []queue.Option{queue.WithMaxRequestBytes(10)}, queue.ErrInvalidOption},
	} {
		if _, err := queue.NewProducer(cli, tt.prefix, tt.opts...); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := queue.NewProducer(nil, "/q"); !errors.Is(err, lockstep.ErrNilClient) {
		t.Errorf("nil client: %v, want ErrNilClient", err)
	}
}

// A producer and its consumers agree on the largest value when given the
// same options.
func TestProducerMaxValueSizeFollowsTheOptions(t *testing.T) {
	cli := testutil.Client(t)
	opts := []queue.Option{queue.WithMaxRequestBytes(64 << 10), queue.WithDeadLetter("/a-long-dead-letter-prefix", 3)}
	p, err := queue.NewProducer(cli, "/q", opts...)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, testutil.Session(t, cli), "/q", opts...)
	if p.MaxValueSize() != q.MaxValueSize() {
		t.Fatalf("producer's max value %d, queue's %d", p.MaxValueSize(), q.MaxValueSize())
	}
	ctx := testutil.Context(t, 10*time.Second)
	big := string(make([]byte, p.MaxValueSize()+1))
	if _, err := p.Enqueue(ctx, big); !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("Enqueue of %d bytes: %v, want ErrTooLarge", len(big), err)
	}
}
