package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/ctxs"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

// cleanupTimeout bounds the delete of a candidate key after a campaign that
// failed or was cancelled: the caller's ctx has usually ended by then.
const cleanupTimeout = 2 * time.Second

// Election is one session's part in one election: it campaigns with the
// session's key and reads who leads. It is safe for concurrent use;
// concurrent campaigns of one session take turns (see Campaign).
type Election struct {
	s      *lockstep.Session
	prefix string
	key    string // this session's candidate key: prefix/<lease hex>
	obs    *Observer
}

// New returns the election named by prefix, for candidates of session s.
// It does no I/O. The prefix must be non-empty and not end in "/": the
// candidates' keys are prefix + "/" + lease ID in hex, as etcd's
// concurrency.NewElection(s, prefix) makes them.
func New(s *lockstep.Session, prefix string) (*Election, error) {
	if s == nil {
		return nil, lockstep.ErrNilSession
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("election: new %s: %w", prefix, err)
	}
	return &Election{
		s:      s,
		prefix: prefix,
		key:    keys.Lease(prefix, s.Lease()),
		obs:    &Observer{cli: s.Client(), prefix: prefix},
	}, nil
}

// Key is the key this election's session campaigns with.
func (e *Election) Key() string { return e.key }

// Campaign puts the session's candidate key with value and blocks until it
// is the oldest key of the election, that is until this session leads. It
// returns the Term, which ends when the term is resigned or lost.
//
// A candidate waits for the candidate just before it only, so a change of
// leader wakes one waiter. Campaign returns an error wrapping the session's
// Err if the session ends while it waits, and an error wrapping
// lockstep.ErrLost if someone deletes its key: it never returns a term
// whose session or key is already gone. If ctx ends first it returns
// ctx.Err() after deleting its key (under a short timeout of its own).
//
// One session has one key per election, so concurrent Campaigns of one
// session on one prefix take turns: the second waits in process until the
// first's campaign fails or its term ends. If the session's key already
// exists (left over by a campaign whose cleanup failed), Campaign takes it
// over with the new value, as etcd's Campaign does.
//
// Errors that may pass (no leader, a member restarting, a broken
// connection) are retried with backoff; a retried write that the failed
// attempt did apply finds its key and keeps its place.
//
// Uncontended, Campaign is one Txn. Contended, it adds one Range each time
// the candidate before it goes, and one more at the end if that candidate
// was still queued at its last read (to learn, for Term.Predecessor,
// whether it led when it went).
func (e *Election) Campaign(ctx context.Context, value string) (*Term, error) {
	if err := e.s.Err(); err != nil {
		return nil, e.errorf("campaign", err)
	}
	// Until the term exists, nothing else stops an RPC stuck on an
	// unreachable server when the session ends.
	sctx, stop := ctxs.EndWith(ctx, e.s.Done(), nil)
	defer stop()

	release, err := own.Reserve(sctx, e.s, e.key)
	if err != nil {
		return nil, e.fail(ctx, "campaign", err)
	}
	h, pred, fromRev, err := e.enter(sctx, value, release)
	if err != nil {
		release()
		return nil, e.fail(ctx, "campaign", err)
	}
	stop()

	// From here the handle's watcher ends h if the session ends or our key
	// is deleted; hctx ends with it.
	hctx, stopH := ctxs.EndWith(ctx, h.Done(), nil)
	defer stopH()
	var (
		followed ahead // the last candidate ahead of us to go
		wentAt   int64 // the revision that deleted it, 0 if not known
	)
	for pred.kv != nil {
		var err error
		if wentAt, err = waitfor.GoneAt(hctx, e.s.Client(), string(pred.kv.Key), pred.kv.CreateRevision, fromRev); err != nil {
			return nil, e.abandon(ctx, h, err)
		}
		// clientv3 retries a read whose connection broke by itself.
		resp, err := e.s.Client().Get(hctx, keys.Dir(e.prefix),
			clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
			clientv3.WithMaxCreateRev(h.Token()),
			clientv3.WithLimit(3)) // ours, the one ahead, and whether any is older
		if err != nil {
			return nil, e.abandon(ctx, h, err)
		}
		kvs := resp.Kvs
		if len(kvs) == 0 || string(kvs[0].Key) != e.key || kvs[0].CreateRevision != h.Token() {
			// Our key went while we waited. The handle's watcher has seen
			// the delete since the key was created, or will; it says why.
			<-hctx.Done()
			return nil, e.abandon(ctx, h, errKeyGone)
		}
		followed, pred = pred, aheadOf(kvs, 0)
		fromRev = resp.Header.Revision + 1
	}
	// No phantom leadership: a session whose Done closed while we waited
	// (the lease may still exist for the margin) does not lead.
	if err := h.Err(); err != nil {
		return nil, e.abandon(ctx, h, err)
	}
	t := &Term{Ownership: h, h: h, e: e, value: value}
	if followed.kv != nil {
		t.followed = true
		if followed.leads || e.ledWhenGone(hctx, followed.kv, wentAt) {
			t.pred = leaderOf(followed.kv)
		}
	}
	return t, nil
}

