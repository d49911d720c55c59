package queue_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/queue"
)

func TestNewRejectsBadArguments(t *testing.T) {
	cli := testutil.Client(t)
	s := testutil.Session(t, cli)
	closed := testutil.Session(t, cli)
	closed.Close()
	tests := []struct {
		name   string
		s      *lockstep.Session
		prefix string
		opts   []queue.Option
		want   error
	}{
		{"nil session", nil, "/q", nil, lockstep.ErrNilSession},
		{"closed session", closed, "/q", nil, lockstep.ErrSessionClosed},
		{"empty prefix", s, "", nil, lockstep.ErrInvalidPrefix},
		{"prefix ends in two slashes", s, "/q//", nil, lockstep.ErrInvalidPrefix},
		{"empty dead-letter prefix", s, "/q", []queue.Option{queue.WithDeadLetter("", 3)}, lockstep.ErrInvalidPrefix},
		{"empty dead-letter prefix and zero attempts", s, "/q", []queue.Option{queue.WithDeadLetter("", 0)}, lockstep.ErrInvalidPrefix},
		{"dead-letter prefix ends in two slashes", s, "/q", []queue.Option{queue.WithDeadLetter("/dlq//", 3)}, lockstep.ErrInvalidPrefix},
		{"dead-letter same as queue", s, "/q", []queue.Option{queue.WithDeadLetter("/q", 3)}, lockstep.ErrInvalidPrefix},
		{"dead-letter inside queue", s, "/q", []queue.Option{queue.WithDeadLetter("/q/dead", 3)}, lockstep.ErrInvalidPrefix},
		{"queue inside dead-letter", s, "/q/jobs", []queue.Option{queue.WithDeadLetter("/q", 3)}, lockstep.ErrInvalidPrefix},
		{"zero max attempts", s, "/q", []queue.Option{queue.WithDeadLetter("/dlq", 0)}, queue.ErrInvalidOption},
		{"negative max attempts", s, "/q", []queue.Option{queue.WithDeadLetter("/dlq", -1)}, queue.ErrInvalidOption},
		{"request limit too small", s, "/q", []queue.Option{queue.WithMaxRequestBytes(100)}, queue.ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := queue.New(tt.s, tt.prefix, tt.opts...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: got %v, want %v", err, tt.want)
			}
			if q != nil {
				t.Fatalf("New returned a queue with error %v", err)
			}
		})
	}
	// A sibling whose name merely starts like the queue's is fine.
	if _, err := queue.New(s, "/q", queue.WithDeadLetter("/q-dead", 1)); err != nil {
		t.Fatalf("New with sibling dead-letter prefix: %v", err)
	}
}

func TestEnqueueRejectsBadInputBeforeWriting(t *testing.T) {
	cli, rpcs := testutil.CountingClient(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	prefix := testutil.Prefix(t)
	q := newQueue(t, s, prefix)
	closing := testutil.Session(t, cli)
	qc := newQueue(t, closing, prefix)
	closing.Close()
	tests := []struct {
		name  string
		q     *queue.Queue
		value string
		prio  int
		want  error
	}{
		{"priority below min", q, "v", queue.MinPriority - 1, queue.ErrInvalidPriority},
		{"priority above max", q, "v", queue.MaxPriority + 1, queue.ErrInvalidPriority},
		{"value one byte too large", q, strings.Repeat("x", q.MaxValueSize()+1), 0, queue.ErrTooLarge},
		{"value far too large", q, strings.Repeat("x", 2<<20), 0, queue.ErrTooLarge},
		{"closed session", qc, "v", 0, lockstep.ErrSessionClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rpcs.Reset()
			id, err := tt.q.Enqueue(ctx, tt.value, queue.WithPriority(tt.prio))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Enqueue: got (%q, %v), want %v", id, err, tt.want)
			}
			if got := rpcs.KV(); got != 0 {
				t.Fatalf("KV calls: got %d, want 0", got)
			}
		})
	}
	noneUnder(t, cli, prefix)
	if _, err := qc.Dequeue(ctx); !errors.Is(err, lockstep.ErrSessionClosed) {
		t.Fatalf("Dequeue on closed session: got %v, want ErrSessionClosed", err)
	}
}

// The largest value Enqueue accepts is one the server accepts too, also
// when it moves to a dead-letter queue with a longer prefix.
func TestMaxValueSizeIsAcceptedByTheServer(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	prefix := testutil.Prefix(t)
	dead := prefix + "-dead-letters-with-a-much-longer-name-than-the-queue-itself"
	q := newQueue(t, s, prefix, queue.WithDeadLetter(dead, 1))
	if got, want := q.MaxValueSize(), queue.DefaultMaxRequestBytes-2048; got < want {
		t.Fatalf("MaxValueSize: got %d, want at least %d", got, want)
	}
	big := strings.Repeat("v", q.MaxValueSize())
	id := mustEnqueue(t, ctx, q, big, 0)
	it := mustDequeue(t, ctx, q)
	if it.ID() != id || it.Value() != big {
		t.Fatalf("Dequeue: got %s (%d bytes), want %s (%d bytes)", it.ID(), len(it.Value()), id, len(big))
	}
	if err := it.Nack(ctx); err != nil { // attempts 1 = max: moves it
		t.Fatalf("Nack: %v", err)
	}
	dq := newQueue(t, s, dead)
	got := mustDequeue(t, ctx, dq)
	if got.ID() != id || got.Value() != big {
		t.Fatalf("dead letter: got %s (%d bytes), want %s (%d bytes)", got.ID(), len(got.Value()), id, len(big))
	}
	mustAck(t, ctx, got)
	noneUnder(t, cli, prefix+"/")
	noneUnder(t, cli, dead+"/")
}

