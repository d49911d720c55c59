package mutex_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/faultproxy"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

var errReleased = lockstep.ErrReleased

func TestDoneWhenHeldLockEnds(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	tests := []struct {
		name string
		end  func(s *lockstep.Session, key string)
		want error
	}{
		{"key deleted by someone else", func(_ *lockstep.Session, key string) {
			if _, err := cli.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}, lockstep.ErrLost},
		{"lease revoked", func(s *lockstep.Session, _ string) { testutil.Revoke(t, cli, s) }, lockstep.ErrSessionLost},
		{"session closed", func(s *lockstep.Session, _ string) { s.Close() }, lockstep.ErrSessionClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testutil.Session(t, cli, lockstep.WithTTL(2*time.Second))
			prefix := testutil.Prefix(t)
			l := mustLock(t, ctx, newMutex(t, s, prefix))
			if l.Err() != nil {
				t.Fatalf("Err while held: %v", l.Err())
			}
			tt.end(s, l.Key())
			if err := waitDone(t, ctx, l); !errors.Is(err, tt.want) {
				t.Fatalf("Err: got %v, want %v", err, tt.want)
			}
			resp, err := cli.Txn(ctx).If(l.IsOwner()).Commit()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Succeeded {
				t.Fatal("IsOwner holds after the lock ended")
			}
			if err := l.Unlock(ctx); !errors.Is(err, tt.want) {
				t.Fatalf("Unlock after loss: got %v, want %v", err, tt.want)
			}
			// The mutex is free for others.
			other := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
			other.Unlock(ctx)
		})
	}
}

func TestLockFailsWhenSessionDiesWhileWaiting(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	tests := []struct {
		name string
		// kill ends the waiter's session; unlock, if set, runs right after
		// it, before the waiter has returned.
		kill func(t *testing.T, s *lockstep.Session, p *faultproxy.Proxy)
		want error
	}{
		{"lease revoked", func(t *testing.T, s *lockstep.Session, _ *faultproxy.Proxy) { testutil.Revoke(t, cli, s) }, lockstep.ErrSessionLost},
		{"session closed", func(t *testing.T, s *lockstep.Session, _ *faultproxy.Proxy) { s.Close() }, lockstep.ErrSessionClosed},
		{"keepalives blackholed", func(t *testing.T, s *lockstep.Session, p *faultproxy.Proxy) { p.Blackhole() }, lockstep.ErrSessionLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))

			// The waiter talks to etcd through a proxy so that its
			// network can fail.
			cfg, p := testutil.ProxiedConfig(t)
			wcli := testutil.ClientWith(t, cfg)
			ws := testutil.Session(t, wcli, lockstep.WithTTL(2*time.Second))
			w := lockAsync(ctx, newMutex(t, ws, prefix))
			waitQueue(t, ctx, cli, prefix, 2)

			tt.kill(t, ws, p)
			r := await(t, ctx, w)
			if !errors.Is(r.err, tt.want) {
				t.Fatalf("Lock: got (%v, %v), want error %v", r.l, r.err, tt.want)
			}
			if err := holder.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A waiter cut off from etcd just as it starts to watch the key ahead of
// it still learns of its session's loss: clientv3's Watch does not return
// until the server answers, so the watch must end with the session.
func TestLockFailsWhenCutOffWhileStartingToWatch(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	prefix := testutil.Prefix(t)
	holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
	defer holder.Unlock(ctx)

	ws := testutil.Session(t, testutil.CutAtFirstWatch(t), lockstep.WithTTL(2*time.Second))
	w := lockAsync(ctx, newMutex(t, ws, prefix))
	if r := await(t, ctx, w); !errors.Is(r.err, lockstep.ErrSessionLost) {
		t.Fatalf("Lock: got (%v, %v), want error %v", r.l, r.err, lockstep.ErrSessionLost)
	}
}

// TestLockAfterRevokeJustBeforeHandoff revokes the waiter's lease and at
// once unlocks the holder, so that the two deletes arrive together. Lock
// must fail, or (if the predecessor's delete was processed before the
// revoke reached the waiter) return a lock that ends with
// ErrSessionLost and whose IsOwner never holds.
func TestLockAfterRevokeJustBeforeHandoff(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 60*time.Second)
	succeeded := 0
	for range 20 {
		prefix := testutil.Prefix(t)
		holder := mustLock(t, ctx, newMutex(t, testutil.Session(t, cli), prefix))
		ws := testutil.Session(t, testutil.Client(t))
		w := lockAsync(ctx, newMutex(t, ws, prefix))
		waitQueue(t, ctx, cli, prefix, 2)
		testutil.Revoke(t, cli, ws)
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		r := await(t, ctx, w)
		if r.err != nil {
			if !errors.Is(r.err, lockstep.ErrSessionLost) {
				t.Fatalf("Lock: got %v, want ErrSessionLost", r.err)
			}
			continue
		}
		succeeded++
		resp, err := cli.Txn(ctx).If(r.l.IsOwner()).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded {
			t.Fatal("IsOwner holds for a lock whose lease was revoked")
		}
		if err := waitDone(t, ctx, r.l); !errors.Is(err, lockstep.ErrSessionLost) {
			t.Fatalf("Err: got %v, want ErrSessionLost", err)
		}
	}
	t.Logf("%d of 20 Lock calls returned before hearing of the revoke", succeeded)
}
