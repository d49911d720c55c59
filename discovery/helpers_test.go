package discovery_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func ctxFor(t *testing.T) context.Context { return testutil.Context(t, time.Minute) }

// backend is a real gRPC server whose health Check answers with its name
// in the "backend" header, so a client can count who served each call.
type backend struct {
	healthpb.UnimplementedHealthServer
	name  string
	addr  string
	srv   *grpc.Server
	calls atomic.Int64
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: lis.Addr().String(), srv: grpc.NewServer()}
	healthpb.RegisterHealthServer(b.srv, b)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		b.srv.Stop()
		wg.Wait()
	})
	return b
}

func (b *backend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	b.calls.Add(1)
	grpc.SetHeader(ctx, metadata.Pairs("backend", b.name))
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// dial returns a client of service through lockstep's resolver and
// balancer, closed when the test ends.
func dial(t *testing.T, cli *clientv3.Client, prefix, service string, serviceConfig string, opts ...discovery.WatchOption) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient("lockstep:///"+service,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(discovery.NewResolver(cli, prefix, opts...)),
		grpc.WithDefaultServiceConfig(serviceConfig))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// call makes one call and returns the backend that served it.
func call(ctx context.Context, c healthpb.HealthClient) (string, error) {
	var md metadata.MD
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
	if err != nil {
		return "", err
	}
	if v := md.Get("backend"); len(v) == 1 {
		return v[0], nil
	}
	return "", nil
}

func register(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, in discovery.Instance, opts ...discovery.RegisterOption) *discovery.Registration {
	t.Helper()
	r, err := discovery.Register(ctx, cli, prefix, in, opts...)
	if err != nil {
		t.Fatalf("Register %s/%s: %v", in.Service, in.ID, err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func watch(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix, service string, opts ...discovery.WatchOption) *discovery.Watcher {
	t.Helper()
	w, err := discovery.Watch(ctx, cli, prefix, service, opts...)
	if err != nil {
		t.Fatalf("Watch %s: %v", service, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// await reads w's updates until ok accepts the list, failing the test if
// ctx ends first.
func await(t *testing.T, ctx context.Context, w *discovery.Watcher, what string, ok func([]discovery.Instance) bool) []discovery.Instance {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var last []discovery.Instance
	for list := range w.Updates(wctx) {
		if ok(list) {
			return list
		}
		last = list
	}
	t.Fatalf("%s: never came; last list %v", what, ids(last))
	return nil
}

func ids(list []discovery.Instance) []string {
	out := make([]string, len(list))
	for i, in := range list {
		out[i] = in.ID + "(" + string(in.Status) + ")"
	}
	return out
}

func find(list []discovery.Instance, id string) (discovery.Instance, bool) {
	for _, in := range list {
		if in.ID == id {
			return in, true
		}
	}
	return discovery.Instance{}, false
}

// client makes calls under the test's ctx.
type client struct {
	ctx context.Context
	c   healthpb.HealthClient
}

func (c client) callOnce() (string, error) { return call(c.ctx, c.c) }
