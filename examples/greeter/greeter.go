package main

import (
	"context"
	"net"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"

	"github.com/lockstep-go/lockstep/discovery"
)

// backend is one greeter process: a gRPC server, its own etcd client and
// its registration. The greeter is gRPC's health service answering with
// the backend's name in the "backend" header: enough for the client to
// count who served each call, with no generated code.
type backend struct {
	healthpb.UnimplementedHealthServer
	name   string
	weight int
	addr   string
	srv    *grpc.Server
	serve  sync.WaitGroup
	cli    *clientv3.Client
	reg    *discovery.Registration
}

func startBackend(ctx context.Context, newClient func() (*clientv3.Client, error), prefix, name string, weight int, opts ...discovery.RegisterOption) (*backend, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &backend{name: name, weight: weight, addr: lis.Addr().String(), srv: grpc.NewServer()}
	healthpb.RegisterHealthServer(b.srv, b)
	b.serve.Go(func() { b.srv.Serve(lis) })
	if b.cli, err = newClient(); err == nil {
		b.reg, err = discovery.Register(ctx, b.cli, prefix, discovery.Instance{
			Service: "greeter", ID: name, Addr: b.addr, Weight: weight}, opts...)
	}
	if err != nil {
		b.srv.Stop()
		b.serve.Wait()
		return nil, err
	}
	return b, nil
}

func (b *backend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	grpc.SetHeader(ctx, metadata.Pairs("backend", b.name))
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// crash ends the backend as a killed process ends: its connections break,
// the calls it has in flight fail, and nothing renews its lease, so its
// registration stays listed until the lease expires.
func (b *backend) crash(ctx context.Context) error {
	b.srv.Stop()
	b.cli.Close()
	// A dead process takes its Registration with it; this one lives on in
	// the program, so release it once it has seen its client go. Close
	// has nothing to drain then, and cannot revoke the lease through a
	// closed client: etcd keeps the key until the TTL runs out.
	for {
		if registered, _ := b.reg.Registered(); !registered {
			return b.reg.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop is the orderly way out: Close drains the instance, waits the grace
// period for clients to route elsewhere and deletes it; then the server
// finishes the calls it has and stops. It is idempotent.
func (b *backend) stop(ctx context.Context) error {
	err := b.reg.Close(ctx)
	b.srv.GracefulStop()
	b.serve.Wait()
	return err
}

// call is one call of the load: when it started and ended, the backend
// it went to (the one that answered, or the one it was sent to if it
// failed; "" if it was sent nowhere) and its error.
type call struct {
	start, end time.Time
	backend    string
	err        error
}

// load calls the greeter from a few goroutines, one call after another
// with a short pause, and records every call.
type load struct {
	client healthpb.HealthClient
	byAddr map[string]string // backend names by address

	mu    sync.Mutex
	calls []call

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(ctx context.Context, conn *grpc.ClientConn, backends []*backend, workers int) *load {
	l := &load{client: healthpb.NewHealthClient(conn), byAddr: map[string]string{}}
	for _, b := range backends {
		l.byAddr[b.addr] = b.name
	}
	ctx, l.cancel = context.WithCancel(ctx)
	for range workers {
		l.wg.Go(func() { l.run(ctx) })
	}
	return l
}

func (l *load) run(ctx context.Context) {
	for ctx.Err() == nil {
		c := l.callOnce(ctx)
		if ctx.Err() != nil {
			return // cut short by stop: not the greeter's failure
		}
		l.mu.Lock()
		l.calls = append(l.calls, c)
		l.mu.Unlock()
		time.Sleep(time.Millisecond) // leave the CPU to etcd and the servers
	}
}

func (l *load) callOnce(ctx context.Context) call {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var (
		header metadata.MD
		p      peer.Peer
	)
	c := call{start: time.Now()}
	_, c.err = l.client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Peer(&p))
	c.end = time.Now()
	switch v := header.Get("backend"); {
	case c.err == nil && len(v) == 1:
		c.backend = v[0]
	case p.Addr != nil:
		c.backend = l.byAddr[p.Addr.String()]
	}
	return c
}

// stop stops the calls and waits for the goroutines. It is idempotent.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// since returns the calls that started in [from, to); a zero to means
// no end.
func (l *load) since(from, to time.Time) []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []call
	for _, c := range l.calls {
		if !c.start.Before(from) && (to.IsZero() || c.start.Before(to)) {
			out = append(out, c)
		}
	}
	return out
}

// wait returns the calls started since from once ok accepts them.
func (l *load) wait(ctx context.Context, from time.Time, ok func([]call) bool) ([]call, error) {
	for {
		if calls := l.since(from, time.Time{}); ok(calls) {
			return calls, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// routing records each list of instances that the client's balancer has
// taken, and when. It wraps lockstep's resolver: gRPC returns from the
// resolver's UpdateState once the balancer has handled the list, and
// lockstep's balancer builds its picker then, so a call that starts later
// is routed by that list or a newer one.
type routing struct {
	mu    sync.Mutex
	taken []taken
}

type taken struct {
	at   time.Time
	list []discovery.Instance
}

// wrap returns b, reporting to r.
func (r *routing) wrap(b resolver.Builder) resolver.Builder { return routingBuilder{b, r} }

type routingBuilder struct {
	resolver.Builder
	r *routing
}

func (b routingBuilder) Build(t resolver.Target, cc resolver.ClientConn, o resolver.BuildOptions) (resolver.Resolver, error) {
	return b.Builder.Build(t, routingConn{cc, b.r}, o)
}

type routingConn struct {
	resolver.ClientConn
	r *routing
}

func (c routingConn) UpdateState(s resolver.State) error {
	err := c.ClientConn.UpdateState(s)
	t := taken{at: time.Now()}
	for _, ep := range s.Endpoints {
		if in, ok := discovery.InstanceOf(ep); ok {
			t.list = append(t.list, in)
		}
	}
	c.r.mu.Lock()
	c.r.taken = append(c.r.taken, t)
	c.r.mu.Unlock()
	return err
}

// wait returns when the balancer first took, since from, a list that ok
// accepts.
func (r *routing) wait(ctx context.Context, from time.Time, ok func([]discovery.Instance) bool) (time.Time, error) {
	for {
		r.mu.Lock()
		for _, t := range r.taken {
			if !t.at.Before(from) && ok(t.list) {
				r.mu.Unlock()
				return t.at, nil
			}
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// find returns the instance with id in list.
func find(list []discovery.Instance, id string) (discovery.Instance, bool) {
	for _, in := range list {
		if in.ID == id {
			return in, true
		}
	}
	return discovery.Instance{}, false
}
