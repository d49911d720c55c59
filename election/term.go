package election

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/own"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Term is one leadership: from the Campaign that won it to Resign, session
// loss, or the deletion of its key by someone else. It implements
// lockstep.Ownership; Token is the create revision of the leader key, which
// grows from each term of an election to the next.
type Term struct {
	lockstep.Ownership // served by h
	h                  *own.Handle
	e                  *Election

	pred     Leader // the leader before us, if known; see Predecessor
	followed bool   // Campaign waited for a candidate ahead of it

	mu       sync.Mutex
	value    string
	valueRev int64 // revision of the write that set value; 0 for the campaign's
}

var _ lockstep.Ownership = (*Term)(nil)

// Value returns the value the leader key holds: the one Campaign put, or
// the last one Proclaim wrote.
func (t *Term) Value() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.value
}

// Predecessor returns the leader this term followed: the candidate whose
// key's deletion ended Campaign's wait, if Campaign's last read showed it
// leading, and true. If it was a waiter then (the candidates ahead went
// close together) the previous leader is not known: the zero Leader (Token
// 0) and true. If Campaign led as soon as its key was written: false.
//
// A caller can ask whether the previous leader resigned or lost its lease
// (revoked or expired) with cli.TimeToLive(ctx, p.Lease): leaderjob does,
// to give a leader that did not resign time to hear that it lost.
func (t *Term) Predecessor() (Leader, bool) { return t.pred, t.followed }

// Proclaim replaces the leader's value without a new election, in one Txn
// guarded by the term's revision: it never writes a key that is not this
// term's. If the term has ended it returns an error wrapping both
// ErrNotLeader and the reason the term ended (a lease revoked from outside
// is lockstep.ErrSessionLost). Errors that may pass are retried; if the
// call fails otherwise the term is unchanged and Proclaim can be retried.
func (t *Term) Proclaim(ctx context.Context, value string) error {
	if err := t.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	s := t.h.Session()
	resp, err := rpc.Commit(ctx, s.Client(), s, rpc.Txn{
		If:   []clientv3.Cmp{t.IsOwner()},
		Then: []clientv3.Op{clientv3.OpPut(t.Key(), value, clientv3.WithLease(s.Lease()))},
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if serr := s.Err(); serr != nil {
			return fmt.Errorf("%w: %w", ErrNotLeader, serr)
		}
		return fmt.Errorf("election: proclaim %s: %w", t.Key(), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %w", ErrNotLeader, t.h.Gone())
	}
	t.mu.Lock()
	if rev := resp.Header.Revision; rev > t.valueRev {
		t.value, t.valueRev = value, rev
	}
	t.mu.Unlock()
	return nil
}

// Resign ends the term: it deletes the leader key in one Txn guarded by the
// term's revision, so it never deletes a key of a later term, and the next
// candidate takes over at once. Done closes and Err becomes
// lockstep.ErrReleased.
//
// The term ends whatever Resign returns: if the delete cannot get through
// (ctx ended, etcd unreachable), it goes on under a short timeout of its
// own and then through the session, and Resign returns why it did not
// finish here. Resign after the term ended returns the reason it ended:
// lockstep.ErrReleased for a second Resign, lockstep.ErrSessionLost,
// ErrSessionClosed or ErrLost otherwise (after a session loss it still
// deletes the key if it is ours, so a successor need not wait for the
// lease to expire).
func (t *Term) Resign(ctx context.Context) error {
	err := t.h.Release(ctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	default:
		return fmt.Errorf("election: resign %s: %w", t.Key(), err)
	}
}

// Session returns the session the term belongs to.
func (t *Term) Session() *lockstep.Session { return t.h.Session() }
