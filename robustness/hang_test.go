package robustness

import (
	"context"
	"fmt"
	"time"
)

// A worker that makes no progress for hangHealthy while the cluster is
// healthy, or for hangWall whatever happens, has hung. A fault leaves the
// cluster unwell until settle after it healed: sessions lost during it end
// within one TTL, and their keys are deleted within the server's next
// expiry check (every 500 ms).
const (
	hangHealthy = 8 * time.Second
	hangWall    = time.Minute
	settle      = sessionTTL + time.Second
)

// span is an interval of the env's clock.
type span struct{ from, to time.Duration }

// tracker is the last progress of one worker (or of a whole workload, for
// workers that may legitimately wait on each other, such as candidates).
type tracker struct {
	last    time.Duration
	stalled bool // reported for the current stall
}

// faultBegins marks the cluster unwell from now until faultEnds plus
// settle.
func (e *env) faultBegins() int {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	e.unwell = append(e.unwell, span{e.now(), -1})
	return len(e.unwell) - 1
}

func (e *env) faultEnds(i int) {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	e.unwell[i].to = e.now() + settle
}

// healthy returns how much of [from, to] no fault made unwell.
func (e *env) healthy(from, to time.Duration) time.Duration {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	d := to - from
	covered := from
	for _, s := range e.unwell { // in order of start
		end := s.to
		if end < 0 {
			end = to
		}
		lo, hi := max(s.from, covered), min(end, to)
		if hi > lo {
			d -= hi - lo
			covered = hi
		}
	}
	return d
}

// track starts watching name for progress.
func (e *env) track(name string) {
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	e.progress[name] = &tracker{last: e.now()}
}

// progressed records that name made progress.
func (e *env) progressed(name string) {
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	if tr := e.progress[name]; tr != nil {
		tr.last, tr.stalled = e.now(), false
	}
}

// untrack stops watching name: it has finished.
func (e *env) untrack(name string) {
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	delete(e.progress, name)
}

// watchdog reports hangs until stop is called.
func (e *env) watchdog() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			e.checkHangs()
		}
	}()
	return func() {
		cancel()
		<-done
		e.checkHangs()
	}
}

func (e *env) checkHangs() {
	now := e.now()
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	for name, tr := range e.progress {
		if tr.stalled {
			continue
		}
		healthy := e.healthy(tr.last, now)
		if healthy >= hangHealthy || now-tr.last >= hangWall {
			tr.stalled = true
			e.hangs = append(e.hangs, fmt.Sprintf("hang: %s made no progress from %v to %v (%v of it with a healthy cluster)",
				name, tr.last.Round(time.Millisecond), now.Round(time.Millisecond), healthy.Round(time.Millisecond)))
		}
	}
}

// hangReports returns the hangs found so far.
func (e *env) hangReports() []string {
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	return append([]string(nil), e.hangs...)
}
