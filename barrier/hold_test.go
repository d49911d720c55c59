package barrier_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// A hold is an ownership: it learns that someone else opened the gate,
// fences with its token, and its guarded Release never opens a hold that
// someone took after it.
func TestHoldIsAnOwnership(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	for _, withSession := range []bool{false, true} {
		name := "without a session"
		var opts []barrier.Option
		if withSession {
			name = "with a session"
			opts = append(opts, barrier.WithSession(testutil.Session(t, cli)))
		}
		t.Run(name, func(t *testing.T) {
			key := testutil.Prefix(t)
			b, err := barrier.New(cli, key, opts...)
			if err != nil {
				t.Fatal(err)
			}
			first, err := b.Hold(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if first.Err() != nil || first.Key() != key {
				t.Fatalf("hold: Err %v, Key %q", first.Err(), first.Key())
			}
			// An operator opens the gate; someone else holds it again.
			if err := b.Release(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-first.Done():
			case <-ctx.Done():
				t.Fatal("the hold did not end when the gate was opened")
			}
			if !errors.Is(first.Err(), lockstep.ErrLost) {
				t.Fatalf("Err after the gate was opened: got %v, want ErrLost", first.Err())
			}
			second, err := b.Hold(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if second.Token() <= first.Token() {
				t.Fatalf("tokens: %d after %d", second.Token(), first.Token())
			}
			if err := first.Release(ctx); !errors.Is(err, lockstep.ErrLost) {
				t.Fatalf("stale Release: got %v, want ErrLost", err)
			}
			if resp, err := cli.Get(ctx, key); err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != second.Token() {
				t.Fatalf("the gate after a stale Release: %v, %v; want the second hold", resp, err)
			}
			if err := second.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := second.Release(ctx); !errors.Is(err, lockstep.ErrReleased) {
				t.Fatalf("second Release: got %v, want ErrReleased", err)
			}
		})
	}
}
