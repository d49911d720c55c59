package barrier

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// enter runs Enter: register, then either open the round (the count-th to
// register does it, in one guarded transaction) or wait for the ready key
// to appear. Waiters watch that one key, so a round's opening wakes each of
// them once, however many participants there are.
func (d *DoubleBarrier) enter(ctx context.Context) (*round, error) {
	for attempt := 0; ; attempt++ {
		r, err := d.enterOnce(ctx)
		if !errors.Is(err, errResync) {
			return r, err
		}
		if err := retry.Sleep(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

func (d *DoubleBarrier) enterOnce(ctx context.Context) (*round, error) {
	// Watch the ready key before anything else, so that no opening can
	// slip between what we read and what we watch. Only its creation
	// matters here: its deletion when the round closes could otherwise
	// still reach this watch after Enter returned, while its cancel is on
	// the way, and cost every participant an event per round.
	w, err := arm(ctx, d.cli, d.s, d.keys.ready, clientv3.WithFilterDelete())
	if err != nil {
		return nil, err
	}
	defer w.cancel()

	var snap *snapshot
	for {
		if snap == nil {
			if snap, err = d.registerOrRead(ctx); err != nil {
				return nil, err
			}
		}
		if r := snap.round; r != nil {
			if r.count != d.count {
				return nil, fmt.Errorf("%w: %d here, %d in the open round %d", ErrCountMismatch, d.count, r.count, r.rev)
			}
			if d.rev != 0 && r.has(d.id, d.rev) {
				return r, nil
			}
			// A round is open without us: wait for it to close, then
			// register (or, if we are already registered, count again).
			if err := d.awaitClose(ctx, snap); err != nil {
				return nil, err
			}
			snap = nil
			continue
		}
		if err := d.checkCount(snap); err != nil {
			return nil, err
		}
		if q := snap.queue(d.count); len(q) >= d.count {
			if snap, err = d.open(ctx, q[:d.count]); err != nil {
				return nil, err
			}
			continue
		}
		// Fewer than count have registered: the last of them opens the round.
		if snap, err = d.awaitOpen(ctx, w, snap.rev); err != nil {
			return nil, err
		}
	}
}

// registerOrRead registers our party key if it is not registered yet and no
// round is open, and reads the prefix in the same transaction.
func (d *DoubleBarrier) registerOrRead(ctx context.Context) (*snapshot, error) {
	readReady := clientv3.OpGet(d.keys.ready)
	readParties := clientv3.OpGet(d.keys.parties, clientv3.WithPrefix())
	if d.rev != 0 {
		res, err := d.commit(ctx, nil, []clientv3.Op{readReady, readParties}, nil)
		if err != nil {
			return nil, wrap(ctx, "read "+d.keys.parties, err)
		}
		snap, err := d.parse(res.TxnResponse, 0, 1)
		if err != nil {
			return nil, err
		}
		if p, ok := snap.parties[d.id]; !ok || p.rev != d.rev {
			return nil, d.lost(ctx)
		}
		return snap, nil
	}
	key := d.keys.party(d.id)
	d.dirty = true
	res, err := d.commit(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(d.keys.ready), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, partyValue(stateEntered, d.count), clientv3.WithLease(d.s.Lease())), readParties},
		[]clientv3.Op{readReady, readParties})
	if err != nil {
		return nil, wrap(ctx, "register "+key, err)
	}
	if !res.Succeeded {
		snap, err := d.parse(res.TxnResponse, 0, 1)
		if err != nil {
			return nil, err
		}
		// An attempt whose answer was lost may have registered us, and a
		// round may have opened with us since: the parties say.
		if p, ok := snap.parties[d.id]; ok {
			d.rev = p.rev
		}
		return snap, nil
	}
	snap, err := d.parse(res.TxnResponse, -1, 1)
	if err != nil {
		return nil, err
	}
	p, ok := snap.parties[d.id]
	if !ok {
		return nil, d.lost(ctx)
	}
	d.rev = p.rev
	return snap, nil
}

// parse reads a snapshot out of a transaction's responses: the ready get at
// index ready (negative: not read, hence absent) and the parties get at
// index parties.
func (d *DoubleBarrier) parse(resp *clientv3.TxnResponse, ready, parties int) (*snapshot, error) {
	var r *clientv3.GetResponse
	if ready >= 0 {
		r = (*clientv3.GetResponse)(resp.Responses[ready].GetResponseRange())
	}
	return d.keys.parse(resp.Header.Revision, r, (*clientv3.GetResponse)(resp.Responses[parties].GetResponseRange()))
}

// checkCount fails if a participant that registered before us expects
// another count. One that registered after us finds us and fails itself,
// so the first registration of a round sets its count.
func (d *DoubleBarrier) checkCount(snap *snapshot) error {
	for _, p := range snap.parties {
		if p.count != d.count && p.rev < d.rev {
			return fmt.Errorf("%w: %d here, %d for %s", ErrCountMismatch, d.count, p.count, d.keys.party(p.id))
		}
	}
	return nil
}

// open opens a round whose roster is the count oldest registrations, if no
// round is open and all of them still exist. Comparing every roster key is
// what keeps a participant that died before the round opened out of it. It
// returns what it opened, or what it found instead.
func (d *DoubleBarrier) open(ctx context.Context, roster []member) (*snapshot, error) {
	r := &round{count: d.count, roster: roster}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(d.keys.ready), "=", 0)}
	for _, m := range roster {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(d.keys.party(m.id)), "=", m.rev))
	}
	res, err := d.commit(ctx, cmps,
		[]clientv3.Op{clientv3.OpPut(d.keys.ready, r.encode())},
		[]clientv3.Op{clientv3.OpGet(d.keys.ready), clientv3.OpGet(d.keys.parties, clientv3.WithPrefix())})
	if err != nil {
		return nil, wrap(ctx, "open "+d.keys.ready, err)
	}
	if !res.Succeeded {
		// The round open now, ours if an attempt whose answer was lost
		// opened it, is in what the Else branch read.
		return d.parse(res.TxnResponse, 0, 1)
	}
	r.rev = res.Header.Revision
	return &snapshot{rev: r.rev, round: r}, nil
}