func TestOrderPriorityThenFIFO(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	q := newQueue(t, s, testutil.Prefix(t))
	prios := []int{3, 0, -7, queue.MaxPriority, 0, -1, queue.MinPriority, 3, -7, 0, 1, -1, queue.MinPriority, queue.MaxPriority}
	type item struct {
		prio, seq int
		id        string
	}
	var want []item
	for i, p := range prios {
		want = append(want, item{p, i, mustEnqueue(t, ctx, q, fmt.Sprint(i), p)})
	}
	if n, err := q.Len(ctx); err != nil || n != len(prios) {
		t.Fatalf("Len: got (%d, %v), want %d", n, err, len(prios))
	}
	// Expected order: by priority, then by enqueue order.
	for i := 1; i < len(want); i++ {
		for j := i; j > 0 && want[j].prio < want[j-1].prio; j-- {
			want[j], want[j-1] = want[j-1], want[j]
		}
	}
	for i, w := range want {
		it := mustDequeue(t, ctx, q)
		if it.ID() != w.id || it.Priority() != w.prio || it.Value() != fmt.Sprint(w.seq) {
			t.Fatalf("delivery %d: got (%s, prio %d, %q), want (%s, prio %d, %q)",
				i, it.ID(), it.Priority(), it.Value(), w.id, w.prio, fmt.Sprint(w.seq))
		}
		mustAck(t, ctx, it)
	}
	if n, err := q.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after draining: got (%d, %v), want 0", n, err)
	}
}

func TestAckNackAttempts(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	prefix := testutil.Prefix(t)
	q := newQueue(t, s, prefix)
	id := mustEnqueue(t, ctx, q, "job", 0)
	for attempt := 1; attempt <= 3; attempt++ {
		it := mustDequeue(t, ctx, q)
		if it.ID() != id || it.Attempts() != attempt {
			t.Fatalf("delivery %d: got (%s, attempts %d), want (%s, %d)", attempt, it.ID(), it.Attempts(), id, attempt)
		}
		if err := it.Nack(ctx); err != nil {
			t.Fatalf("Nack: %v", err)
		}
		if !errors.Is(it.Err(), lockstep.ErrReleased) {
			t.Fatalf("Err after Nack: got %v, want ErrReleased", it.Err())
		}
		if err := it.Ack(ctx); !errors.Is(err, lockstep.ErrReleased) {
			t.Fatalf("Ack after Nack: got %v, want ErrReleased", err)
		}
	}
	it := mustDequeue(t, ctx, q)
	if it.Attempts() != 4 {
		t.Fatalf("Attempts: got %d, want 4", it.Attempts())
	}
	if it.Err() != nil {
		t.Fatalf("Err while held: %v", it.Err())
	}
	if !strings.HasPrefix(it.Key(), prefix+"/") || it.Token() <= 0 {
		t.Fatalf("claim key %q token %d", it.Key(), it.Token())
	}
	mustAck(t, ctx, it)
	select {
	case <-it.Done():
	default:
		t.Fatal("Done not closed after Ack")
	}
	if err := it.Ack(ctx); !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("second Ack: got %v, want ErrReleased", err)
	}
	if err := it.Nack(ctx); !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("Nack after Ack: got %v, want ErrReleased", err)
	}
	noneUnder(t, cli, prefix+"/")
}

// Round trips per operation, counted.
func TestRoundTrips(t *testing.T) {
	cli, rpcs := testutil.CountingClient(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	q := newQueue(t, s, testutil.Prefix(t))
	for i := 0; i < 3; i++ {
		mustEnqueue(t, ctx, q, "x", 0)
	}
	tests := []struct {
		name string
		op   func() error
		want int
	}{
		{"Enqueue", func() error { _, err := q.Enqueue(ctx, "y", queue.WithPriority(5)); return err }, 1},
		{"Len", func() error { _, err := q.Len(ctx); return err }, 1},
		{"Dequeue and Nack", func() error {
			it, err := q.Dequeue(ctx)
			if err != nil {
				return err
			}
			return it.Nack(ctx)
		}, 3},
		{"Dequeue and Ack", func() error {
			it, err := q.Dequeue(ctx)
			if err != nil {
				return err
			}
			return it.Ack(ctx)
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rpcs.Reset()
			if err := tt.op(); err != nil {
				t.Fatal(err)
			}
			if got := rpcs.KV(); got != tt.want {
				t.Fatalf("KV round trips: got %d, want %d", got, tt.want)
			}
		})
	}
}

// A successful Ack ends the Item with ErrReleased, never ErrLost, and asks
// the server nothing more, however the watch of its claim and the Ack's
// reply race.
func TestAckEndsReleased(t *testing.T) {
	cli, rpcs := testutil.CountingClient(t)
	ctx := testutil.Context(t, 60*time.Second)
	q := newQueue(t, testutil.Session(t, cli), testutil.Prefix(t))
	for i := 0; i < 50; i++ {
		mustEnqueue(t, ctx, q, "x", 0)
		it := mustDequeue(t, ctx, q)
		rpcs.Reset()
		mustAck(t, ctx, it)
		if !errors.Is(it.Err(), lockstep.ErrReleased) {
			t.Fatalf("Ack %d: Err %v, want ErrReleased", i, it.Err())
		}
		if n := rpcs.Calls("LeaseTimeToLive"); n != 0 {
			t.Fatalf("Ack %d: %d TimeToLive calls, want 0", i, n)
		}
	}
}
