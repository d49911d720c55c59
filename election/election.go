package election

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/ctxs"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/line"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/rpc"
	"github.com/lockstep-go/lockstep/internal/waitfor"
)

// Election is one session's part in one election: it campaigns with the
// session's key and reads who leads. It is safe for concurrent use;
// concurrent campaigns of one session take turns (see Campaign).
type Election struct {
	s      *lockstep.Session
	prefix string
	line   line.Line
	obs    *Observer
}

// New returns the election named by prefix, for candidates of session s.
// It does no I/O. The candidates' keys are prefix + "/" + lease ID in hex,
// as etcd's concurrency.NewElection(s, prefix) makes them (a prefix that
// ends in "/" gets a second one, as there).
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
		line:   line.Line{S: s, Dir: keys.Dir(prefix), Key: keys.Lease(prefix, s.Lease())},
		obs:    &Observer{cli: s.Client(), prefix: prefix},
	}, nil
}

// Key is the key this election's session campaigns with.
func (e *Election) Key() string { return e.line.Key }

// Campaign puts the session's candidate key with value and blocks until it
// is the oldest key of the election, that is until this session leads. It
// returns the Term, which ends when the term is resigned or lost.
//
// A candidate waits for the candidate just before it only, so a change of
// leader wakes one waiter. Campaign does not return a term whose session
// or key it knows to be gone: it returns an error wrapping the session's
// Err, or lockstep.ErrLost if someone deletes its key (a revoke in the
// instant before the handoff is the one exception: the term then ends at
// once, and IsOwner never holds). If ctx ends first it returns ctx.Err()
// and its key is deleted.
//
// Concurrent Campaigns of one session on one prefix take turns, first come
// first served (one session has one key per election). A key of the
// session that already exists is taken over with the new value, as etcd's
// Campaign does. Errors that may pass are retried with backoff.
// docs/election.md has the round trips and the reasoning.
func (e *Election) Campaign(ctx context.Context, value string) (*Term, error) {
	if err := e.s.Err(); err != nil {
		return nil, e.fail(ctx, err)
	}
	release, err := own.Reserve(ctx, e.s, e.line.Key)
	if err != nil {
		return nil, e.fail(ctx, err)
	}
	h, at, err := e.line.Enter(ctx, value, release)
	if err != nil {
		return nil, e.fail(ctx, err)
	}
	f, err := e.line.Wait(ctx, h, at)
	if err == nil {
		// No phantom leadership: a session whose Done closed while we
		// waited (its lease may exist for the margin) does not lead.
		err = e.s.Err()
		if f.KV != nil {
			err = h.Err()
		}
	}
	if err != nil {
		return nil, e.fail(ctx, h.Abandon(ctx, err))
	}
	t := &Term{Ownership: h, h: h, e: e, value: value}
	if f.KV != nil {
		t.followed = true
		if f.Held || e.ledWhenGone(ctx, f) {
			t.pred = leaderOf(f.KV)
		}
	}
	return t, nil
}

// ledWhenGone reports whether the candidate f followed, which the last
// read showed waiting behind another, was the oldest key, the leader, just
// before the revision that deleted it: usually it was (it led, then
// resigned), but the candidates ahead may also have gone close together.
// One read at that revision (and, if the wait did not see the delete, one
// watch from history to find it); false if that is not known.
func (e *Election) ledWhenGone(ctx context.Context, f line.Followed) bool {
	cli := e.s.Client()
	if f.GoneAt == 0 {
		// A watch outlives its ctx's owner only as long as ctx: bound it
		// by the session, as every wait of a session is.
		wctx, stop := ctxs.EndWith(ctx, e.s.Done(), nil)
		defer stop()
		var err error
		if f.GoneAt, err = waitfor.GoneAt(wctx, cli, string(f.KV.Key), f.KV.CreateRevision, f.SeenAt+1); err != nil || f.GoneAt == 0 {
			return false
		}
	}
	resp, err := rpc.Get(ctx, cli, e.s, e.line.Dir, append(clientv3.WithFirstCreate(), clientv3.WithRev(f.GoneAt-1))...)
	return err == nil && len(resp.Kvs) == 1 &&
		string(resp.Kvs[0].Key) == string(f.KV.Key) && resp.Kvs[0].CreateRevision == f.KV.CreateRevision
}

// fail turns the error of a failed Campaign into the one to report: ctx's
// own error when ctx ended.
func (e *Election) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return e.errorf("campaign", err)
}

func (e *Election) errorf(op string, err error) error {
	return fmt.Errorf("election: %s %s: %w", op, e.prefix, err)
}

// Leader returns the current leader, or ErrNoLeader. One Range.
func (e *Election) Leader(ctx context.Context) (Leader, error) { return e.obs.Leader(ctx) }

// Observe reports the leader: the current state first, then every change
// (see Observer.Observe). The channel is closed when ctx ends.
func (e *Election) Observe(ctx context.Context) <-chan Leader { return e.obs.Observe(ctx) }
