package robustness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// span is when a fault was active, on the env's clock.
type span struct {
	kind     string
	from, to time.Duration // to < 0: still active
}

// tracker is the last progress of one worker (or of a whole workload, for
// workers that may legitimately wait on each other, such as candidates).
type tracker struct {
	last    time.Duration
	stalled bool // reported for the current stall
}

// faultBegins marks a fault active from now until faultEnds.
func (e *env) faultBegins(kind string) int {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	e.unwell = append(e.unwell, span{kind, e.now(), -1})
	return len(e.unwell) - 1
}

func (e *env) faultEnds(i int) {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	e.unwell[i].to = e.now()
}

// memberFaultReach is how long a member fault can hold up a request sent
// just before it: a member that loses its leader (its own crash, a
// partition, the leader's crash) keeps a proposal until the server's
// request timeout, 5 s plus two election timeouts.
const memberFaultReach = 7 * time.Second

// healthy returns how much of [from, to] no fault made unwell: no fault
// was active, nor had one healed less than settle before. A member fault
// reaches further: a request it caught may be held for memberFaultReach.
func (e *env) healthy(from, to, settle time.Duration) time.Duration {
	e.faultsMu.Lock()
	spans := slices.Clone(e.unwell)
	e.faultsMu.Unlock()
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	d := to - from
	covered := from
	for _, s := range spans {
		end := s.to + settle
		switch {
		case s.to < 0:
			end = to
		case memberFault(s.kind):
			end = max(end, s.from+memberFaultReach+settle)
		}
		lo, hi := max(s.from, covered), min(end, to)
		if hi > lo {
			d -= hi - lo
			covered = hi
		}
	}
	return d
}

func memberFault(kind string) bool {
	return kind == "stop-leader" || kind == "stop-follower" || kind == "partition-member"
}

// probe marks the cluster unwell whenever a write through the unfaulted
// observer is slow or fails, whatever the cause: a fault's aftermath (an
// election that outlasts the fault), or the cluster's own trouble on a
// loaded machine (elections when heartbeats are late). It runs until stop
// is called.
func (e *env) probe() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			from := e.now()
			_, err := e.observer.Put(pctx, "/robust-probe", "")
			to := e.now()
			pcancel()
			if (err != nil && ctx.Err() == nil) || to-from > slowWrite {
				e.faultsMu.Lock()
				e.unwell = append(e.unwell, span{"slow cluster", from, to})
				e.faultsMu.Unlock()
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// slowWrite is a write that took long enough to say the cluster is not
// healthy: a commit takes milliseconds here.
const slowWrite = 250 * time.Millisecond

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

// watchdog reports hangs until stop is called; it probes the cluster's
// health meanwhile.
func (e *env) watchdog() (stop func()) {
	stopProbe := e.probe()
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
		stopProbe()
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
		healthy := e.healthy(tr.last, now, settle)
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

// stalled reports a call that ran out of its own time (opTimeout) although the cluster was
// healthy from its start to its end: for a call that should finish in
// milliseconds on a healthy cluster (a handoff among a few workers with
// short holds), using up its whole timeout is a hang that happened to end.
func (e *env) stalled(what string, call, ret time.Duration, err error) {
	if !errors.Is(err, context.DeadlineExceeded) || ret-call < opTimeout || e.healthy(call, ret, settle) < ret-call {
		return
	}
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	e.hangs = append(e.hangs, fmt.Sprintf("stall: %s called at %v ran out of time after %v, with a healthy cluster throughout: %v",
		what, call.Round(time.Millisecond), (ret-call).Round(time.Millisecond), err))
}

// faultsIn describes the faults active in [from, to], for a report.
func (e *env) faultsIn(from, to time.Duration) string {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	var parts []string
	for _, s := range e.unwell {
		if s.kind == "slow cluster" {
			continue
		}
		if s.from <= to && (s.to < 0 || s.to >= from) {
			parts = append(parts, fmt.Sprintf("%s %v–%v", s.kind, s.from.Round(time.Millisecond), s.to.Round(time.Millisecond)))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
