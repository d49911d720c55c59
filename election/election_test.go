package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// newElection returns an election on prefix for a new session of cli.
func newElection(t *testing.T, cli *clientv3.Client, prefix string, opts ...lockstep.SessionOption) *election.Election {
	t.Helper()
	e, err := election.New(testutil.Session(t, cli, opts...), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustNew(t *testing.T, s *lockstep.Session, prefix string) *election.Election {
	t.Helper()
	e, err := election.New(s, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func campaign(t *testing.T, ctx context.Context, e *election.Election, value string) *election.Term {
	t.Helper()
	term, err := e.Campaign(ctx, value)
	if err != nil {
		t.Fatalf("Campaign(%q): %v", value, err)
	}
	return term
}

type result struct {
	term *election.Term
	err  error
}

// campaignAsync campaigns in a goroutine; the result arrives on the channel.
func campaignAsync(ctx context.Context, e *election.Election, value string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		term, err := e.Campaign(ctx, value)
		ch <- result{term, err}
	}()
	return ch
}

func await(t *testing.T, ctx context.Context, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		t.Fatal("campaign did not return")
		return result{}
	}
}

// waitWatches waits until the counted client has n watches created.
func waitWatches(t *testing.T, ctx context.Context, c *testutil.RPCCounter, n int) {
	t.Helper()
	for c.WatchesCreated() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("watches: got %d, want %d", c.WatchesCreated(), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitKeys waits until the election has n candidate keys.
func waitKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for {
		resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("count candidates: %v", err)
		}
		if resp.Count == int64(n) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("candidates: got %d, want %d", resp.Count, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	live := testutil.Session(t, cli)
	closed := testutil.Session(t, cli)
	closed.Close()
	tests := []struct {
		name   string
		s      *lockstep.Session
		prefix string
		want   error
	}{
		{"nil session", nil, "/e", lockstep.ErrNilSession},
		{"empty prefix", live, "", lockstep.ErrInvalidPrefix},
		{"two trailing slashes", live, "/e//", lockstep.ErrInvalidPrefix},
		{"closed session", closed, "/e", lockstep.ErrSessionClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := election.New(tt.s, tt.prefix)
			if !errors.Is(err, tt.want) || e != nil {
				t.Fatalf("New: got (%v, %v), want (nil, %v)", e, err, tt.want)
			}
		})
	}
}

func TestNewObserverRejectsBadInput(t *testing.T) {
	cli := testutil.Client(t)
	tests := []struct {
		name   string
		cli    *clientv3.Client
		prefix string
		want   error
	}{
		{"nil client", nil, "/e", lockstep.ErrNilClient},
		{"empty prefix", cli, "", lockstep.ErrInvalidPrefix},
		{"two trailing slashes", cli, "/e//", lockstep.ErrInvalidPrefix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := election.NewObserver(tt.cli, tt.prefix)
			if !errors.Is(err, tt.want) || o != nil {
				t.Fatalf("NewObserver: got (%v, %v), want (nil, %v)", o, err, tt.want)
			}
		})
	}
}

func TestCampaignAfterSessionEnds(t *testing.T) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 10*time.Second)
	s := testutil.Session(t, cli)
	e, err := election.New(s, testutil.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := e.Campaign(ctx, "a"); !errors.Is(err, lockstep.ErrSessionClosed) {
		t.Fatalf("Campaign on a closed session: got %v, want ErrSessionClosed", err)
	}
}

// An uncontended campaign is one Txn; resign is one Txn; a second resign
// and a proclaim after it are refused without an RPC.
func TestCampaignResignRoundTrips(t *testing.T) {
	cli, rpc := testutil.CountingClient(t)
	ctx := testutil.Context(t, 10*time.Second)
	prefix := testutil.Prefix(t)
	e := newElection(t, cli, prefix)

	rpc.Reset()
	term := campaign(t, ctx, e, "node-a")
	if got := rpc.KV(); got != 1 || rpc.Calls("Txn") != 1 {
		t.Fatalf("Campaign RPCs: got %d (Txn %d), want 1 Txn", got, rpc.Calls("Txn"))
	}
	if term.Key() != e.Key() || term.Value() != "node-a" {
		t.Fatalf("term: got key %q value %q, want %q %q", term.Key(), term.Value(), e.Key(), "node-a")
	}
	resp, err := cli.Get(ctx, term.Key())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != term.Token() {
		t.Fatalf("leader key: got %v, want create revision %d", resp.Kvs, term.Token())
	}
	ld, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := election.Leader{Value: "node-a", Key: term.Key(), Lease: term.Session().Lease(), Token: term.Token()}
	if ld != want {
		t.Fatalf("Leader: got %+v, want %+v", ld, want)
	}

	rpc.Reset()
	if err := term.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if got := rpc.KV(); got != 1 {
		t.Fatalf("Resign RPCs: got %d, want 1", got)
	}
	if !errors.Is(term.Err(), lockstep.ErrReleased) {
		t.Fatalf("Err after Resign: got %v, want ErrReleased", term.Err())
	}
	select {
	case <-term.Done():
	default:
		t.Fatal("Done not closed after Resign")
	}

	rpc.Reset()
	if err := term.Resign(ctx); !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("second Resign: got %v, want ErrReleased", err)
	}
	err = term.Proclaim(ctx, "x")
	if !errors.Is(err, election.ErrNotLeader) || !errors.Is(err, lockstep.ErrReleased) {
		t.Fatalf("Proclaim after Resign: got %v, want ErrNotLeader and ErrReleased", err)
	}
	if got := rpc.KV(); got != 0 {
		t.Fatalf("refused calls made %d RPCs, want 0", got)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Leader after Resign: got %v, want ErrNoLeader", err)
	}
}

