package embedded

import (
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestQuietCoreDropsExpectedNoticesAndGoesMute(t *testing.T) {
	inner, logs := observer.New(zapcore.WarnLevel)
	var mute atomic.Bool
	lg := zap.New(quietCore{Core: inner, mute: &mute}).With(zap.String("member", "m0"))

	lg.Warn("simple token is not cryptographically signed")
	lg.Info("an info line")
	lg.Warn("a real warning")
	mute.Store(true)
	lg.Error("setting up serving from embedded etcd failed.")

	got := logs.All()
	if len(got) != 1 || got[0].Message != "a real warning" {
		t.Fatalf("logged: got %v, want only the real warning", got)
	}
}
