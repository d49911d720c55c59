package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockstep-go/lockstep/internal/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDelayGrowsAndIsCapped(t *testing.T) {
	for attempt := range 20 {
		full := time.Second
		if attempt < 7 {
			full = min(time.Second, 10*time.Millisecond<<attempt)
		}
		for range 100 {
			d := retry.Delay(attempt)
			if d < full/2 || d > full {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}

func TestSleepStopsWithCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retry.Sleep(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep: got %v, want Canceled", err)
	}
	if err := retry.Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
}
