package retry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/internal/retry"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), false},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), true},
		{fmt.Errorf("read: %w", status.Error(codes.Unavailable, "connection refused")), true},
		{rpctypes.ErrGRPCNoLeader, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrTimeout, true},
		{rpctypes.ErrTooManyRequests, true},
		{rpctypes.ErrGRPCPermissionDenied, false},
		{rpctypes.ErrGRPCNoSpace, false},
		{rpctypes.ErrNoSpace, false},
		{fmt.Errorf("enqueue: %w", rpctypes.ErrNoSpace), false},
		{rpctypes.ErrGRPCKeyNotFound, false},
		{rpctypes.ErrGRPCLeaseNotFound, false},
		{errors.New("something else"), false},
	} {
		if got := retry.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{rpctypes.ErrGRPCPermissionDenied, true},
		{fmt.Errorf("campaign: %w", rpctypes.ErrPermissionDenied), true},
		{rpctypes.ErrAuthFailed, true},
		{rpctypes.ErrGRPCInvalidAuthToken, true},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{rpctypes.ErrNoSpace, false},
		{context.Canceled, false},
		// A watch the server refused, as clientv3 hands it over: text only.
		{errors.New("rpc error: code = PermissionDenied desc = etcdserver: permission denied"), true},
	} {
		if got := retry.Refused(tc.err); got != tc.want {
			t.Errorf("Refused(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Refusal makes a refused watch's text match etcd's sentinel.
func TestRefusal(t *testing.T) {
	watch := errors.New("rpc error: code = PermissionDenied desc = etcdserver: permission denied")
	if err := retry.Refusal(watch); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("Refusal(%v) = %v, want it to match ErrPermissionDenied", watch, err)
	}
	other := errors.New("boom")
	if err := retry.Refusal(other); err != other {
		t.Fatalf("Refusal(%v) = %v, want it unchanged", other, err)
	}
}
