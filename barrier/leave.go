package barrier

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
)

// leave runs Leave. The participant marks its key "left" and reads the
// parties in one transaction. If no party of the round is still "entered",
// it is the last: it closes the round, deleting the ready key and every
// party's keys in one transaction. Otherwise it waits until its own key is
// deleted by that close.
//
// The close needs someone alive to do it. If the last "entered" party dies
// instead of leaving, the others must learn of it, without every waiter
// waking at every departure. So each waiter watches one other party of the
// round, its successor in the roster, through a proxy key: a key under the
// waiter's own key range, attached to the successor's lease. The
// successor's death deletes the proxy, and the waiter wakes; a departure
// only rewrites a value, which the watch filters out. The waiter watches
// its own key range, which holds its key and its proxy: the close deletes
// both in one revision, a death of the successor only the proxy. See
// docs/barrier.md for why the waiters' proxies always cover the last
// "entered" party.
func (d *DoubleBarrier) leave(ctx context.Context, r *round) error {
	marked := false // survives a resync: once left, a missing key may mean the round closed
	for attempt := 0; ; attempt++ {
		err := d.leaveOnce(ctx, r, &marked)
		if !errors.Is(err, errResync) {
			return err
		}
		if err := retry.Sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

var (
	// errClosed says the round closed while we were about to act on it:
	// Leave is over, successfully.
	errClosed = errors.New("barrier: round closed")

	// errRoundGone says the ready key was deleted by someone else while our
	// key is still there: nobody waits for us any more, but our key must go.
	errRoundGone = errors.New("barrier: round deleted")
)

func (d *DoubleBarrier) leaveOnce(ctx context.Context, r *round, marked *bool) error {
	err := d.leaveWatching(ctx, r, marked)
	if errors.Is(err, errClosed) {
		return nil
	}
	return err
}

func (d *DoubleBarrier) leaveWatching(ctx context.Context, r *round, marked *bool) error {
	key, end := d.keys.own(d.id)
	w, err := arm(ctx, d.cli, d.s, key, clientv3.WithRange(end), clientv3.WithFilterPut())
	if err != nil {
		return err
	}
	defer w.cancel()

	// Mark ourselves left and put our proxy on our successor, in one
	// transaction that also reads the parties. Before the first read we
	// assume every party of the round is alive; if our successor is not,
	// the guard fails and the read tells us whom to watch instead.
	snap := &snapshot{}
	var target *member // the party our proxy watches
	for done := false; !done; {
		target = snap.successor(r, d.id)
		cmps, then := d.mineOps(r)
		then = append(then, clientv3.OpPut(d.keys.party(d.id), partyValue(stateLeft, d.count), clientv3.WithLease(d.s.Lease())))
		if target != nil {
			cmps, then = d.proxyOps(cmps, then, target)
		}
		if snap, done, err = d.guarded(ctx, r, cmps, then, *marked); err != nil {
			return err
		}
	}
	*marked = true
	for {
		if !snap.anyEntered(r, d.id) {
			return d.close(ctx, r)
		}
		if target == nil {
			// The party we watched is gone: watch the next one.
			target = snap.successor(r, d.id)
			cmps, then := d.mineOps(r)
			cmps, then = d.proxyOps(cmps, then, target)
			var ok bool
			if snap, ok, err = d.guarded(ctx, r, cmps, then, true); err != nil {
				return err
			}
			if !ok {
				target = nil
			}
			continue
		}
		resp, err := w.next(ctx, d.s.Done())
		if err != nil {
			return err
		}
		var mine, proxy int64 // revisions at which our key, our proxy were deleted
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.DELETE || ev.Kv.ModRevision <= snap.rev {
				continue
			}
			switch string(ev.Kv.Key) {
			case key:
				mine = ev.Kv.ModRevision
			case d.keys.proxy(d.id):
				proxy = ev.Kv.ModRevision
			}
		}
		switch {
		case mine != 0 && mine == proxy:
			return nil // the round closed
		case mine != 0:
			// Our lease ended or someone deleted our key: only a read
			// tells whether the round closed in the same breath.
			return d.closedOrLost(ctx, r)
		case proxy != 0:
			delete(snap.parties, target.id)
			target = nil
		}
	}
}

// mineOps starts a transaction guarded by our key and the round still
// existing, as we know them.
func (d *DoubleBarrier) mineOps(r *round) ([]clientv3.Cmp, []clientv3.Op) {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(d.keys.party(d.id)), "=", d.rev),
		clientv3.Compare(clientv3.CreateRevision(d.keys.ready), "=", r.rev),
	}, nil
}

