package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/semaphore"
)

// TestContention runs 12 sessions against a semaphore of 3 permits. Every
// holder records its entry and exit in etcd through transactions guarded by
// its permit, so a record exists only if the permit was held at that
// revision. Replaying the records in revision order must never show more
// than 3 holders. With kills, sessions are revoked at random (as if their
// process crashed and the lease expired); a killed holder has no exit
// record, and its stay ends at the revision its key was deleted. Every
// Acquire is bounded by a deadline: one that expires is a hang.
func TestContention(t *testing.T) {
	for _, kills := range []bool{false, true} {
		name := "steady"
		if kills {
			name = "random session kills"
		}
		t.Run(name, func(t *testing.T) { runContention(t, kills) })
	}
}

const (
	contLimit   = 3
	contWorkers = 12
	contRounds  = 8                // completed stays per worker
	contKills   = 12               // sessions revoked in the kill run
	acquireWait = 30 * time.Second // an Acquire that takes this long hung
)

// contention is the state the workers and the killer share.
type contention struct {
	t      *testing.T
	ctx    context.Context
	cli    *clientv3.Client
	prefix string
	logDir string
	kills  bool

	mu       sync.Mutex
	sessions map[int]*lockstep.Session // current session of each worker
	holding  map[int]*lockstep.Session // sessions of workers that hold a permit now

	killerDone chan struct{} // closed when the killer made its kills; nil without kills
	granted    atomic.Int64  // permits granted
	lostHeld   atomic.Int64  // permits that ended before their holder was done
	stays      atomic.Int64  // completed stays
}

// busy says whether a worker that completed done stays goes on: until
// contRounds, and in the kill run until the killer is done too, so that
// every kill hits a running system.
func (c *contention) busy(done int) bool {
	if done < contRounds {
		return true
	}
	if c.killerDone == nil {
		return false
	}
	select {
	case <-c.killerDone:
		return false
	default:
		return true
	}
}

