package robustness

import (
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep"
)

// holding is one ownership a worker was handed (a lock, a permit, a queue
// claim), with what the worker did and learned while it held it. Times are
// on the env's clock; zero means "did not happen".
type holding struct {
	worker int
	key    string
	token  int64
	lease  clientv3.LeaseID
	call   time.Duration // Lock, Acquire or Dequeue called
	ret    time.Duration // ... and returned it

	mu       sync.Mutex
	doneAt   time.Duration // the worker saw Done close
	doneErr  error
	relCall  time.Duration // Unlock, Release, Ack or Nack called
	relRet   time.Duration
	relErr   error
	wrote    int  // fenced writes accepted
	refused  int  // fenced writes refused
	released bool // the release call succeeded
}

func (h *holding) inc() incarnation { return incarnation{h.key, h.token} }

// watchEnd records when the worker sees o's Done close. The goroutine ends
// when ownership ends, at the latest when the worker closes the session.
func (e *env) watchEnd(h *holding, o lockstep.Ownership, wg *sync.WaitGroup) {
	wg.Go(func() {
		<-o.Done()
		at := e.now()
		h.mu.Lock()
		h.doneAt, h.doneErr = at, o.Err()
		h.mu.Unlock()
	})
}

// releasing records a call that gives the ownership up.
func (e *env) releasing(h *holding, f func() error) error {
	call := e.now()
	err := f()
	ret := e.now()
	e.op()
	h.mu.Lock()
	h.relCall, h.relRet, h.relErr, h.released = call, ret, err, err == nil
	h.mu.Unlock()
	return err
}

func (h *holding) fenced(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok {
		h.wrote++
	} else {
		h.refused++
	}
}

// learned is the earliest instant the holder knew, or had to assume, that
// its ownership was over: it gave it up, saw Done close, or (for an
// ownership the nemesis revoked) the revocation began. Before it, only
// this holder may act as owner; that is what lockstep promises, except
// after a revocation from outside, which no client can see coming.
func (h *holding) learned(revoked map[clientv3.LeaseID]time.Duration, end time.Duration) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := end
	for _, t := range []time.Duration{h.relCall, h.doneAt} {
		if t > 0 {
			at = min(at, t)
		}
	}
	if v, ok := revoked[h.lease]; ok {
		at = min(at, v)
	}
	return at
}

// ended is the latest instant by which the ownership had certainly ended:
// its release returned success, or the observer saw its key deleted.
func (h *holding) ended(gone map[incarnation]change, end time.Duration) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := end
	if h.released {
		at = min(at, h.relRet)
	}
	if c, ok := gone[h.inc()]; ok {
		at = min(at, c.seen)
	}
	return at
}

// holdings is a workload's list of holdings, and of the calls that
// failed to return one, filled by its workers.
type holdings struct {
	mu     sync.Mutex
	list   []*holding
	failed []attempt
}

// attempt is a call that was to return an ownership and failed.
type attempt struct {
	worker    int
	lease     clientv3.LeaseID
	call, ret time.Duration
	err       error
}

func (hs *holdings) fail(a attempt) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.failed = append(hs.failed, a)
}

func (hs *holdings) attempts() []attempt {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]attempt(nil), hs.failed...)
}

func (hs *holdings) add(h *holding) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.list = append(hs.list, h)
}

func (hs *holdings) all() []*holding {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]*holding(nil), hs.list...)
}

// revokedAt maps each lease the nemesis revoked to when the revocation
// began.
func (e *env) revokedAt() map[clientv3.LeaseID]time.Duration {
	out := map[clientv3.LeaseID]time.Duration{}
	for _, r := range e.revocations() {
		out[r.lease] = r.at
	}
	return out
}
