package barrier_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestNewRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	closed := testutil.Session(t, cli)
	closed.Close()
	s := testutil.Session(t, cli)
	tests := []struct {
		name string
		new  func() error
		want error
	}{
		{"barrier nil client", func() error { _, err := barrier.New(nil, "/b"); return err }, lockstep.ErrNilClient},
		{"barrier empty key", func() error { _, err := barrier.New(cli, ""); return err }, lockstep.ErrInvalidPrefix},
		{"barrier two trailing slashes", func() error { _, err := barrier.New(cli, "/b//"); return err }, lockstep.ErrInvalidPrefix},
		{"barrier nil session", func() error { _, err := barrier.New(cli, "/b", barrier.WithSession(nil)); return err }, lockstep.ErrNilSession},
		{"barrier closed session", func() error { _, err := barrier.New(cli, "/b", barrier.WithSession(closed)); return err }, lockstep.ErrSessionClosed},
		{"double nil session", func() error { _, err := barrier.NewDouble(nil, "/d", 2); return err }, lockstep.ErrNilSession},
		{"double closed session", func() error { _, err := barrier.NewDouble(closed, "/d", 2); return err }, lockstep.ErrSessionClosed},
		{"double empty prefix", func() error { _, err := barrier.NewDouble(s, "", 2); return err }, lockstep.ErrInvalidPrefix},
		{"double two trailing slashes", func() error { _, err := barrier.NewDouble(s, "/d//", 2); return err }, lockstep.ErrInvalidPrefix},
		{"double zero count", func() error { _, err := barrier.NewDouble(s, "/d", 0); return err }, barrier.ErrInvalidCount},
		{"double negative count", func() error { _, err := barrier.NewDouble(s, "/d", -1); return err }, barrier.ErrInvalidCount},
		{"double count too large", func() error { _, err := barrier.NewDouble(s, "/d", barrier.MaxCount+1); return err }, barrier.ErrInvalidCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.new(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("double max count", func(t *testing.T) {
		if _, err := barrier.NewDouble(s, "/d", barrier.MaxCount); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})
}

// waitKey returns when key exists.
func waitKey(t *testing.T, ctx context.Context, cli *clientv3.Client, key string) {
	t.Helper()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) > 0 {
		return
	}
	for wr := range cli.Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterDelete()) {
		if len(wr.Events) > 0 {
			return
		}
	}
	t.Fatalf("%s never appeared: %v", key, ctx.Err())
}

// exists reports whether key exists.
func exists(t *testing.T, ctx context.Context, cli *clientv3.Client, key string) bool {
	t.Helper()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) > 0
}

// goWait runs b.Wait(ctx) in a goroutine and returns its result channel.
func goWait(ctx context.Context, b *barrier.Barrier) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- b.Wait(ctx) }()
	return ch
}

func receive(t *testing.T, ctx context.Context, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func TestBarrierHoldReleaseWait(t *testing.T) {
	cli, rpc := testutil.CountingClient(t)
	ctx := testutil.Context(t, 20*time.Second)
	b, err := barrier.New(cli, testutil.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}

	rpc.Reset()
	if err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait on an open barrier: %v", err)
	}
	if got := rpc.KV(); got != 1 {
		t.Fatalf("Wait on an open barrier: %d KV calls, want 1", got)
	}

	rpc.Reset()
	if _, err := b.Hold(ctx); err != nil {
		t.Fatalf("Hold: %v", err)
	}
	if got := rpc.Calls("Txn"); got != 1 || rpc.KV() != 1 {
		t.Fatalf("Hold: %d Txn, %d KV calls, want 1 and 1", got, rpc.KV())
	}
	if _, err := b.Hold(ctx); !errors.Is(err, barrier.ErrHeld) {
		t.Fatalf("second Hold: got %v, want ErrHeld", err)
	}

	// Several waiters, each with its own client: each is woken by one
	// event.
	const waiters = 4
	var chans []<-chan error
	var probes []*probe
	for range waiters {
		wcli, p := probeClient(t)
		wb, err := barrier.New(wcli, b.Key())
		if err != nil {
			t.Fatal(err)
		}
		probes = append(probes, p)
		chans = append(chans, goWait(ctx, wb))
	}
	// A waiter registers its watch before its read; once its read has
	// completed, it is blocked until the release.
	for _, p := range probes {
		p.waitCalls(ctx, 1)
	}
	for i, ch := range chans {
		select {
		case err := <-ch:
			t.Fatalf("waiter %d returned while held: %v", i, err)
		default:
		}
	}

	rpc.Reset()
	if err := b.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if got := rpc.KV(); got != 1 {
		t.Fatalf("Release: %d KV calls, want 1", got)
	}
	for i, ch := range chans {
		if err := receive(t, ctx, ch, "Wait"); err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
		if got := probes[i].watchEvents(); got != 1 {
			t.Fatalf("waiter %d: %d watch events, want 1", i, got)
		}
	}
	if err := b.Release(ctx); err != nil {
		t.Fatalf("Release of an open barrier: %v", err)
	}
	if _, err := b.Hold(ctx); err != nil {
		t.Fatalf("Hold after Release: %v", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBarrierWaitCancelled(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	b, err := barrier.New(cli, testutil.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Release(ctx)
	wctx, cancel := context.WithCancel(ctx)
	ch := goWait(wctx, b)
	cancel()
	if err := receive(t, ctx, ch, "Wait"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if err := b.Wait(canceled(ctx)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled ctx: got %v, want context.Canceled", err)
	}
}

func canceled(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	return ctx
}

// TestBarrierHeldBySession checks that a hold attached to a session ends
// with the session: at once when it is closed, and when its lease goes
// when it is lost.
func TestBarrierHeldBySession(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	tests := []struct {
		name string
		end  func(s *lockstep.Session)
	}{
		{"closed", func(s *lockstep.Session) { s.Close() }},
		{"revoked", func(s *lockstep.Session) { testutil.Revoke(t, cli, s) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testutil.Session(t, cli)
			key := testutil.Prefix(t)
			holder, err := barrier.New(cli, key, barrier.WithSession(s))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := holder.Hold(ctx); err != nil {
				t.Fatal(err)
			}
			waiter, err := barrier.New(testutil.Client(t), key)
			if err != nil {
				t.Fatal(err)
			}
			ch := goWait(ctx, waiter)
			tt.end(s)
			if err := receive(t, ctx, ch, "Wait"); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if exists(t, ctx, cli, key) {
				t.Fatalf("%s still exists", key)
			}
			_, err = holder.Hold(ctx)
			if !errors.Is(err, lockstep.ErrSessionLost) && !errors.Is(err, lockstep.ErrSessionClosed) {
				t.Fatalf("Hold after the session ended: got %v, want ErrSessionLost or ErrSessionClosed", err)
			}
		})
	}
}

// TestBarrierWaitSeesTheHoldItFound checks that a Wait returns when the
// hold it found ends, even if the barrier is held again at once.
func TestBarrierWaitSeesTheHoldItFound(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	key := testutil.Prefix(t)
	b, err := barrier.New(cli, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	wcli, p := probeClient(t)
	wb, err := barrier.New(wcli, key)
	if err != nil {
		t.Fatal(err)
	}
	ch := goWait(ctx, wb)
	p.waitCalls(ctx, 1)
	// Release and hold again in one transaction: the key never looks
	// absent to a reader.
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete(key), clientv3.OpPut(key+"x", "")).Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, ctx, ch, "Wait"); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	b.Release(ctx)
	cli.Delete(ctx, key+"x")
}