func runContention(t *testing.T, kills bool) {
	cli := testutil.Client(t)
	ctx := testutil.Context(t, 2*time.Minute)
	prefix := testutil.Prefix(t)
	c := &contention{
		t: t, ctx: ctx, cli: cli, prefix: prefix, logDir: prefix + "-log/", kills: kills,
		sessions: map[int]*lockstep.Session{},
		holding:  map[int]*lockstep.Session{},
	}

	start, err := cli.Get(ctx, "\x00")
	if err != nil {
		t.Fatal(err)
	}
	deletes := collectDeletes(t, ctx, cli, prefix, start.Header.Revision+1)

	if kills {
		c.killerDone = make(chan struct{})
	}
	var wg sync.WaitGroup
	for w := range contWorkers {
		wg.Go(func() { c.worker(w) })
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	killCount := 0
	if kills {
		killCount = c.killSessions(workersDone)
		close(c.killerDone)
	}
	<-workersDone
	if t.Failed() {
		return
	}

	// Every key is gone now; a marker put and deleted after them tells the
	// delete collector it has seen everything.
	marker := prefix + "/~end"
	if _, err := cli.Put(ctx, marker, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, marker); err != nil {
		t.Fatal(err)
	}
	var deleted map[string]int64
	select {
	case deleted = <-deletes:
	case <-ctx.Done():
		t.Fatal("delete collector did not finish")
	}
	if ks := keysUnder(t, ctx, cli, prefix); len(ks) != 0 {
		t.Fatalf("keys left after the run: %v", ks)
	}

	maxHolders, stays := replay(t, ctx, cli, c.logDir, deleted)
	t.Logf("%d workers, limit %d: %d permits granted, %d completed stays, %d sessions killed, %d permits lost while held, at most %d holders at once",
		contWorkers, contLimit, c.granted.Load(), stays, killCount, c.lostHeld.Load(), maxHolders)
	if maxHolders > contLimit {
		t.Fatalf("history shows %d holders at once, limit %d", maxHolders, contLimit)
	}
	if stays != int(c.stays.Load()) || stays < contWorkers*contRounds {
		t.Fatalf("history shows %d completed stays, want the %d the workers completed (at least %d)", stays, c.stays.Load(), contWorkers*contRounds)
	}
	if kills && killCount < contKills {
		t.Fatalf("killed %d sessions, want %d", killCount, contKills)
	}
}

// worker acquires, records its entry, holds a moment, records its exit and
// releases, until it completed contRounds stays. A worker whose session
// was killed starts a new one.
func (c *contention) worker(w int) {
	t := c.t
	var s *lockstep.Session
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	var sem *semaphore.Semaphore
	for seq, done := 0, 0; c.busy(done); seq++ {
		if s == nil || s.Err() != nil {
			if s != nil {
				s.Close()
			}
			var err error
			if s, err = lockstep.NewSession(c.ctx, c.cli, lockstep.WithTTL(5*time.Second)); err != nil {
				t.Errorf("worker %d: new session: %v", w, err)
				return
			}
			if sem, err = semaphore.New(s, c.prefix, contLimit); err != nil {
				t.Errorf("worker %d: %v", w, err)
				return
			}
			c.mu.Lock()
			c.sessions[w] = s
			c.mu.Unlock()
		}
		actx, cancel := context.WithTimeout(c.ctx, acquireWait)
		p, err := sem.Acquire(actx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && c.ctx.Err() == nil:
			t.Errorf("worker %d: Acquire hung for %v", w, acquireWait)
			return
		case err != nil && c.kills && killed(err):
			// Our session was killed; it may not know yet.
			s.Close()
			continue
		case err != nil:
			t.Errorf("worker %d: Acquire: %v", w, err)
			return
		}
		c.granted.Add(1)
		c.mu.Lock()
		c.holding[w] = s
		c.mu.Unlock()

		stay := fmt.Sprintf("%02d-%03d", w, seq)
		entered := c.record(p, stay+"-enter")
		if entered {
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // hold it a while
		}
		if entered && c.record(p, stay+"-exit") {
			done++
			c.stays.Add(1)
		} else {
			if !c.kills {
				t.Errorf("worker %d: permit %s lost while held: %v", w, p.Key(), p.Err())
			}
			c.lostHeld.Add(1)
		}
		c.mu.Lock()
		delete(c.holding, w)
		c.mu.Unlock()
		if err := p.Release(c.ctx); err != nil && !(c.kills && killed(err)) {
			t.Errorf("worker %d: Release: %v", w, err)
		}
	}
}

// killed says whether err is what a worker sees when its session is
// revoked under it.
func killed(err error) bool {
	return errors.Is(err, lockstep.ErrSessionLost) || errors.Is(err, lockstep.ErrLost)
}

// record writes one history entry, guarded by the permit: it succeeds only
// while the permit is held. The value is the permit's key.
func (c *contention) record(p *semaphore.Permit, name string) bool {
	resp, err := c.cli.Txn(c.ctx).If(p.IsOwner()).Then(clientv3.OpPut(c.logDir+name, p.Key())).Commit()
	return err == nil && resp.Succeeded
}

// killSessions revokes leases from outside, as if the process had crashed
// and its lease expired: every other kill hits a holder, the others any
// worker. It stops after contKills kills or when the workers are done,
// and returns how many it made.
func (c *contention) killSessions(workersDone <-chan struct{}) int {
	n := 0
	for n < contKills {
		select {
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
		case <-workersDone:
			return n
		}
		c.mu.Lock()
		from := c.sessions
		if n%2 == 0 {
			from = c.holding
		}
		var victim *lockstep.Session
		for _, s := range from { // map order is random
			victim = s
			break
		}
		c.mu.Unlock()
		if victim == nil {
			continue
		}
		_, err := c.cli.Revoke(c.ctx, victim.Lease())
		switch {
		case err == nil:
			n++
		case !errors.Is(err, rpctypes.ErrLeaseNotFound):
			c.t.Errorf("revoke: %v", err)
			return n
		}
	}
	return n
}

// collectDeletes watches the semaphore's keys from rev and returns, once
// the marker key is deleted, the revision at which each key was deleted.
func collectDeletes(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, rev int64) <-chan map[string]int64 {
	t.Helper()
	out := make(chan map[string]int64, 1)
	wctx, cancel := context.WithCancel(ctx)
	wch := cli.Watch(wctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithFilterPut())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		deleted := map[string]int64{}
		for resp := range wch {
			for _, ev := range resp.Events {
				if ev.Type != mvccpb.DELETE {
					continue
				}
				k := string(ev.Kv.Key)
				if k == prefix+"/~end" {
					out <- deleted
					return
				}
				deleted[k] = ev.Kv.ModRevision
			}
		}
	}()
	return out
}

// replay orders the history by revision and returns the most holders it
// ever shows at once and the number of completed stays.
func replay(t *testing.T, ctx context.Context, cli *clientv3.Client, logDir string, deleted map[string]int64) (maxHolders, stays int) {
	t.Helper()
	resp, err := cli.Get(ctx, logDir, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		rev   int64
		delta int
		what  string
	}
	var evs []event
	exited := map[string]bool{} // "worker-round" that recorded an exit
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), logDir)
		if stay, ok := strings.CutSuffix(name, "-exit"); ok {
			exited[stay] = true
		}
	}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), logDir)
		permit := string(kv.Value)
		del, ok := deleted[permit]
		if !ok {
			t.Fatalf("%s: permit key %s was never deleted", name, permit)
		}
		if kv.CreateRevision >= del {
			t.Fatalf("%s recorded at revision %d, after its permit %s was deleted at %d", name, kv.CreateRevision, permit, del)
		}
		switch stay, isEnter := strings.CutSuffix(name, "-enter"); {
		case !isEnter:
			evs = append(evs, event{kv.CreateRevision, -1, name})
			stays++
		case exited[stay]:
			evs = append(evs, event{kv.CreateRevision, +1, name})
		default:
			// Killed while held: the stay ends when the lease took the key.
			evs = append(evs, event{kv.CreateRevision, +1, name}, event{del, -1, stay + "-killed"})
		}
	}
	slices.SortFunc(evs, func(a, b event) int {
		if a.rev != b.rev {
			return int(a.rev - b.rev)
		}
		return a.delta - b.delta // an end at a revision before a start at it
	})
	n := 0
	for _, e := range evs {
		n += e.delta
		if n > maxHolders {
			maxHolders = n
		}
		if n < 0 {
			t.Fatalf("history goes negative at %s (revision %d)", e.what, e.rev)
		}
	}
	return maxHolders, stays
}
