package discovery

import (
	"log/slog"
	"time"
)

// minGuarded is the smallest service the drop guard protects: in a
// smaller one, losing most instances is an ordinary crash.
const minGuarded = 3

// dropGuard holds instances that vanish in a mass drop; see WithDropGuard.
// The zero dropGuard lets every change through.
type dropGuard struct {
	share  float64
	window time.Duration
	hold   time.Duration

	logger  *slog.Logger
	service string

	shown     map[string]Instance
	order     []Instance
	removed   []time.Time // removals let through within the window
	holdUntil time.Time   // non-zero while holding
}

func (g *dropGuard) init(list []Instance) {
	if g.share == 0 {
		return // off: nothing to remember
	}
	g.shown = byID(list)
	g.order = list
}

// apply takes the service's actual instances and returns what to report,
// and when to look again if a hold is to end (zero if none).
func (g *dropGuard) apply(actual []Instance, now time.Time) ([]Instance, time.Time) {
	if g.share == 0 {
		return actual, time.Time{}
	}
	cur := byID(actual)
	var missing []Instance
	for _, in := range g.order {
		if _, ok := cur[in.ID]; !ok {
			missing = append(missing, in)
		}
	}
	g.prune(now)
	base := len(g.shown) + len(g.removed)
	drop := len(missing) > 0 && base >= minGuarded &&
		float64(len(missing)+len(g.removed)) > g.share*float64(base)
	switch {
	case drop && g.holdUntil.IsZero():
		g.holdUntil = now.Add(g.hold)
		g.logger.Warn("discovery: mass drop held", "service", g.service, "vanished", len(missing),
			"of", len(g.shown), "hold", g.hold)
		fallthrough
	case drop && now.Before(g.holdUntil):
		out := append(append([]Instance(nil), actual...), missing...)
		sortByID(out)
		return out, g.holdUntil
	case !g.holdUntil.IsZero():
		g.logger.Warn("discovery: mass drop accepted", "service", g.service, "vanished", len(missing),
			"instances", len(actual))
		g.holdUntil = time.Time{}
	}
	for range missing {
		g.removed = append(g.removed, now)
	}
	g.shown, g.order = cur, actual
	return actual, time.Time{}
}

// prune forgets removals older than the window.
func (g *dropGuard) prune(now time.Time) {
	i := 0
	for i < len(g.removed) && now.Sub(g.removed[i]) > g.window {
		i++
	}
	g.removed = g.removed[i:]
}

func byID(list []Instance) map[string]Instance {
	m := make(map[string]Instance, len(list))
	for _, in := range list {
		m[in.ID] = in
	}
	return m
}
