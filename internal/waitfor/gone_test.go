package waitfor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func goneAsync(ctx context.Context, cli *clientv3.Client, key string, rev, from int64) <-chan error {
	done := make(chan error, 1)
	go func() { done <- waitfor.Gone(ctx, cli, key, rev, from) }()
	return done
}

func TestGone(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	tests := []struct {
		name    string
		compact bool                   // compact past the start revision first
		end     func(key string) error // what makes the key go
	}{
		{"deleted", false, func(key string) error { _, err := cli.Delete(ctx, key); return err }},
		{"deleted and created again", false, func(key string) error {
			if _, err := cli.Delete(ctx, key); err != nil {
				return err
			}
			_, err := cli.Put(ctx, key, "new")
			return err
		}},
		{"deleted after compaction", true, func(key string) error { _, err := cli.Delete(ctx, key); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := testutil.Prefix(t)
			put, err := cli.Put(ctx, key, "v")
			if err != nil {
				t.Fatal(err)
			}
			rev := put.Header.Revision
			if tt.compact {
				more, err := cli.Put(ctx, key+"-other", "x")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cli.Compact(ctx, more.Header.Revision); err != nil {
					t.Fatal(err)
				}
			}
			done := goneAsync(ctx, cli, key, rev, rev+1)
			select {
			case err := <-done:
				t.Fatalf("Gone returned %v while the key exists", err)
			case <-time.After(100 * time.Millisecond):
			}
			if err := tt.end(key); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("Gone: %v", err)
			}
		})
	}
}

func TestGoneWhenAlreadyGoneBeforeCompaction(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 20*time.Second)
	key := testutil.Prefix(t)
	put, err := cli.Put(ctx, key, "v")
	if err != nil {
		t.Fatal(err)
	}
	del, err := cli.Delete(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision); err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision
	if err := waitfor.Gone(ctx, cli, key, rev, rev+1); err != nil {
		t.Fatalf("Gone: %v", err)
	}
}

func TestGoneReturnsCtxError(t *testing.T) {
	cli := testutil.Client(t)
	key := testutil.Prefix(t)
	put, err := cli.Put(testutil.Context(t, 10*time.Second), key, "v")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rev := put.Header.Revision
	if err := waitfor.Gone(ctx, cli, key, rev, rev+1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Gone: got %v, want DeadlineExceeded", err)
	}
}
