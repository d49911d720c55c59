package election

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/keys"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// candidates are the keys of an election, by key.
type candidates map[string]*mvccpb.KeyValue

// leader returns the candidate with the lowest create revision, or nil.
func (c candidates) leader() *mvccpb.KeyValue {
	var first *mvccpb.KeyValue
	for _, kv := range c {
		if first == nil || kv.CreateRevision < first.CreateRevision {
			first = kv
		}
	}
	return first
}

func (c candidates) apply(ev *clientv3.Event) {
	switch ev.Type {
	case mvccpb.PUT:
		c[string(ev.Kv.Key)] = ev.Kv
	case mvccpb.DELETE:
		delete(c, string(ev.Kv.Key))
	}
}

// sent remembers the last state sent, so that a re-read after a broken
// watch reports nothing that was already reported.
type sent struct {
	ok  bool
	key string
	rev int64 // create revision
	mod int64 // mod revision: tells Proclaims apart
}

func (s *sent) same(kv *mvccpb.KeyValue) bool {
	if !s.ok {
		return false
	}
	if kv == nil {
		return s.key == ""
	}
	return s.key == string(kv.Key) && s.rev == kv.CreateRevision && s.mod == kv.ModRevision
}

func (s *sent) set(kv *mvccpb.KeyValue) {
	*s = sent{ok: true}
	if kv != nil {
		s.key, s.rev, s.mod = string(kv.Key), kv.CreateRevision, kv.ModRevision
	}
}

var errWatchEnded = errors.New("election: observe: watch ended")

// observe reads the election, follows it with a watch, and reads again
// whenever the watch cannot go on.
func (o *Observer) observe(ctx context.Context, ch chan<- Leader) {
	defer close(ch)
	var last sent
	emit := func(kv *mvccpb.KeyValue) bool {
		if last.same(kv) {
			return true
		}
		select {
		case ch <- leaderOf(kv):
			last.set(kv)
			return true
		case <-ctx.Done():
			return false
		}
	}
	for attempt := 0; ; attempt++ {
		cands, rev, err := o.read(ctx)
		if err == nil {
			if !emit(cands.leader()) {
				return
			}
			var progressed bool
			progressed, err = o.follow(ctx, cands, rev+1, emit)
			if progressed {
				attempt = 0
			}
		}
		if ctx.Err() != nil || o.cli.Ctx().Err() != nil {
			return
		}
		if err != nil && retry.Sleep(ctx, attempt) != nil {
			return
		}
	}
}

func (o *Observer) read(ctx context.Context) (candidates, int64, error) {
	resp, err := rpc.Get(ctx, o.cli, nil, keys.Dir(o.prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	cands := make(candidates, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		cands[string(kv.Key)] = kv
	}
	return cands, resp.Header.Revision, nil
}

// follow applies the election's events from fromRev on and reports the
// leader after each revision. It returns when the watch cannot go on: nil
// after a compaction (read again at once), an error otherwise (read again
// after a pause). progressed says whether any event arrived.
func (o *Observer) follow(ctx context.Context, cands candidates, fromRev int64, emit func(*mvccpb.KeyValue) bool) (progressed bool, err error) {
	// A member cut off from its cluster would keep this watch open and
	// silent; requiring a leader makes it fail so we move on.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range o.cli.Watch(wctx, keys.Dir(o.prefix), clientv3.WithPrefix(), clientv3.WithRev(fromRev)) {
		if wr.CompactRevision != 0 {
			return progressed, nil
		}
		if err := wr.Err(); err != nil {
			return progressed, err
		}
		evs := wr.Events
		for i := 0; i < len(evs); {
			// Report once per revision: a Txn or a lease expiry can change
			// several candidates at one revision.
			rev := evs[i].Kv.ModRevision
			for ; i < len(evs) && evs[i].Kv.ModRevision == rev; i++ {
				cands.apply(evs[i])
			}
			progressed = true
			if !emit(cands.leader()) {
				return progressed, nil
			}
		}
	}
	return progressed, errWatchEnded
}
