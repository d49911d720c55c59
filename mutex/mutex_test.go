package mutex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

func TestNewRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	closed := testutil.Session(t, cli)
	closed.Close()
	lost := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
	testutil.Revoke(t, cli, lost)
	select {
	case <-lost.Done():
	case <-ctx.Done():
		t.Fatal("revoked session did not end")
	}
	live := testutil.Session(t, cli)

	tests := []struct {
		name   string
		s      *lockstep.Session
		prefix string
		want   error
	}{
		{"nil session", nil, "/locks/a", lockstep.ErrNilSession},
		{"closed session", closed, "/locks/a", lockstep.ErrSessionClosed},
		{"lost session", lost, "/locks/a", lockstep.ErrSessionLost},
		{"empty prefix", live, "", lockstep.ErrInvalidPrefix},
		{"prefix ending in two slashes", live, "/locks/a//", lockstep.ErrInvalidPrefix},
		{"root prefix", live, "/", lockstep.ErrInvalidPrefix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := mutex.New(tt.s, tt.prefix)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: got (%v, %v), want error %v", m, err, tt.want)
			}
		})
	}
}

func TestMisuseAfterTheFact(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)

	t.Run("unlock twice", func(t *testing.T) {
		m := newMutex(t, testutil.Session(t, cli), testutil.Prefix(t))
		l := mustLock(t, ctx, m)
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("first Unlock: %v", err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, lockstep.ErrReleased) {
			t.Fatalf("second Unlock: got %v, want ErrReleased", err)
		}
		if got := l.Err(); !errors.Is(got, lockstep.ErrReleased) {
			t.Fatalf("Err after Unlock: got %v, want ErrReleased", got)
		}
	})

	t.Run("unlock with a cancelled context still deletes the key", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		l := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := l.Unlock(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Unlock: got %v, want context.Canceled", err)
		}
		if got := queue(t, ctx, cli, prefix); len(got) != 0 {
			t.Fatalf("keys after Unlock: got %v, want none", got)
		}
		if got := l.Err(); !errors.Is(got, lockstep.ErrReleased) {
			t.Fatalf("Err: got %v, want ErrReleased", got)
		}
	})

	t.Run("unlock after loss spares a newer holder of another session", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		a := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
		if _, err := cli.Delete(ctx, a.Key()); err != nil {
			t.Fatal(err)
		}
		if err := waitDone(t, ctx, a); !errors.Is(err, lockstep.ErrLost) {
			t.Fatalf("Err after delete: got %v, want ErrLost", err)
		}
		b := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
		if err := a.Unlock(ctx); !errors.Is(err, lockstep.ErrLost) {
			t.Fatalf("Unlock after loss: got %v, want ErrLost", err)
		}
		if got, want := queue(t, ctx, cli, prefix), []string{b.Key()}; !equal(got, want) {
			t.Fatalf("keys after stale Unlock: got %v, want %v", got, want)
		}
	})

	t.Run("unlock after loss spares a newer holder of the same session", func(t *testing.T) {
		// Same session, same key name: only the create revision tells the
		// two locks apart.
		m := newMutex(t, testutil.Session(t, cli), testutil.Prefix(t))
		a := mustLock(t, ctx, m)
		if _, err := cli.Delete(ctx, a.Key()); err != nil {
			t.Fatal(err)
		}
		waitDone(t, ctx, a)
		b := mustLock(t, ctx, m)
		if b.Key() != a.Key() || b.Token() <= a.Token() {
			t.Fatalf("relock: got key %s token %d after key %s token %d", b.Key(), b.Token(), a.Key(), a.Token())
		}
		if err := a.Unlock(ctx); !errors.Is(err, lockstep.ErrLost) {
			t.Fatalf("stale Unlock: got %v, want ErrLost", err)
		}
		resp, err := cli.Get(ctx, b.Key())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != b.Token() {
			t.Fatalf("newer lock's key after stale Unlock: got %v, want create revision %d", resp.Kvs, b.Token())
		}
		if b.Err() != nil {
			t.Fatalf("newer lock ended: %v", b.Err())
		}
	})

	t.Run("lock after the session closed", func(t *testing.T) {
		s := testutil.Session(t, cli)
		m := newMutex(t, s, testutil.Prefix(t))
		s.Close()
		for name, op := range map[string]func(context.Context) (*mutex.Lock, error){"Lock": m.Lock, "TryLock": m.TryLock} {
			if _, err := op(ctx); !errors.Is(err, lockstep.ErrSessionClosed) {
				t.Fatalf("%s: got %v, want ErrSessionClosed", name, err)
			}
		}
	})

	t.Run("lock after the lease was revoked from outside", func(t *testing.T) {
		// The session has not noticed yet; the server refuses the lease.
		s := testutil.Session(t, cli)
		prefix := testutil.Prefix(t)
		m := newMutex(t, s, prefix)
		testutil.Revoke(t, cli, s)
		for name, op := range map[string]func(context.Context) (*mutex.Lock, error){"Lock": m.Lock, "TryLock": m.TryLock} {
			if _, err := op(ctx); !errors.Is(err, lockstep.ErrSessionLost) {
				t.Fatalf("%s: got %v, want ErrSessionLost", name, err)
			}
		}
		if got := queue(t, ctx, cli, prefix); len(got) != 0 {
			t.Fatalf("keys left: %v", got)
		}
	})

	t.Run("lock with a cancelled context", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		m := newMutex(t, testutil.Session(t, cli), prefix)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for name, op := range map[string]func(context.Context) (*mutex.Lock, error){"Lock": m.Lock, "TryLock": m.TryLock} {
			if _, err := op(cctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: got %v, want context.Canceled", name, err)
			}
		}
		if got := queue(t, ctx, cli, prefix); len(got) != 0 {
			t.Fatalf("keys left: %v", got)
		}
		mustLock(t, ctx, m).Unlock(ctx) // the reservation was given back
	})
}

