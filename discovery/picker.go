package discovery

import (
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/balancer"
)

// picker is smooth weighted round-robin (as nginx does it): every pick
// adds each instance's weight to its credit and takes the one with the
// most, which then pays the total. Over any run of total picks each
// instance gets exactly its weight, spread evenly rather than in bursts.
type picker struct {
	mu    sync.Mutex
	items []pickItem
	total int
}

type pickItem struct {
	sc     balancer.SubConn
	weight int
	credit int
}

func newPicker(ready []*subConn) *picker {
	// A stable order, so that equal credits always break the same way.
	slices.SortFunc(ready, func(a, b *subConn) int { return strings.Compare(a.in.Addr, b.in.Addr) })
	p := &picker{items: make([]pickItem, len(ready))}
	for i, sc := range ready {
		w := sc.in.EffectiveWeight()
		p.items[i] = pickItem{sc: sc.sc, weight: w}
		p.total += w
	}
	return p
}

func (p *picker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := 0
	for i := range p.items {
		it := &p.items[i]
		it.credit += it.weight
		if it.credit > p.items[best].credit {
			best = i
		}
	}
	p.items[best].credit -= p.total
	return balancer.PickResult{SubConn: p.items[best].sc}, nil
}
