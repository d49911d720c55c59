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

func TestDo(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 30*time.Second)
	errJob := errors.New("job failed")

	tests := []struct {
		name string
		// fn is the job; cancel cancels Do's ctx.
		fn   func(ctx context.Context, l *mutex.Lock, cancel context.CancelFunc) error
		want []error // what Do's error must match; none: nil
	}{
		{"holds the lock while fn runs", func(ctx context.Context, l *mutex.Lock, _ context.CancelFunc) error {
			if l.Err() != nil {
				return l.Err()
			}
			if resp, err := cli.Txn(ctx).If(l.IsOwner()).Commit(); err != nil || !resp.Succeeded {
				return errors.New("IsOwner does not hold inside fn")
			}
			return nil
		}, nil},
		{"returns fn's error", func(context.Context, *mutex.Lock, context.CancelFunc) error {
			return errJob
		}, []error{errJob}},
		{"fn may unlock", func(ctx context.Context, l *mutex.Lock, _ context.CancelFunc) error {
			return l.Unlock(ctx)
		}, nil},
		{"cancels fn when the lock is lost", func(ctx context.Context, l *mutex.Lock, _ context.CancelFunc) error {
			if _, err := cli.Delete(ctx, l.Key()); err != nil {
				return err
			}
			<-ctx.Done()
			if cause := context.Cause(ctx); !errors.Is(cause, lockstep.ErrLost) {
				return errors.New("cause is not ErrLost: " + cause.Error())
			}
			return nil
		}, []error{lockstep.ErrLost}},
		{"unlocks after its ctx was cancelled", func(ctx context.Context, _ *mutex.Lock, cancel context.CancelFunc) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}, []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := testutil.Prefix(t)
			m := newMutex(t, testutil.Session(t, cli), prefix)
			dctx, cancel := context.WithCancel(ctx)
			defer cancel()
			err := m.Do(dctx, func(fctx context.Context, l *mutex.Lock) error {
				return tt.fn(fctx, l, cancel)
			})
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Fatalf("Do: got %v, want %v", err, want)
				}
			}
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("Do: got %v, want nil", err)
			}
			if got := queue(t, ctx, cli, prefix); len(got) != 0 {
				t.Fatalf("keys after Do: got %v, want none", got)
			}
		})
	}
}