// Candidates queue in campaign order; a resignation wakes only the next
// one, with one watch event and one Range.
func TestCampaignQueuesAndWakesOnlyTheNext(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	cliB, rpcB := testutil.CountingClient(t)
	cliC, rpcC := testutil.CountingClient(t)
	a := newElection(t, cli, prefix)
	b := newElection(t, cliB, prefix)
	c := newElection(t, cliC, prefix)

	ta := campaign(t, ctx, a, "a")
	rpcB.Reset()
	gotB := campaignAsync(ctx, b, "b")
	// Each waiter watches the key ahead of it and its own, and its term's
	// handle watches its own key.
	waitWatches(t, ctx, rpcB, 3)
	rpcC.Reset()
	gotC := campaignAsync(ctx, c, "c")
	waitWatches(t, ctx, rpcC, 3)

	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	rb := await(t, ctx, gotB)
	if rb.err != nil {
		t.Fatalf("b: %v", rb.err)
	}
	if got := rpcB.KV(); got != 1 {
		t.Fatalf("b's campaign: got %d KV RPCs, want 1 (the Txn; a's delete makes b the leader)", got)
	}
	if got := rpcB.WatchEvents(); got != 1 {
		t.Fatalf("b's campaign: got %d watch events, want 1", got)
	}
	if got := rpcC.KV(); got != 1 || rpcC.WatchEvents() != 0 {
		t.Fatalf("c was woken by a's resignation: %d KV RPCs, %d watch events; want 1, 0", got, rpcC.WatchEvents())
	}
	select {
	case r := <-gotC:
		t.Fatalf("c returned while b leads: %v", r.err)
	default:
	}
	if rb.term.Token() <= ta.Token() {
		t.Fatalf("tokens: b %d not above a %d", rb.term.Token(), ta.Token())
	}

	if err := rb.term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	rc := await(t, ctx, gotC)
	if rc.err != nil {
		t.Fatalf("c: %v", rc.err)
	}
	if rc.term.Token() <= rb.term.Token() {
		t.Fatalf("tokens: c %d not above b %d", rc.term.Token(), rb.term.Token())
	}
	if err := rc.term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// A candidate in the middle that gives up does not make the one behind it
// leader while the leader still leads.
func TestCampaignSkipsAbandonedPredecessor(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	cliC, rpcC := testutil.CountingClient(t)
	a := newElection(t, cli, prefix)
	b := newElection(t, cli, prefix)
	c := newElection(t, cliC, prefix)

	ta := campaign(t, ctx, a, "a")
	bctx, cancelB := context.WithCancel(ctx)
	gotB := campaignAsync(bctx, b, "b")
	waitKeys(t, ctx, cli, prefix, 2)
	rpcC.Reset()
	gotC := campaignAsync(ctx, c, "c")
	waitWatches(t, ctx, rpcC, 3) // b's key, c's own, and c's handle

	cancelB()
	if r := await(t, ctx, gotB); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("b after cancel: got %v, want context.Canceled", r.err)
	}
	waitKeys(t, ctx, cli, prefix, 2) // b left no key behind
	// c woke up, read again, and now watches a (and its own key again).
	waitWatches(t, ctx, rpcC, 5)
	select {
	case r := <-gotC:
		t.Fatalf("c returned while a leads: %v", r.err)
	default:
	}
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	rc := await(t, ctx, gotC)
	if rc.err != nil {
		t.Fatalf("c: %v", rc.err)
	}
	// A read when the waiter ahead left, none when the leader went: its
	// delete makes c the leader.
	if got, events := rpcC.KV(), rpcC.WatchEvents(); got != 2 || events != 2 {
		t.Fatalf("c's campaign: got %d KV RPCs and %d watch events, want 2 (the Txn and a read after b left) and 2", got, events)
	}
	// c took over from a, not from b, which only waited.
	want := election.Leader{Value: "a", Key: ta.Key(), Lease: ta.Session().Lease(), Token: ta.Token()}
	if got, ok := rc.term.Predecessor(); !ok || got != want {
		t.Fatalf("c's predecessor: got %+v, %v; want %+v", got, ok, want)
	}
	if got, ok := ta.Predecessor(); ok {
		t.Fatalf("a led at once but has predecessor %+v", got)
	}
	rc.term.Resign(ctx)
}

