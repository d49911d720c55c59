package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/testutil"
	"github.com/lockstep-go/lockstep/mutex"
)

// write is one increment etcd accepted.
type write struct {
	token, rev int64
	lease      clientv3.LeaseID
}

// contention runs workers that each make perIncrements accepted increments
// of a counter, read and written under the mutex with a transaction guarded
// by IsOwner. With kill set, sessions are revoked from outside at random;
// a worker whose session died starts a new one and carries on.
type contention struct {
	t        *testing.T
	cli      *clientv3.Client
	prefix   string
	counter  string
	workers  int
	perInc   int
	kill     bool
	mu       sync.Mutex
	writes   []write
	rejected int                        // guarded writes refused: the writer had lost the lock
	live     map[int]*lockstep.Session  // each worker's current session
	holding  map[int]bool               // whether each worker holds the lock
	killedAt map[bool]int               // revokes while the worker held (true) or not
	revoked  map[clientv3.LeaseID]int64 // lease -> revision of its revoke
	sessions int
}

func newContention(t *testing.T, kill bool) *contention {
	prefix := testutil.Prefix(t)
	return &contention{
		t: t, cli: testutil.Client(t), prefix: prefix, counter: prefix + "-counter",
		workers: 8, perInc: 100, kill: kill,
		live: map[int]*lockstep.Session{}, revoked: map[clientv3.LeaseID]int64{},
		holding: map[int]bool{}, killedAt: map[bool]int{},
	}
}

func (c *contention) run(ctx context.Context) {
	t := c.t
	errs := make(chan error, c.workers)
	var wg sync.WaitGroup
	for w := range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.worker(ctx, w)
		}()
	}
	stopKiller := make(chan struct{})
	killerDone := make(chan int)
	go func() { killerDone <- c.killer(ctx, stopKiller) }()
	wg.Wait()
	close(stopKiller)
	kills := <-killerDone
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.check(ctx)
	t.Logf("%d increments, %d refused guarded writes, %d sessions revoked (%d holding, %d not holding), %d sessions used",
		len(c.writes), c.rejected, kills, c.killedAt[true], c.killedAt[false], c.sessions)
}

// worker makes perInc accepted increments. Any failure other than a lost
// lock or session is returned; a lost one means a new session.
func (c *contention) worker(ctx context.Context, w int) error {
	var s *lockstep.Session
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	for done, attempt := 0, 0; done < c.perInc; {
		if s == nil || s.Err() != nil {
			if s != nil {
				s.Close()
			}
			var err error
			if s, err = lockstep.NewSession(ctx, c.cli, lockstep.WithTTL(5*time.Second)); err != nil {
				return fmt.Errorf("worker %d: session: %w", w, err)
			}
			c.mu.Lock()
			c.live[w] = s
			c.sessions++
			c.mu.Unlock()
		}
		m, err := mutex.New(s, c.prefix)
		if err != nil {
			s = nil
			continue
		}
		l, err := m.Lock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("worker %d: Lock hung: %w", w, err)
			}
			if !c.kill {
				return fmt.Errorf("worker %d: Lock: %w", w, err)
			}
			// Most likely the session was revoked; a revoked lease also
			// makes the next Lock fail.
			s.Close()
			s = nil
			if err := retry.Sleep(ctx, min(attempt, 3)); err != nil {
				return err
			}
			attempt++
			continue
		}
		attempt = 0
		c.setHolding(w, true)
		ok, err := c.increment(ctx, l)
		if err != nil {
			return fmt.Errorf("worker %d: %w", w, err)
		}
		if ok {
			done++
		}
		err = l.Unlock(ctx)
		c.setHolding(w, false)
		if err != nil {
			if !c.kill || !(errors.Is(err, lockstep.ErrSessionLost) || errors.Is(err, lockstep.ErrLost)) {
				return fmt.Errorf("worker %d: Unlock: %w", w, err)
			}
			s.Close()
			s = nil
		}
	}
	return nil
}

func (c *contention) setHolding(w int, held bool) {
	c.mu.Lock()
	c.holding[w] = held
	c.mu.Unlock()
}

// increment reads the counter and writes it plus one, guarded by IsOwner.
func (c *contention) increment(ctx context.Context, l *mutex.Lock) (bool, error) {
	get, err := c.cli.Get(ctx, c.counter)
	if err != nil {
		return false, err
	}
	n := 0
	if len(get.Kvs) == 1 {
		n, _ = strconv.Atoi(string(get.Kvs[0].Value))
	}
	if c.kill && rand.N(4) == 0 {
		// Hold a little longer so that kills land on holders too.
		time.Sleep(time.Duration(rand.N(2000)) * time.Microsecond)
	}
	resp, err := c.cli.Txn(ctx).If(l.IsOwner()).Then(clientv3.OpPut(c.counter, strconv.Itoa(n+1))).Commit()
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !resp.Succeeded {
		c.rejected++
		return false, nil
	}
	c.writes = append(c.writes, write{token: l.Token(), rev: resp.Header.Revision, lease: l.Session().Lease()})
	return true, nil
}

// killer revokes a random worker's session every few milliseconds until
// stopped, and returns how many it revoked.
func (c *contention) killer(ctx context.Context, stop <-chan struct{}) int {
	if !c.kill {
		<-stop
		return 0
	}
	kills := 0
	for {
		t := time.NewTimer(time.Duration(5+rand.N(25)) * time.Millisecond)
		select {
		case <-stop:
			t.Stop()
			return kills
		case <-ctx.Done():
			t.Stop()
			return kills
		case <-t.C:
		}
		w := rand.N(c.workers)
		c.mu.Lock()
		s, held := c.live[w], c.holding[w]
		c.mu.Unlock()
		if s == nil {
			continue
		}
		resp, err := c.cli.Revoke(ctx, s.Lease())
		if err != nil {
			continue // already revoked, or closed by its worker
		}
		c.mu.Lock()
		c.revoked[s.Lease()] = resp.Header.Revision
		c.killedAt[held]++
		c.mu.Unlock()
		kills++
	}
}

func (c *contention) check(ctx context.Context) {
	t := c.t
	want := c.workers * c.perInc
	if len(c.writes) != want {
		t.Fatalf("accepted increments: got %d, want %d", len(c.writes), want)
	}
	get, err := c.cli.Get(ctx, c.counter)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(get.Kvs[0].Value); got != strconv.Itoa(want) {
		t.Fatalf("counter: got %s, want %d (an increment was lost: two holders at once)", got, want)
	}
	slices.SortFunc(c.writes, func(a, b write) int { return int(a.rev - b.rev) })
	for i := 1; i < len(c.writes); i++ {
		if prev, cur := c.writes[i-1], c.writes[i]; cur.token < prev.token {
			t.Fatalf("write at revision %d has token %d, lower than %d at revision %d", cur.rev, cur.token, prev.token, prev.rev)
		}
	}
	for _, w := range c.writes {
		if r, ok := c.revoked[w.lease]; ok && w.rev > r {
			t.Fatalf("write at revision %d accepted from lease %x revoked at revision %d", w.rev, int64(w.lease), r)
		}
	}
}

func TestContention(t *testing.T) {
	c := newContention(t, false)
	c.run(testutil.Context(t, 2*time.Minute))
}

func TestContentionWithKills(t *testing.T) {
	c := newContention(t, true)
	c.run(testutil.Context(t, 2*time.Minute))
	if c.killedAt[true] == 0 || c.killedAt[false] == 0 {
		t.Fatalf("revokes: %d of holders, %d of others; want some of each", c.killedAt[true], c.killedAt[false])
	}
}
