package robustness

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The cluster's health, as the checks that judge timing need it: when
// faults were active, how far their effects can reach, and when a probe
// found the cluster slow for reasons of its own.

// span is when a fault was active, on the env's clock.
type span struct {
	kind     string
	from, to time.Duration // to < 0: still active
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
// was active, nor had one healed less than after before. A member fault
// reaches further: a request it caught may be held for memberFaultReach.
func (e *env) healthy(from, to, after time.Duration) time.Duration {
	e.faultsMu.Lock()
	spans := slices.Clone(e.unwell)
	e.faultsMu.Unlock()
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	d := to - from
	covered := from
	for _, s := range spans {
		end := s.to + after
		switch {
		case s.to < 0:
			end = to
		case memberFault(s.kind):
			end = max(end, s.from+memberFaultReach+after)
		}
		lo, hi := max(s.from, covered), min(end, to)
		if hi > lo {
			d -= hi - lo
			covered = hi
		}
	}
	return d
}

// slowCluster is the kind of span the probe records.
const slowCluster = "slow cluster"

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
				e.unwell = append(e.unwell, span{slowCluster, from, to})
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
