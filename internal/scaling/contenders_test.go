package scaling_test

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/election"
	"github.com/lockstep-go/lockstep/mutex"
)

// contender takes a name and gives it up: a mutex's Lock and Unlock, or a
// candidate's Campaign and Resign, of either implementation.
type contender interface {
	acquire(ctx context.Context) error
	release(ctx context.Context) error
}

// impl makes contenders of one recipe of one implementation, each with its
// own session on cli.
type impl struct {
	recipe, name string // "mutex", "lockstep"
	make         func(b *testing.B, cli *clientv3.Client, prefix string) contender
}

var impls = []impl{
	{"mutex", "lockstep", func(b *testing.B, cli *clientv3.Client, prefix string) contender {
		m, err := mutex.New(ourSession(b, cli), prefix)
		if err != nil {
			b.Fatal(err)
		}
		return &ourMutex{m: m}
	}},
	{"mutex", "etcd", func(b *testing.B, cli *clientv3.Client, prefix string) contender {
		return &etcdMutex{m: concurrency.NewMutex(etcdSession(b, cli), prefix)}
	}},
	{"election", "lockstep", func(b *testing.B, cli *clientv3.Client, prefix string) contender {
		e, err := election.New(ourSession(b, cli), prefix)
		if err != nil {
			b.Fatal(err)
		}
		return &ourCandidate{e: e}
	}},
	{"election", "etcd", func(b *testing.B, cli *clientv3.Client, prefix string) contender {
		return &etcdCandidate{e: concurrency.NewElection(etcdSession(b, cli), prefix)}
	}},
}

func ourSession(b *testing.B, cli *clientv3.Client) *lockstep.Session {
	s, err := lockstep.NewSession(context.Background(), cli)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func etcdSession(b *testing.B, cli *clientv3.Client) *concurrency.Session {
	s, err := concurrency.NewSession(cli)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

type ourMutex struct {
	m *mutex.Mutex
	l *mutex.Lock
}

func (c *ourMutex) acquire(ctx context.Context) (err error) {
	c.l, err = c.m.Lock(ctx)
	return err
}
func (c *ourMutex) release(ctx context.Context) error { return c.l.Unlock(ctx) }

type etcdMutex struct{ m *concurrency.Mutex }

func (c *etcdMutex) acquire(ctx context.Context) error { return c.m.Lock(ctx) }
func (c *etcdMutex) release(ctx context.Context) error { return c.m.Unlock(ctx) }

type ourCandidate struct {
	e    *election.Election
	term *election.Term
}

func (c *ourCandidate) acquire(ctx context.Context) (err error) {
	c.term, err = c.e.Campaign(ctx, "v")
	return err
}
func (c *ourCandidate) release(ctx context.Context) error { return c.term.Resign(ctx) }

type etcdCandidate struct{ e *concurrency.Election }

func (c *etcdCandidate) acquire(ctx context.Context) error { return c.e.Campaign(ctx, "v") }
func (c *etcdCandidate) release(ctx context.Context) error { return c.e.Resign(ctx) }
