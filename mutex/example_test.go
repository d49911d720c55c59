package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/embedded"
	"github.com/lockstep-go/lockstep/mutex"
)

// Lock, write under the lock's protection, unlock. The write is fenced:
// etcd refuses it if the lock was lost in the meantime.
func Example() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	m, err := mutex.New(s, "/locks/report")
	if err != nil {
		log.Fatal(err)
	}
	l, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Txn(ctx).
		If(l.IsOwner()).
		Then(clientv3.OpPut("/reports/latest", fmt.Sprintf("built under token %d", l.Token()))).
		Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("write accepted:", resp.Succeeded)
	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after unlock:", l.Err())
	// Output:
	// write accepted: true
	// after unlock: lockstep: released
}

// Do runs a job while holding the lock; the job's context is cancelled if
// the lock is lost.
func ExampleMutex_Do() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	m, err := mutex.New(s, "/locks/nightly-batch")
	if err != nil {
		log.Fatal(err)
	}

	err = m.Do(ctx, func(ctx context.Context, l *mutex.Lock) error {
		fmt.Println("running the batch as the only node")
		return nil
	})
	fmt.Println("done:", err)
	// Output:
	// running the batch as the only node
	// done: <nil>
}

// TryLock does not wait: it fails with ErrLocked if someone else holds or
// waits for the mutex.
func ExampleMutex_TryLock() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	newMutex := func() *mutex.Mutex { // one node
		s, err := lockstep.NewSession(ctx, cli)
		if err != nil {
			log.Fatal(err)
		}
		closers = append(closers, s.Close)
		m, err := mutex.New(s, "/locks/cron")
		if err != nil {
			log.Fatal(err)
		}
		return m
	}
	a, b := newMutex(), newMutex()

	l, err := a.TryLock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	_, err = b.TryLock(ctx)
	fmt.Println("second node:", errors.Is(err, mutex.ErrLocked))
	h, err := b.Holder(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("holder is the first node:", h.Key == l.Key())
	l.Unlock(ctx)
	// Output:
	// second node: true
	// holder is the first node: true
}

// Done tells a holder that its lock is gone, here because an operator
// deleted its key.
func ExampleLock_Done() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}
	s, err := lockstep.NewSession(ctx, cli)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	m, err := mutex.New(s, "/locks/report")
	if err != nil {
		log.Fatal(err)
	}
	l, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}

	if _, err := cli.Delete(ctx, l.Key()); err != nil { // etcdctl del ...
		log.Fatal(err)
	}
	select {
	case <-l.Done():
		fmt.Println("lost:", errors.Is(l.Err(), lockstep.ErrLost))
	case <-time.After(10 * time.Second):
		fmt.Println("still held")
	}
	fmt.Println("unlock:", errors.Is(l.Unlock(ctx), lockstep.ErrLost))
	// Output:
	// lost: true
	// unlock: true
}
