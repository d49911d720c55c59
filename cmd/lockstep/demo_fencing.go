package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/mutex"
)

// fencedStorage is the resource a job writes to: it remembers the highest
// fencing token it has seen and refuses older ones. That is all a resource
// needs to do to make a lock's mutual exclusion real.
type fencedStorage struct {
	mu      sync.Mutex
	highest int64
	content []string
}

func (s *fencedStorage) write(token int64, line string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("token %d is older than %d, the highest seen", token, s.highest)
	}
	s.highest = token
	s.content = append(s.content, line)
	return nil
}

func (d *demo) fencing(ctx context.Context) error {
	const prefix = "/demo/locks/nightly-report"
	d.n.story("2. Job lock with a fencing token (mutex)", `
Two workers run the nightly report under the lock `+prefix+`.
The storage they write to remembers the highest fencing token it has seen.
A paused worker wakes up after losing the lock and tries to write.`, false)

	s1, err := d.session(ctx, d.cli)
	if err != nil {
		return err
	}
	defer s1.Close()
	s2, err := d.session(ctx, d.cli)
	if err != nil {
		return err
	}
	defer s2.Close()
	m1, err := mutex.New(s1, prefix)
	if err != nil {
		return err
	}
	m2, err := mutex.New(s2, prefix)
	if err != nil {
		return err
	}
	storage := &fencedStorage{}

	l1, err := m1.Lock(ctx)
	if err != nil {
		return err
	}
	d.n.at(time.Now(), "worker-1 takes the lock: fencing token %d", l1.Token())
	if err := storage.write(l1.Token(), "part 1 by worker-1"); err != nil {
		return err
	}
	d.n.at(time.Now(), "worker-1 writes part 1 with token %d: the storage accepts it", l1.Token())

	type result struct {
		l   *mutex.Lock
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := m2.Lock(ctx)
		got <- result{l, err}
	}()
	if err := d.waitKeys(ctx, prefix, 2); err != nil {
		return err
	}
	d.n.at(time.Now(), "worker-2 wants the lock too, and waits")

	// A pause is invisible to the paused process: it cannot react to
	// anything. Its lease runs out meanwhile; revoking it is the same
	// thing without the 2 s wait.
	if _, err := d.cli.Revoke(ctx, s1.Lease()); err != nil {
		return err
	}
	d.n.at(time.Now(), "worker-1 stalls: a long GC pause, a stopped VM. Its lease runs out meanwhile")
	d.n.say("(we revoke it rather than wait the 2 s TTL).")
	r := <-got
	if r.err != nil {
		return r.err
	}
	l2 := r.l
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), retry.CleanupTimeout)
		defer cancel()
		l2.Unlock(uctx)
	}()
	d.n.at(time.Now(), "worker-2 gets the lock: token %d", l2.Token())
	if err := storage.write(l2.Token(), "the whole report by worker-2"); err != nil {
		return err
	}
	d.n.at(time.Now(), "worker-2 writes the report with token %d: accepted", l2.Token())

	d.n.at(time.Now(), "worker-1 wakes up. It has not looked at its lock since; it writes part 2")
	d.n.say("with its token, %d.", l1.Token())
	if err := storage.write(l1.Token(), "part 2 by worker-1"); err != nil {
		d.n.at(time.Now(), "the storage refuses it: %v.", err)
	} else {
		d.n.at(time.Now(), "the storage accepted it: this should not happen")
	}
	put := clientv3.OpPut(prefix+"-output", "part 2 by worker-1")
	resp, err := d.cli.Txn(ctx).If(l1.IsOwner()).Then(put).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		d.n.at(time.Now(), "a write to etcd guarded by worker-1's IsOwner() is refused by etcd too.")
	}
	d.n.say("The lock could not stop the stale write: worker-1 was paused, not told.")
	d.n.say("The token did. Storage holds: %q.", storage.content)
	return nil
}
