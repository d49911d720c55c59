package ctxs_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/lockstep-go/lockstep/internal/ctxs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEndsWhenDoneCloses(t *testing.T) {
	done := make(chan struct{})
	lost := errors.New("lost")
	ctx, stop := ctxs.EndWith(context.Background(), done, func() error { return lost })
	defer stop()
	close(done)
	<-ctx.Done()
	if !errors.Is(context.Cause(ctx), lost) {
		t.Fatalf("cause: got %v, want %v", context.Cause(ctx), lost)
	}
}

func TestEndsWithParentAndStop(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop := ctxs.EndWith(parent, make(chan struct{}), nil)
	cancel()
	<-ctx.Done()
	stop()
	stop() // a second stop is harmless

	ctx, stop = ctxs.EndWith(context.Background(), make(chan struct{}), nil)
	stop()
	if ctx.Err() == nil {
		t.Fatal("stop did not end the context")
	}
}
