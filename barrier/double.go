package barrier

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// MaxCount is the largest count a DoubleBarrier accepts. The transaction
// that opens a round compares the key of every party of the round, and the
// one that closes it deletes them all; etcd refuses transactions of more
// than 128 operations unless its --max-txn-ops is raised.
const MaxCount = 127

// DoubleBarrier is one participant of a reusable double barrier: count
// participants enter a round together, work, and leave it together; then
// the same participants, with the same prefix, go through the next round,
// and so on, with no reset.
//
// Enter returns when count participants have entered the round; Leave
// returns when every participant of the round has left it or died. Nobody
// can enter round k+1 before every participant of round k has called Leave
// (or died).
//
// Each DoubleBarrier is one participant, attached to its session's lease;
// make one per worker (several may share a session). Its methods may be
// called from any goroutine, one call at a time: a call made while another
// is in progress waits for it.
type DoubleBarrier struct {
	s     *lockstep.Session
	cli   *clientv3.Client
	count int
	keys  layout
	id    string // this participant's id: its party key is keys.party(id)

	busy chan struct{} // holds a token while a call runs

	// Touched only by the call that holds busy.
	dirty bool   // our party key may exist: a registration was sent
	rev   int64  // create revision of our party key, once known, else 0
	round *round // the round we are in, between Enter and Leave

	last atomic.Int64 // Round
}

// NewDouble returns a participant of the double barrier named prefix, for
// rounds of count participants. It does no I/O.
func NewDouble(s *lockstep.Session, prefix string, count int) (*DoubleBarrier, error) {
	if s == nil {
		return nil, lockstep.ErrNilSession
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("barrier: %w", err)
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if count < 1 || count > MaxCount {
		return nil, fmt.Errorf("%w: %d (want 1 to %d)", ErrInvalidCount, count, MaxCount)
	}
	return &DoubleBarrier{
		s:     s,
		cli:   s.Client(),
		count: count,
		keys:  newLayout(prefix),
		id:    newID(s.Lease()),
		busy:  make(chan struct{}, 1),
	}, nil
}

// Key returns this participant's etcd key. It exists from Enter until the
// round closes.
func (d *DoubleBarrier) Key() string { return d.keys.party(d.id) }

// Round returns the round this participant entered last: the revision at
// which that round opened, which is the same for all its participants and
// grows from one round to the next. Zero before the first Enter.
func (d *DoubleBarrier) Round() int64 { return d.last.Load() }

// Enter registers this participant and returns when count participants
// have registered: the round is open. A participant that arrives while a
// round is open, or that is beyond the count-th to register, waits for the
// next round.
//
// Errors: ErrEntered if already in a round; ErrCountMismatch if an earlier
// participant or the open round has another count; an error wrapping the
// session's Err if the session ends; ctx.Err() when ctx ends. After an
// error the participant's key is removed and it is in no round.
func (d *DoubleBarrier) Enter(ctx context.Context) error {
	if err := d.acquire(ctx); err != nil {
		return err
	}
	defer d.release()
	if d.round != nil {
		return fmt.Errorf("%w: round %d", ErrEntered, d.round.rev)
	}
	if err := d.s.Err(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	r, err := d.enter(ctx)
	if err != nil {
		d.cleanup(ctx)
		return d.explain(ctx, err)
	}
	d.round = r
	d.last.Store(r.rev)
	return nil
}

// Leave marks this participant as done with the round and returns when
// every participant of the round has left it. A participant whose session
// died counts as having left.
//
// Errors: ErrNotEntered without a successful Enter; an error wrapping the
// session's Err (or lockstep.ErrLost if the key was deleted by someone
// else) if this participant was removed from the round; ctx.Err() when ctx
// ends, after which the others count this participant as having left.
// After Leave returns, with or without error, the participant may Enter the
// next round.
func (d *DoubleBarrier) Leave(ctx context.Context) error {
	if err := d.acquire(ctx); err != nil {
		return err
	}
	defer d.release()
	if d.round == nil {
		return ErrNotEntered
	}
	r := d.round
	d.round = nil
	err := d.leave(ctx, r)
	if errors.Is(err, errRoundGone) {
		d.cleanup(ctx)
		return nil
	}
	if err != nil {
		d.cleanup(ctx)
		return d.explain(ctx, err)
	}
	d.rev, d.dirty = 0, false // the round's close deleted our key
	return nil
}

// acquire waits for the calls in progress to finish. A call whose ctx has
// already ended still runs when nothing else does, so that it removes the
// participant's key like any other cancelled call.
func (d *DoubleBarrier) acquire(ctx context.Context) error {
	select {
	case d.busy <- struct{}{}:
		return nil
	default:
	}
	select {
	case d.busy <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *DoubleBarrier) release() { <-d.busy }

// explain turns internal signals into the errors callers see.
func (d *DoubleBarrier) explain(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errSession):
		return fmt.Errorf("barrier: %s: %w", d.Key(), d.s.Err())
	}
	return err
}

// lost explains why our party key is gone although we did not delete it:
// our lease ended (the session may not have noticed yet) or someone deleted
// the key.
func (d *DoubleBarrier) lost(context.Context) error {
	return fmt.Errorf("barrier: %w", rpc.Gone(d.s, d.Key()))
}

// cleanup removes our party key, our proxy and the proxies that watch us,
// after Enter or Leave failed. For the others it is as if we had died:
// before the round opens we no longer count, after it opened we have left.
// Deleting the proxies that watch us wakes the parties that watch them, as
// our lease's end would.
//
// Our key range needs no guard: the id is ours alone, and no other call of
// ours runs meanwhile. It may hold a registration whose answer we never
// got. What cannot be removed now (the network is down) is left to the
// session, and this participant takes a new id, so that the session's late
// delete cannot remove its next registration.
func (d *DoubleBarrier) cleanup(ctx context.Context) {
	if !d.dirty {
		return
	}
	id := d.id
	key, end := d.keys.own(id)
	over := rpc.Sweep(ctx, d.cli, d.s, rpc.Cleanup{
		Then: []clientv3.Op{clientv3.OpDelete(key, clientv3.WithRange(end)), clientv3.OpGet(d.keys.parties, clientv3.WithPrefix())},
		Next: func(resp *clientv3.TxnResponse) []rpc.Cleanup { return d.unwatch(id, resp) },
	})
	if !over {
		d.id = newID(d.s.Lease())
	}
	d.rev, d.dirty = 0, false
}

// unwatch returns the deletes of the proxies that watch id, from the
// parties read with the delete of its keys.
func (d *DoubleBarrier) unwatch(id string, resp *clientv3.TxnResponse) []rpc.Cleanup {
	get := resp.Responses[1].GetResponseRange()
	snap, err := d.keys.parse(resp.Header.Revision, nil, (*clientv3.GetResponse)(get))
	if err != nil {
		return nil
	}
	var cs []rpc.Cleanup
	for watcher, target := range snap.proxies {
		if target != id {
			continue
		}
		proxy := d.keys.proxy(watcher)
		cs = append(cs, rpc.Cleanup{
			If:   []clientv3.Cmp{clientv3.Compare(clientv3.Value(proxy), "=", id)},
			Then: []clientv3.Op{clientv3.OpDelete(proxy)},
		})
	}
	return cs
}
