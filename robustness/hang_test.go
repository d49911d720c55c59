package robustness

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A worker has hung when it makes no progress:
//
//   - for hangHealthy while the cluster is healthy (a fault leaves it
//     unwell until settle after it healed: sessions lost during it end
//     within one TTL, and their keys are deleted within the server's next
//     expiry check, every 500 ms);
//   - for hangAfterHeal after the last fault healed, however unwell the
//     cluster was before: what a cut-off holder owned is free within its
//     lease's TTL (longTTL at most), and a waiter's own call ends within
//     opTimeout; every workload ends with a calm tail this long (runTime),
//     so each worker is held to it at least once;
//   - for hangWall, whatever happens.
const (
	hangHealthy   = 8 * time.Second
	hangAfterHeal = longTTL + opTimeout + 2*time.Second
	hangWall      = time.Minute
	settle        = sessionTTL + time.Second
)

// tracker is the last progress of one worker (or of a whole workload, for
// workers that may legitimately wait on each other, such as candidates).
type tracker struct {
	last    time.Duration
	stalled bool // reported for the current stall
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
	healed, active := e.lastHeal()
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	for name, tr := range e.progress {
		if tr.stalled {
			continue
		}
		healthy := e.healthy(tr.last, now, settle)
		sinceHeal := now - max(tr.last, healed)
		if healthy >= hangHealthy || (!active && sinceHeal >= hangAfterHeal) || now-tr.last >= hangWall {
			tr.stalled = true
			e.hangs = append(e.hangs, fmt.Sprintf("hang: %s made no progress from %v to %v (%v of it with a healthy cluster; %v since the last fault healed)",
				name, tr.last.Round(time.Millisecond), now.Round(time.Millisecond), healthy.Round(time.Millisecond), sinceHeal.Round(time.Millisecond)))
		}
	}
}

// lastHeal returns when the last fault the nemesis injected healed, and
// whether one is active now.
func (e *env) lastHeal() (healed time.Duration, active bool) {
	e.faultsMu.Lock()
	defer e.faultsMu.Unlock()
	for _, s := range e.unwell {
		switch {
		case s.kind == slowCluster:
		case s.to < 0:
			active = true
		default:
			healed = max(healed, s.to)
		}
	}
	return healed, active
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
