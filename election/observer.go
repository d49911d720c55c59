package election

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Leader describes the candidate that holds an election: the one whose key
// has the lowest create revision. The zero Leader (Token 0) means no
// candidate holds it.
type Leader struct {
	// Value is what the leader campaigned with or last proclaimed.
	Value string
	// Key is the leader's key: prefix/<lease id in hex>.
	Key string
	// Lease is the lease the key is attached to.
	Lease clientv3.LeaseID
	// Token is the key's create revision: the fencing token of the term.
	Token int64
}

func leaderOf(kv *mvccpb.KeyValue) Leader {
	if kv == nil {
		return Leader{}
	}
	return Leader{
		Value: string(kv.Value),
		Key:   string(kv.Key),
		Lease: clientv3.LeaseID(kv.Lease),
		Token: kv.CreateRevision,
	}
}

// Observer reads and follows who leads an election without taking part in
// it: it needs a client, not a session. Election.Leader and
// Election.Observe are the same thing for a candidate.
type Observer struct {
	cli    *clientv3.Client
	prefix string
}

// NewObserver returns an observer of the election named by prefix. It does
// no I/O.
func NewObserver(cli *clientv3.Client, prefix string) (*Observer, error) {
	if cli == nil {
		return nil, lockstep.ErrNilClient
	}
	if err := keys.CheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	return &Observer{cli: cli, prefix: prefix}, nil
}

// Leader returns the current leader, or an error wrapping ErrNoLeader if
// there is none. One Range.
func (o *Observer) Leader(ctx context.Context) (Leader, error) {
	resp, err := rpc.Get(ctx, o.cli, nil, keys.Dir(o.prefix), clientv3.WithFirstCreate()...)
	if err != nil {
		if ctx.Err() != nil {
			return Leader{}, ctx.Err()
		}
		return Leader{}, fmt.Errorf("election: leader %s: %w", o.prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, fmt.Errorf("%w: %s", ErrNoLeader, o.prefix)
	}
	return leaderOf(resp.Kvs[0]), nil
}

// Observe returns a channel that reports the leader: the current state
// first (the zero Leader if there is none), then every change in order — a
// new leader, every Proclaim of the leader (even of the same value), and
// the zero Leader when the last candidate goes.
//
// It follows the election with one watch on the prefix and keeps the
// candidates in memory, so a change of leader costs no read. When the watch
// cannot resume (its revision was compacted, the member it used lost its
// leader or restarted) it reads the election again and watches from there;
// changes that happened in that gap are reported as one change to the
// current state. A consumer that stops reading holds the observer back;
// nothing is dropped.
//
// The channel is closed when ctx ends, or when the client is closed. The
// goroutine behind it ends then too.
func (o *Observer) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go o.observe(ctx, ch)
	return ch
}