// awaitOpen waits for the ready key to be created after revision seen and
// returns what it says. It wakes once per round opening.
func (d *DoubleBarrier) awaitOpen(ctx context.Context, w *armed, seen int64) (*snapshot, error) {
	for {
		resp, err := w.next(ctx, d.s.Done())
		if err != nil {
			return nil, err
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision <= seen {
				continue // already in the snapshot
			}
			r, err := decodeRound(ev.Kv)
			if err != nil {
				return nil, err
			}
			return &snapshot{rev: ev.Kv.ModRevision, round: r}, nil
		}
	}
}

// awaitClose waits for the round in snap to close, as a participant that is
// not in it. The round's parties close it; but if they all die, nobody
// will, so it also watches one of them and, when the last one is gone,
// closes the round itself.
func (d *DoubleBarrier) awaitClose(ctx context.Context, snap *snapshot) error {
	r := snap.round
	// Arriving while a round is open is the rare case: it gets its own
	// watch for the ready key's deletion, and a read after that watch is
	// registered, so that a close between snap and the watch is not missed.
	w, err := arm(ctx, d.cli, d.s, d.keys.ready, clientv3.WithFilterPut())
	if err != nil {
		return err
	}
	defer w.cancel()
	if snap, err = d.read(ctx); err != nil {
		return err
	}
	if snap.round == nil || snap.round.rev != r.rev {
		return nil
	}
	for {
		var alive []member
		for _, m := range r.roster {
			if snap.present(m) {
				alive = append(alive, m)
			}
		}
		if len(alive) == 0 {
			return d.close(ctx, r)
		}
		// A watch from a past revision may wait for the server's catch-up
		// loop; that only delays noticing a death, which the lease TTL
		// delays far more anyway.
		t := alive[0]
		tw, cancel := rpc.Watch(clientv3.WithRequireLeader(ctx), d.cli, d.s, d.keys.party(t.id), clientv3.WithRev(snap.rev+1), clientv3.WithFilterPut())
		next, err := d.awaitCloseOrDeath(ctx, w, tw, snap.rev, r)
		cancel()
		if err != nil || next == nil {
			return err
		}
		snap = next
	}
}

// awaitCloseOrDeath waits for an event on the ready key after seen (the
// round closed: nil) or on the watched party (read again and return what
// the read says, nil if the round has closed).
func (d *DoubleBarrier) awaitCloseOrDeath(ctx context.Context, w *armed, tw clientv3.WatchChan, seen int64, r *round) (*snapshot, error) {
	for {
		select {
		case resp, ok := <-w.ch:
			if !ok || resp.Canceled || resp.Err() != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errResync
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision > seen {
					return nil, nil
				}
			}
		case <-tw:
			// The watched party is gone, or the watch ended: look again.
			snap, err := d.read(ctx)
			if err != nil {
				return nil, err
			}
			if snap.round == nil || snap.round.rev != r.rev {
				return nil, nil
			}
			return snap, nil
		case <-d.s.Done():
			return nil, errSession
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// read reads the ready key and the parties.
func (d *DoubleBarrier) read(ctx context.Context) (*snapshot, error) {
	res, err := d.commit(ctx, nil,
		[]clientv3.Op{clientv3.OpGet(d.keys.ready), clientv3.OpGet(d.keys.parties, clientv3.WithPrefix())}, nil)
	if err != nil {
		return nil, wrap(ctx, "read "+d.keys.parties, err)
	}
	return d.parse(res.TxnResponse, 0, 1)
}