// ledWhenGone reports whether kv, which our last read showed waiting
// behind another candidate, was the oldest key, the leader, just before
// the revision that deleted it: usually it was (it led, then resigned),
// but the candidates ahead of us may also have gone close together. One
// read at that revision; false if that is not known.
func (e *Election) ledWhenGone(ctx context.Context, kv *mvccpb.KeyValue, wentAt int64) bool {
	if wentAt == 0 {
		return false
	}
	resp, err := e.s.Client().Get(ctx, keys.Dir(e.prefix),
		append(clientv3.WithFirstCreate(), clientv3.WithRev(wentAt-1))...)
	return err == nil && len(resp.Kvs) == 1 &&
		string(resp.Kvs[0].Key) == string(kv.Key) && resp.Kvs[0].CreateRevision == kv.CreateRevision
}

// ahead is the candidate just before ours, as of one read.
type ahead struct {
	kv    *mvccpb.KeyValue // nil: ours is the oldest key, we lead
	leads bool             // kv was the oldest key: the leader
}

// aheadOf finds the candidate ahead of ours in kvs, sorted newest first
// with ours at i, and one more key if there is one.
func aheadOf(kvs []*mvccpb.KeyValue, i int) ahead {
	if i+1 >= len(kvs) {
		return ahead{}
	}
	return ahead{kv: kvs[i+1], leads: i+2 == len(kvs)}
}

var errKeyGone = errors.New("election: candidate key deleted while waiting")

// enter puts the session's key and reads the candidate just before it, in
// one Txn. It returns the handle that owns the key, the candidate ahead of
// it (none if we lead) and the first revision not yet seen.
func (e *Election) enter(ctx context.Context, value string, release func()) (*own.Handle, ahead, int64, error) {
	dir := keys.Dir(e.prefix)
	put := clientv3.OpPut(e.key, value, clientv3.WithLease(e.s.Lease()))
	byCreate := []clientv3.OpOption{
		clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
	}
	// A new key is the newest: it and its predecessor are the first two in
	// descending create order, and a third says whether the predecessor
	// leads. An existing key (a leftover of this session, or one an attempt
	// created although its answer was lost) can be anywhere, so that branch
	// reads them all, keys only. The put keeps an existing key's create
	// revision, and so its place in the queue.
	cli := e.s.Client()
	var resp *clientv3.TxnResponse
	for attempt := 0; ; attempt++ {
		var err error
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(e.key), "=", 0)).
			Then(put, clientv3.OpGet(dir, append(byCreate, clientv3.WithLimit(3))...)).
			Else(put, clientv3.OpGet(dir, append(byCreate, clientv3.WithKeysOnly())...)).
			Commit()
		if err == nil {
			break
		}
		// A failure that may pass (a broken connection, an election) is
		// retried; ctx ends with the session too.
		if ctx.Err() != nil || cli.Ctx().Err() != nil || !retry.Transient(err) || retry.Sleep(ctx, attempt) != nil {
			// The put may have been applied even though we got no answer.
			e.dropKey(ctx)
			return nil, ahead{}, 0, err
		}
	}
	kvs := resp.Responses[1].GetResponseRange().Kvs
	for i, kv := range kvs {
		if string(kv.Key) != e.key {
			continue
		}
		fromRev := resp.Header.Revision + 1
		return own.New(e.s, e.key, kv.CreateRevision, fromRev, release), aheadOf(kvs, i), fromRev, nil
	}
	return nil, ahead{}, 0, fmt.Errorf("election: key %s missing right after its put", e.key)
}

// dropKey deletes the session's key after a put whose outcome is unknown.
// No other goroutine uses the key (we hold its reservation), so whatever is
// there is ours to delete.
func (e *Election) dropKey(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	e.s.Client().Delete(cctx, e.key)
}

// abandon gives up a candidacy: it deletes the key if it is still ours,
// ends the handle (which frees the session's key for the next campaign) and
// returns the error Campaign should report.
func (e *Election) abandon(ctx context.Context, h *own.Handle, err error) error {
	lost := h.Err()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	h.Release(cctx) // guarded by our create revision; best-effort after a session loss
	switch {
	case lost != nil:
		h.End(lost)
		return e.errorf("campaign", lost)
	case ctx.Err() != nil:
		h.End(ctx.Err())
		return ctx.Err()
	default:
		h.End(err)
		return e.errorf("campaign", err)
	}
}

// fail turns the error of an RPC into the one to report: ctx's own error
// when ctx ended, the session's reason when the session ended.
func (e *Election) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if serr := e.s.Err(); serr != nil {
		return e.errorf(op, serr)
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return e.errorf(op, fmt.Errorf("%w: %w", lockstep.ErrSessionLost, err))
	}
	return e.errorf(op, err)
}

func (e *Election) errorf(op string, err error) error {
	return fmt.Errorf("election: %s %s: %w", op, e.prefix, err)
}

// Leader returns the current leader, or ErrNoLeader. One Range.
func (e *Election) Leader(ctx context.Context) (Leader, error) { return e.obs.Leader(ctx) }

// Observe reports the leader: the current state first, then every change
// (see Observer.Observe). The channel is closed when ctx ends.
func (e *Election) Observe(ctx context.Context) <-chan Leader { return e.obs.Observe(ctx) }