func TestTryLock(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	sa := testutil.Session(t, cli)
	ma := newMutex(t, sa, prefix)
	mb := newMutex(t, testutil.Session(t, cli), prefix)

	a, err := ma.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock on a free mutex: %v", err)
	}
	if _, err := mb.TryLock(ctx); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock held by another session: got %v, want ErrLocked", err)
	}
	if _, err := ma.TryLock(ctx); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock held by the same session: got %v, want ErrLocked", err)
	}
	if got, want := queue(t, ctx, cli, prefix), []string{a.Key()}; !equal(got, want) {
		t.Fatalf("keys after failed TryLocks: got %v, want %v", got, want)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := mb.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if b.Token() <= a.Token() {
		t.Fatalf("tokens: got %d after %d, want increasing", b.Token(), a.Token())
	}
	b.Unlock(ctx)
}

func TestHolder(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	s := testutil.Session(t, cli)
	m := newMutex(t, s, prefix)
	if h, err := m.Holder(ctx); !errors.Is(err, mutex.ErrNotLocked) {
		t.Fatalf("Holder of a free mutex: got (%+v, %v), want ErrNotLocked", h, err)
	}
	l := mustLock(t, ctx, m)
	waiter := lockAsync(ctx, newMutex(t, testutil.Session(t, cli), prefix))
	waitQueue(t, ctx, cli, prefix, 2)
	h, err := m.Holder(ctx)
	if err != nil {
		t.Fatalf("Holder: %v", err)
	}
	if want := (mutex.Holder{Key: l.Key(), Lease: s.Lease(), Token: l.Token()}); h != want {
		t.Fatalf("Holder: got %+v, want %+v", h, want)
	}
	l.Unlock(ctx)
	r := await(t, ctx, waiter)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.l.Unlock(ctx)
}

func TestTokensIncrease(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	ms := []*mutex.Mutex{
		newMutex(t, testutil.Session(t, cli), prefix),
		newMutex(t, testutil.Session(t, cli), prefix),
	}
	var last int64
	for i := range 10 {
		l := mustLock(t, ctx, ms[i%2])
		if l.Token() <= last {
			t.Fatalf("lock %d: token %d after %d, want increasing", i, l.Token(), last)
		}
		last = l.Token()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