func TestCampaignCancelLeavesNoKey(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	prefix := testutil.Prefix(t)
	cli := testutil.Client(t)
	a := newElection(t, cli, prefix)
	b := newElection(t, cli, prefix)
	ta := campaign(t, ctx, a, "a")

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.Campaign(short, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign past its deadline: got %v, want DeadlineExceeded", err)
	}
	resp, err := cli.Get(ctx, b.Key())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatalf("cancelled candidate left its key: %v", resp.Kvs)
	}
	// The session can campaign again.
	got := campaignAsync(ctx, b, "b")
	waitKeys(t, ctx, cli, prefix, 2)
	ta.Resign(ctx)
	r := await(t, ctx, got)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.term.Resign(ctx)
}

// Two goroutines of one session share its key; the second waits in process
// instead of both leading (etcd's Election lets both return).
func TestCampaignSameSessionTakesTurns(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli, rpc := testutil.CountingClient(t)
	e := newElection(t, cli, testutil.Prefix(t))
	first := campaign(t, ctx, e, "first")

	rpc.Reset()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := e.Campaign(short, "second"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Campaign while the first leads: got %v, want DeadlineExceeded", err)
	}
	if rpc.KV() != 0 {
		t.Fatalf("waiting in process made %d RPCs, want 0", rpc.KV())
	}
	if first.Err() != nil {
		t.Fatalf("first term ended: %v", first.Err())
	}
	got := campaignAsync(ctx, e, "second")
	if err := first.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, ctx, got)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.term.Token() <= first.Token() || r.term.Value() != "second" {
		t.Fatalf("second term: token %d value %q, want token above %d and value %q", r.term.Token(), r.term.Value(), first.Token(), "second")
	}
	r.term.Resign(ctx)
}

