package discovery

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// BalancerName is the name lockstep's balancer is registered under.
const BalancerName = "lockstep_weighted_round_robin"

// WeightedRoundRobin is the service config that picks lockstep's
// balancer: smooth weighted round-robin by Instance.Weight, never a
// draining instance while a serving one is ready. Pass it to
// grpc.WithDefaultServiceConfig.
const WeightedRoundRobin = `{"loadBalancingConfig":[{"` + BalancerName + `":{}}]}`

// WeightedRoundRobinIn is WeightedRoundRobin that prefers the instances
// in zone: others get calls only while none in zone is ready and serving.
func WeightedRoundRobinIn(zone string) string {
	z, _ := json.Marshal(zone)
	return `{"loadBalancingConfig":[{"` + BalancerName + `":{"zone":` + string(z) + `}}]}`
}

func init() { balancer.Register(wrrBuilder{}) }

type lbConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	Zone                              string `json:"zone"`
}

type wrrBuilder struct{}

func (wrrBuilder) Name() string { return BalancerName }

func (wrrBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var c lbConfig
	if err := json.Unmarshal(js, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", BalancerName, err)
	}
	return &c, nil
}

func (wrrBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &wrrBalancer{cc: cc, subs: map[string]*subConn{}}
}

// wrrBalancer keeps one connection per address and builds a picker from
// the ready ones. gRPC calls it, and the connections' state listeners,
// one at a time.
type wrrBalancer struct {
	cc      balancer.ClientConn
	subs    map[string]*subConn // by address
	zone    string
	lastErr error // the resolver's or the last connection's error
}

type subConn struct {
	sc    balancer.SubConn
	in    Instance
	state connectivity.State
}

var errNoInstances = errors.New("no instances registered")

func (b *wrrBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if c, ok := s.BalancerConfig.(*lbConfig); ok {
		b.zone = c.Zone
	}
	eps := s.ResolverState.Endpoints
	if len(eps) == 0 { // a resolver that sends addresses only
		for _, addr := range s.ResolverState.Addresses {
			eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{addr}})
		}
	}
	seen := make(map[string]bool, len(eps))
	for _, ep := range eps {
		if len(ep.Addresses) == 0 {
			continue
		}
		addr := ep.Addresses[0]
		in, ok := InstanceOf(ep)
		if !ok { // another resolver's endpoint: a serving instance of weight 1
			in = Instance{Addr: addr.Addr, Status: Serving}
		}
		in.Addr = addr.Addr
		seen[addr.Addr] = true
		if sc, ok := b.subs[addr.Addr]; ok {
			sc.in = in
			continue
		}
		b.add(addr, in)
	}
	for a, sc := range b.subs {
		if !seen[a] {
			sc.sc.Shutdown()
			delete(b.subs, a)
		}
	}
	if len(b.subs) == 0 {
		b.lastErr = errNoInstances
		b.update()
		return balancer.ErrBadResolverState // gRPC asks the resolver again
	}
	b.update()
	return nil
}

func (b *wrrBalancer) add(addr resolver.Address, in Instance) {
	sc := &subConn{in: in, state: connectivity.Idle}
	var err error
	//lint:ignore SA1019 one address per SubConn, as the deprecation asks.
	sc.sc, err = b.cc.NewSubConn([]resolver.Address{addr}, balancer.NewSubConnOptions{
		StateListener: func(st balancer.SubConnState) { b.subConnState(sc, st) },
	})
	if err != nil {
		b.lastErr = err
		return
	}
	b.subs[addr.Addr] = sc
	sc.sc.Connect()
}

func (b *wrrBalancer) subConnState(sc *subConn, st balancer.SubConnState) {
	if b.subs[sc.in.Addr] != sc && st.ConnectivityState != connectivity.Shutdown {
		return // removed meanwhile
	}
	sc.state = st.ConnectivityState
	switch st.ConnectivityState {
	case connectivity.Idle:
		sc.sc.Connect() // keep every instance connected
	case connectivity.TransientFailure:
		b.lastErr = st.ConnectionError
	case connectivity.Shutdown:
		return
	}
	b.update()
}

func (b *wrrBalancer) ResolverError(err error) {
	b.lastErr = err
	if len(b.subs) == 0 {
		b.update()
	}
}

func (b *wrrBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {} // state listeners do it

func (b *wrrBalancer) ExitIdle() {
	for _, sc := range b.subs {
		if sc.state == connectivity.Idle {
			sc.sc.Connect()
		}
	}
}

func (b *wrrBalancer) Close() {
	for a, sc := range b.subs {
		sc.sc.Shutdown()
		delete(b.subs, a)
	}
}

// update gives gRPC a picker over the ready connections: serving ones (in
// the preferred zone, if any are ready there), else draining ones. With
// none ready, calls wait while a connection is being made; otherwise they
// fail with Unavailable, except those that wait for ready.
func (b *wrrBalancer) update() {
	var serving, inZone, draining []*subConn
	connecting := false
	for _, sc := range b.subs {
		switch {
		case sc.state == connectivity.Ready && sc.in.Status == Draining:
			draining = append(draining, sc)
		case sc.state == connectivity.Ready:
			serving = append(serving, sc)
			if b.zone != "" && sc.in.Zone == b.zone {
				inZone = append(inZone, sc)
			}
		case sc.state == connectivity.Idle || sc.state == connectivity.Connecting:
			connecting = true
		}
	}
	pick := serving
	switch {
	case len(inZone) > 0:
		pick = inZone
	case len(serving) == 0:
		pick = draining
	}
	switch {
	case len(pick) > 0:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: newPicker(pick)})
	case connecting:
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.Connecting, Picker: base{err: balancer.ErrNoSubConnAvailable}})
	default:
		err := b.lastErr
		if err == nil {
			err = errNoInstances
		}
		// A plain error, not a status: gRPC fails calls with Unavailable
		// at once, but holds those that wait for ready.
		b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure,
			Picker: base{err: fmt.Errorf("%s: %w", BalancerName, err)}})
	}
}

// base is a picker that fails every pick with err.
type base struct{ err error }

func (p base) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, p.err
}
