package discovery

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

func instances(ids ...string) []Instance {
	out := make([]Instance, len(ids))
	for i, id := range ids {
		out[i] = Instance{ID: id}
	}
	return out
}

func TestDropGuard(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := dropGuard{share: 0.5, window: 10 * time.Second, hold: 5 * time.Second,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.init(instances("a", "b", "c", "d"))
	steps := []struct {
		at   time.Duration
		in   []Instance
		want int
		wake bool
	}{
		{0, instances("a", "b", "c"), 3, false},          // 1 of 4: through
		{time.Second, instances("a", "b"), 2, false},     // 2 of 4 within the window: not more than half
		{2 * time.Second, instances("a"), 2, true},       // 3 of 4: held
		{4 * time.Second, instances("a"), 2, true},       // still held
		{7 * time.Second, instances("a"), 1, false},      // hold over: accepted
		{8 * time.Second, instances("a", "e"), 2, false}, // arrivals always go through
	}
	for i, s := range steps {
		got, wake := g.apply(s.in, t0.Add(s.at))
		if len(got) != s.want || wake.IsZero() == s.wake {
			t.Fatalf("step %d: %d instances, wake %v; want %d, wake %v", i, len(got), wake, s.want, s.wake)
		}
	}
	// Removals spread beyond the window are ordinary.
	g = dropGuard{share: 0.5, window: time.Second, hold: time.Hour, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.init(instances("a", "b", "c", "d"))
	for i, in := range [][]Instance{instances("a", "b", "c"), instances("a", "b"), instances("a")} {
		if got, _ := g.apply(in, t0.Add(time.Duration(i)*2*time.Second)); len(got) != len(in) {
			t.Fatalf("slow removal %d held: %d", i, len(got))
		}
	}
}