func TestProclaim(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli, rpc := testutil.CountingClient(t)
	e := newElection(t, cli, testutil.Prefix(t))
	term := campaign(t, ctx, e, "v1")

	rpc.Reset()
	if err := term.Proclaim(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if rpc.KV() != 1 {
		t.Fatalf("Proclaim RPCs: got %d, want 1", rpc.KV())
	}
	ld, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ld.Value != "v2" || ld.Token != term.Token() || term.Value() != "v2" {
		t.Fatalf("after Proclaim: Leader %+v, term value %q; want value v2, token %d", ld, term.Value(), term.Token())
	}

	// Someone deletes the leader key: the term is lost and Proclaim says so
	// without writing anything.
	if _, err := cli.Delete(ctx, term.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-term.Done():
	case <-ctx.Done():
		t.Fatal("term did not end after its key was deleted")
	}
	err = term.Proclaim(ctx, "v3")
	if !errors.Is(err, election.ErrNotLeader) || !errors.Is(err, lockstep.ErrLost) {
		t.Fatalf("Proclaim after loss: got %v, want ErrNotLeader and ErrLost", err)
	}
	if err := term.Resign(ctx); !errors.Is(err, lockstep.ErrLost) {
		t.Fatalf("Resign after loss: got %v, want ErrLost", err)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Leader: got %v, want ErrNoLeader", err)
	}
}

// Proclaim never writes a key that is not the term's: after the key is
// replaced (whether or not the watcher noticed yet), it refuses and leaves
// the new key alone.
func TestProclaimOnReplacedKey(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli := testutil.Client(t)
	s := testutil.Session(t, cli)
	e, err := election.New(s, testutil.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	term := campaign(t, ctx, e, "v1")
	// A new incarnation of the same key.
	if _, err := cli.Delete(ctx, term.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, term.Key(), "other", clientv3.WithLease(s.Lease())); err != nil {
		t.Fatal(err)
	}
	err = term.Proclaim(ctx, "v2")
	if !errors.Is(err, election.ErrNotLeader) || !errors.Is(err, lockstep.ErrLost) {
		t.Fatalf("Proclaim on a replaced key: got %v, want ErrNotLeader and ErrLost", err)
	}
	resp, err := cli.Get(ctx, term.Key())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "other" {
		t.Fatalf("the replacing key was written: %v", resp.Kvs)
	}
}

// A key of this session left over in etcd is taken over with the new value,
// as etcd's Campaign does.
func TestCampaignTakesOverLeftoverKey(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli, rpc := testutil.CountingClient(t)
	s := testutil.Session(t, cli)
	e, err := election.New(s, testutil.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	put, err := cli.Put(ctx, e.Key(), "stale", clientv3.WithLease(s.Lease()))
	if err != nil {
		t.Fatal(err)
	}
	rpc.Reset()
	term := campaign(t, ctx, e, "fresh")
	// The put finds the key, which keeps its place; one read finds where
	// that is. (Enter's transaction could read the whole line in a nested
	// branch and save it, but every Lock and Campaign would then send that
	// branch and pay for it: 3-5% on an uncontended lock, measured.)
	if rpc.KV() != 2 {
		t.Fatalf("Campaign over a leftover key: got %d RPCs, want 2", rpc.KV())
	}
	if term.Token() != put.Header.Revision {
		t.Fatalf("Token: got %d, want the leftover key's create revision %d", term.Token(), put.Header.Revision)
	}
	ld, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ld.Value != "fresh" {
		t.Fatalf("Leader value: got %q, want fresh", ld.Value)
	}
	term.Resign(ctx)
}

func TestTermEndsWithSession(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli := testutil.Client(t)
	s := testutil.Session(t, cli)
	e, err := election.New(s, testutil.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	term := campaign(t, ctx, e, "a")
	s.Close()
	select {
	case <-term.Done():
	case <-ctx.Done():
		t.Fatal("term did not end with its session")
	}
	if !errors.Is(term.Err(), lockstep.ErrSessionClosed) {
		t.Fatalf("Err: got %v, want ErrSessionClosed", term.Err())
	}
	if err := term.Proclaim(ctx, "b"); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Proclaim: got %v, want ErrNotLeader", err)
	}
}

// A term's IsOwner fences etcd writes: it holds during the term and fails
// after it.
func TestTermFencesWrites(t *testing.T) {
	ctx := testutil.Context(t, 10*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	e := newElection(t, cli, prefix)
	term := campaign(t, ctx, e, "a")
	write := func() bool {
		resp, err := cli.Txn(ctx).If(term.IsOwner()).Then(clientv3.OpPut(prefix+"-data", "x")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !write() {
		t.Fatal("fenced write failed during the term")
	}
	term.Resign(ctx)
	if write() {
		t.Fatal("fenced write succeeded after the term")
	}
}

// Predecessor names the leader a term followed, also when the candidate
// it waited for was still queued at its last read; when the candidates
// ahead went together, the leader before it is not known.
func TestPredecessor(t *testing.T) {
	ctx := testutil.Context(t, 20*time.Second)
	cli := testutil.Client(t)
	leaderOf := func(tm *election.Term, value string) election.Leader {
		return election.Leader{Value: value, Key: tm.Key(), Lease: tm.Session().Lease(), Token: tm.Token()}
	}

	t.Run("chain", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		a := campaign(t, ctx, newElection(t, cli, prefix), "a")
		gotB := campaignAsync(ctx, newElection(t, cli, prefix), "b")
		waitKeys(t, ctx, cli, prefix, 2)
		gotC := campaignAsync(ctx, newElection(t, cli, prefix), "c") // waits for b, which waits for a
		waitKeys(t, ctx, cli, prefix, 3)
		if err := a.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		b := await(t, ctx, gotB)
		if b.err != nil {
			t.Fatal(b.err)
		}
		if err := b.term.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		c := await(t, ctx, gotC)
		if c.err != nil {
			t.Fatal(c.err)
		}
		defer c.term.Resign(ctx)
		if got, ok := c.term.Predecessor(); !ok || got != leaderOf(b.term, "b") {
			t.Fatalf("c's predecessor: got %+v, %v; want b, %+v", got, ok, leaderOf(b.term, "b"))
		}
	})

	t.Run("went together", func(t *testing.T) {
		prefix := testutil.Prefix(t)
		a := campaign(t, ctx, newElection(t, cli, prefix), "a")
		eb := newElection(t, cli, prefix)
		bctx, cancelB := context.WithCancel(ctx)
		defer cancelB()
		gotB := campaignAsync(bctx, eb, "b")
		waitKeys(t, ctx, cli, prefix, 2)
		gotC := campaignAsync(ctx, newElection(t, cli, prefix), "c")
		waitKeys(t, ctx, cli, prefix, 3)
		// The leader and the waiter ahead of c go at one revision.
		if _, err := cli.Txn(ctx).Then(clientv3.OpDelete(a.Key()), clientv3.OpDelete(eb.Key())).Commit(); err != nil {
			t.Fatal(err)
		}
		c := await(t, ctx, gotC)
		if c.err != nil {
			t.Fatal(c.err)
		}
		defer c.term.Resign(ctx)
		if got, ok := c.term.Predecessor(); !ok || got.Token != 0 {
			t.Fatalf("c's predecessor: got %+v, %v; want the zero Leader, true", got, ok)
		}
		await(t, ctx, gotB) // lost its key: an error
	})
}