// proxyOps adds the proxy on t, guarded by t's key still existing: then its
// lease exists too, and the proxy cannot outlive it.
func (d *DoubleBarrier) proxyOps(cmps []clientv3.Cmp, then []clientv3.Op, t *member) ([]clientv3.Cmp, []clientv3.Op) {
	lease, _ := leaseOf(t.id)
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(d.keys.party(t.id)), "=", t.rev))
	then = append(then, clientv3.OpPut(d.keys.proxy(d.id), t.id, clientv3.WithLease(lease)))
	return cmps, then
}

// guarded commits a transaction built by mineOps that also reads the
// parties. It returns the snapshot after it and whether it applied. When
// the guard failed because our key is gone, it returns why we lost the key,
// or errClosed if we had left (the round cannot close before) and the round
// is gone; when only the party we meant to watch is gone, the fresh
// snapshot.
func (d *DoubleBarrier) guarded(ctx context.Context, r *round, cmps []clientv3.Cmp, then []clientv3.Op, left bool) (*snapshot, bool, error) {
	parties := clientv3.OpGet(d.keys.parties, clientv3.WithPrefix())
	res, err := d.commit(ctx, cmps, append(then, parties), []clientv3.Op{clientv3.OpGet(d.keys.ready), parties})
	if err != nil {
		return nil, false, wrap(ctx, "leave "+d.keys.party(d.id), err)
	}
	resp := res.TxnResponse
	if resp.Succeeded {
		snap, err := d.parse(resp, -1, len(resp.Responses)-1)
		if err != nil {
			return nil, false, err
		}
		snap.round = r
		return snap, true, nil
	}
	snap, err := d.parse(resp, 0, 1)
	if err != nil {
		return nil, false, err
	}
	if p, ok := snap.parties[d.id]; !ok || p.rev != d.rev {
		// Once we left (or may have, if an attempt whose answer was lost
		// marked us), the round may have closed since.
		if !left && !res.Retried {
			return nil, false, d.lost(ctx)
		}
		return nil, false, d.closedOrLostIn(ctx, r, snap)
	}
	if snap.round == nil || snap.round.rev != r.rev {
		return nil, false, errRoundGone
	}
	return snap, false, nil
}

// closedOrLost tells, after our key was deleted, whether the round closed
// (nil) or we were removed from it.
func (d *DoubleBarrier) closedOrLost(ctx context.Context, r *round) error {
	snap, err := d.read(ctx)
	if err != nil {
		return err
	}
	return d.closedOrLostIn(ctx, r, snap)
}

func (d *DoubleBarrier) closedOrLostIn(ctx context.Context, r *round, snap *snapshot) error {
	if snap.round == nil || snap.round.rev != r.rev {
		return errClosed
	}
	return d.lost(ctx)
}

// close ends round r: it deletes the ready key and every party's key range
// (its key and its proxy) in one transaction, guarded by the ready key's
// create revision so that it can only close r. The deletes wake every
// waiter, each through its own key range.
func (d *DoubleBarrier) close(ctx context.Context, r *round) error {
	ops := []clientv3.Op{clientv3.OpDelete(d.keys.ready)}
	for _, m := range r.roster {
		key, end := d.keys.own(m.id)
		ops = append(ops, clientv3.OpDelete(key, clientv3.WithRange(end)))
	}
	_, err := d.commit(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(d.keys.ready), "=", r.rev)}, ops, nil)
	if err != nil {
		return wrap(ctx, "close "+d.keys.ready, err)
	}
	return nil // if the guard failed, someone else closed it
}

// anyEntered reports whether a party of r other than id is still entered.
func (s *snapshot) anyEntered(r *round, id string) bool {
	for _, m := range r.roster {
		if m.id == id {
			continue
		}
		if p, ok := s.parties[m.id]; ok && p.rev == m.rev && !p.left {
			return true
		}
	}
	return false
}

// successor returns the party after id in the roster's ring that is still
// present in s (all are, if s has not read the parties), or nil.
func (s *snapshot) successor(r *round, id string) *member {
	i := 0
	for i < len(r.roster) && r.roster[i].id != id {
		i++
	}
	for k := 1; k < len(r.roster); k++ {
		m := r.roster[(i+k)%len(r.roster)]
		if s.present(m) {
			return &m
		}
	}
	return nil
}
