package barrier_test

import (
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/barrier"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// TestDoubleBarrierWakeupsAndRPCs counts, for each participant, the KV
// calls of every Enter and Leave and the watch events it receives. With
// every participant watching one key to enter and its own key range to
// leave, a participant gets one event when a round opens and two when it
// closes, whatever the count: a design where waiters watch each other would
// give each count-1 events per round or more.
func TestDoubleBarrierWakeupsAndRPCs(t *testing.T) {
	const n, rounds = 8, 5
	ctx := testutil.Context(t, 60*time.Second)
	prefix := testutil.Prefix(t)
	ds := make([]*barrier.DoubleBarrier, n)
	rpcs := make([]*testutil.RPCCounter, n)
	for i := range ds {
		cli, rpc := testutil.CountingClient(t)
		d, err := barrier.NewDouble(testutil.Session(t, cli), prefix, n)
		if err != nil {
			t.Fatal(err)
		}
		ds[i], rpcs[i] = d, rpc
		rpc.Reset()
	}
	// phase runs f for everyone and returns each participant's KV calls.
	phase := func(name string, f func(d *barrier.DoubleBarrier) error) []int {
		before := make([]int, n)
		for i, rpc := range rpcs {
			before[i] = rpc.KV()
		}
		noErrors(t, name, all(ds, f))
		calls := make([]int, n)
		total := 0
		for i, rpc := range rpcs {
			calls[i] = rpc.KV() - before[i]
			total += calls[i]
			if calls[i] < 1 || calls[i] > 2 {
				t.Errorf("%s: participant %d made %d KV calls, want 1 or 2", name, i, calls[i])
			}
		}
		// Everyone makes one transaction; the last to arrive opens the
		// round, the last to leave closes it: one more each.
		if total != n+1 {
			t.Errorf("%s: %d KV calls in all, want %d", name, total, n+1)
		}
		return calls
	}
	total := 0
	for round := range rounds {
		before := make([]int, n)
		for i, rpc := range rpcs {
			before[i] = rpc.WatchEvents()
		}
		phase("Enter", func(d *barrier.DoubleBarrier) error { return d.Enter(ctx) })
		phase("Leave", func(d *barrier.DoubleBarrier) error { return d.Leave(ctx) })
		// The participant that opens a round and the one that closes it
		// return without waiting for the events of their own writes, so
		// those (up to 2) may be counted in the next round.
		for i, rpc := range rpcs {
			events := rpc.WatchEvents() - before[i]
			total += events
			if events > 3+2 {
				t.Errorf("round %d: participant %d got %d watch events, want at most 3 (+2 late from the previous round)", round, i, events)
			}
		}
	}
	streams := 0
	for i, rpc := range rpcs {
		streams += rpc.Calls("Watch")
		if events := rpc.WatchEvents(); events > 3*rounds {
			t.Errorf("participant %d: %d watch events in %d rounds, want at most %d", i, events, rounds, 3*rounds)
		}
		if got := rpc.KV(); got != rpc.Calls("Txn") {
			t.Errorf("participant %d: %d KV calls but %d transactions: want transactions only", i, got, rpc.Calls("Txn"))
		}
	}
	// Only the participant that opens a round and the one that closes it
	// may miss the events of their own writes.
	if low := 3 * (n - 1) * rounds; total < low {
		t.Errorf("%d watch events in all, want at least %d", total, low)
	}
	t.Logf("%d participants, %d rounds: %d watch events, %d watch streams opened", n, rounds, total, streams)
}
