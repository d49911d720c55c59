package discovery

import (
	"context"
	"fmt"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/retry"
	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Scheme is the URL scheme of lockstep's resolver: lockstep:///<service>.
const Scheme = "lockstep"

// NewResolver returns a gRPC resolver builder for targets
// lockstep:///<service>, reading the service's instances under prefix
// through Watch (so one etcd watch serves every target of the prefix in
// the process). Each endpoint carries its Instance (see InstanceOf). A
// service with no instances gives gRPC an empty list at once, so calls
// fail fast with Unavailable; etcd out of reach is reported to gRPC the
// same way while the resolver keeps trying. Bad arguments are reported
// by the builder's Build, before any I/O.
func NewResolver(cli *clientv3.Client, prefix string, opts ...WatchOption) resolver.Builder {
	return &builder{cli: cli, prefix: prefix, opts: opts}
}

type builder struct {
	cli    *clientv3.Client
	prefix string
	opts   []WatchOption
}

func (b *builder) Scheme() string { return Scheme }

func (b *builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	if b.cli == nil {
		return nil, lockstep.ErrNilClient
	}
	if _, err := dirOf(b.prefix); err != nil {
		return nil, err
	}
	service := strings.TrimPrefix(target.Endpoint(), "/")
	if err := validService(service); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &serviceResolver{b: b, service: service, cc: cc, now: make(chan struct{}, 1), stop: stop}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.run(ctx)
	}()
	return r, nil
}

type serviceResolver struct {
	b       *builder
	service string
	cc      resolver.ClientConn
	now     chan struct{} // ResolveNow asked
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// ResolveNow reads the service's revision from etcd and sends the
// instances once the watch has caught up with it.
func (r *serviceResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

func (r *serviceResolver) Close() {
	r.stop()
	r.wg.Wait()
}

// run follows the service until Close, opening the watch again whenever
// it cannot go on.
func (r *serviceResolver) run(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if r.b.cli.Ctx().Err() != nil {
			r.cc.ReportError(fmt.Errorf("discovery: resolve %s: %w", r.service, rpc.ErrClientClosed))
			return
		}
		octx, cancel := context.WithTimeout(ctx, retry.CleanupTimeout)
		w, err := Watch(octx, r.b.cli, r.b.prefix, r.service, r.b.opts...)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.cc.ReportError(fmt.Errorf("discovery: resolve %s: %w", r.service, err))
				retry.Pause(ctx, reregister.Delay(attempt), nil)
			}
			continue
		}
		attempt = 0
		r.follow(ctx, w)
		w.Close()
	}
}

// follow sends each list of instances to gRPC until ctx ends or the
// watcher stops.
func (r *serviceResolver) follow(ctx context.Context, w *Watcher) {
	ups := w.Updates(ctx)
	for {
		select {
		case list, ok := <-ups:
			if !ok {
				if err := w.Err(); err != nil && ctx.Err() == nil {
					r.cc.ReportError(err)
				}
				return
			}
			r.send(list)
		case <-r.now:
			r.reread(ctx, w)
		case <-ctx.Done():
			return
		}
	}
}

// reread is ResolveNow's work: it waits for the watch to reach the
// revision etcd is at now, and sends what it holds then.
func (r *serviceResolver) reread(ctx context.Context, w *Watcher) {
	rctx, cancel := context.WithTimeout(ctx, retry.CleanupTimeout)
	defer cancel()
	resp, err := r.b.cli.Get(rctx, w.dir+r.service+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err == nil {
		err = w.WaitRevision(rctx, resp.Header.Revision)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.cc.ReportError(fmt.Errorf("discovery: resolve %s: %w", r.service, err))
		}
		return
	}
	r.send(w.Instances())
}

func (r *serviceResolver) send(list []Instance) {
	st := resolver.State{Endpoints: make([]resolver.Endpoint, 0, len(list))}
	for _, in := range list {
		st.Endpoints = append(st.Endpoints, endpointOf(in))
	}
	r.cc.UpdateState(st)
}
