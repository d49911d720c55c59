package own_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// claim creates key under s and returns a handle for it.
func claim(t *testing.T, ctx context.Context, s *lockstep.Session, key string) *own.Handle {
	t.Helper()
	resp, err := s.Client().Put(ctx, key, "", clientv3.WithLease(s.Lease()))
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	return own.New(s, key, rev, rev+1, nil)
}

// claimLazy is claim with a handle that watches only once asked.
func claimLazy(t *testing.T, ctx context.Context, s *lockstep.Session, key string) *own.Handle {
	t.Helper()
	resp, err := s.Client().Put(ctx, key, "", clientv3.WithLease(s.Lease()))
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	return own.NewLazy(s, key, rev, rev+1, nil)
}

func waitDone(t *testing.T, ctx context.Context, h *own.Handle) {
	t.Helper()
	select {
	case <-h.Done():
	case <-ctx.Done():
		t.Fatal("ownership did not end")
	}
}

func TestHandleEndsWhenKeyDeletedElsewhere(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	h := claim(t, ctx, s, testutil.Prefix(t))
	if h.Err() != nil {
		t.Fatalf("Err while held: %v", h.Err())
	}
	if _, err := cli.Delete(ctx, h.Key()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, ctx, h)
	if !errors.Is(h.Err(), lockstep.ErrLost) {
		t.Fatalf("Err: got %v, want ErrLost", h.Err())
	}
	if err := h.Release(ctx); !errors.Is(err, lockstep.ErrLost) {
		t.Fatalf("Release after loss: got %v, want ErrLost", err)
	}
}

func TestHandleReleaseIsGuardedAndFinal(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	key := testutil.Prefix(t)
	h := claim(t, ctx, s, key)
	if err := h.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	waitDone(t, ctx, h)
	if !errors.Is(h.Err(), lockstep.ErrReleased) {
		t.Fatalf("Err: got %v, want ErrReleased", h.Err())
	}
	// Someone else now owns the same key; a second Release must not touch it.
	other := claim(t, ctx, s, key)
	if err := h.Release(ctx); !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("second Release: got %v, want ErrReleased", err)
	}
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != other.Token() {
		t.Fatalf("the newer owner's key was touched: %v", resp.Kvs)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestHandleReleaseReasonIsReleased: the watcher sees the delete of every
// Release; it must not blame someone else for it, however the two race.
func TestHandleReleaseReasonIsReleased(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	key := testutil.Prefix(t)
	for i := range 100 {
		h := claim(t, ctx, s, key)
		if err := h.Release(ctx); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		if !errors.Is(h.Err(), lockstep.ErrReleased) {
			t.Fatalf("release %d: Err got %v, want ErrReleased", i, h.Err())
		}
	}
}

func TestHandleEndsWithSession(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	tests := []struct {
		name string
		end  func(s *lockstep.Session)
		want error
	}{
		{"closed", func(s *lockstep.Session) { s.Close() }, lockstep.ErrSessionClosed},
		{"revoked", func(s *lockstep.Session) { testutil.Revoke(t, cli, s) }, lockstep.ErrSessionLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
			h := claim(t, ctx, s, testutil.Prefix(t))
			tt.end(s)
			waitDone(t, ctx, h)
			if !errors.Is(h.Err(), tt.want) {
				t.Fatalf("Err: got %v, want %v", h.Err(), tt.want)
			}
		})
	}
}

// A client closed under a held key (a process shutting its client down, a
// test simulating a crash) stops the watch for good; the handle still ends
// when the session does.
func TestHandleEndsWithSessionWhenClientClosed(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.ClientWith(t, testutil.Server(t).ClientConfig())
	s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
	h := claim(t, ctx, s, testutil.Prefix(t))
	h.Done() // the watcher runs
	cli.Close()
	waitDone(t, ctx, h)
	if !errors.Is(h.Err(), lockstep.ErrSessionLost) {
		t.Fatalf("Err: got %v, want %v", h.Err(), lockstep.ErrSessionLost)
	}
}

func TestReserveExcludesWithinProcess(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	release, err := own.Reserve(ctx, s, "k")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := own.Reserve(short, s, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Reserve while held: got %v, want DeadlineExceeded", err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := own.Reserve(ctx, s, "k")
		if err == nil {
			r()
		}
		got <- err
	}()
	release()
	release() // a second call is harmless
	if err := <-got; err != nil {
		t.Fatalf("Reserve after release: %v", err)
	}
}

// The watcher often sees our own delete before Release hears back from its
// transaction. It must leave the explanation to Release: no extra round
// trip for Release to wait for, and never ErrLost for a release.
func TestReleaseIsNotExplainedByTheWatcher(t *testing.T) {
	cli, counter := testutil.CountingClient(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	key := testutil.Prefix(t)
	counter.Reset()
	const n = 50
	for i := range n {
		h := claim(t, ctx, s, key)
		if err := h.Release(ctx); err != nil {
			t.Fatalf("Release %d: %v", i, err)
		}
		if !errors.Is(h.Err(), lockstep.ErrReleased) {
			t.Fatalf("Err after Release %d: got %v, want ErrReleased", i, h.Err())
		}
	}
	if got := counter.Calls("LeaseTimeToLive"); got != 0 {
		t.Fatalf("LeaseTimeToLive calls during %d releases: got %d, want 0", n, got)
	}
}

// With NewLazy, nothing watches the key until the owner asks (Done or Err);
// a loss that happened before it asked is still reported, since the watch
// starts where the ownership began.
func TestLazyWatchStartsWhenAsked(t *testing.T) {
	cli, counter := testutil.CountingClient(t)
	ctx := testutil.Context(t, 30*time.Second)
	s := testutil.Session(t, cli)
	key := testutil.Prefix(t)
	counter.Reset()

	h := claimLazy(t, ctx, s, key)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counter.Calls("Watch") + counter.WatchesCreated(); got != 0 {
		t.Fatalf("watches for an ownership nobody asked about: got %d, want 0", got)
	}

	h = claimLazy(t, ctx, s, key)
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitDone(t, ctx, h)
	if !errors.Is(h.Err(), lockstep.ErrLost) {
		t.Fatalf("Err: got %v, want ErrLost", h.Err())
	}
}
