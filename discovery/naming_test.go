package discovery_test

import (
	"testing"

	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// Instances that etcd's endpoints.Manager registers, with metadata or
// without, are lockstep instances of weight 1, and lockstep's balancer
// routes to them.
func TestResolvesEtcdManagerEndpoints(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	em, err := endpoints.NewManager(cli, prefix+"/svc")
	if err != nil {
		t.Fatal(err)
	}
	plain, tagged := startBackend(t, "plain"), startBackend(t, "tagged")
	if err := em.AddEndpoint(ctx, prefix+"/svc/plain", endpoints.Endpoint{Addr: plain.addr}); err != nil {
		t.Fatal(err)
	}
	if err := em.AddEndpoint(ctx, prefix+"/svc/tagged", endpoints.Endpoint{Addr: tagged.addr,
		Metadata: map[string]any{"weight": 7, "region": "eu"}}); err != nil {
		t.Fatal(err)
	}
	list := await(t, ctx, watch(t, ctx, cli, prefix, "svc"), "both endpoints", func(l []discovery.Instance) bool { return len(l) == 2 })
	for _, in := range list {
		if in.Addr == "" || in.EffectiveWeight() != 1 || in.Status != discovery.Serving {
			t.Fatalf("etcd's endpoint read as %+v, want serving with weight 1", in)
		}
	}
	c := client{ctx, dial(t, cli, prefix, "svc", discovery.WeightedRoundRobin)}
	warm(t, ctx, c, "plain", "tagged")
}

// etcd's endpoints.Manager lists lockstep's instances, and etcd's own
// resolver dials them.
func TestEtcdNamingReadsLockstepInstances(t *testing.T) {
	ctx := ctxFor(t)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t)
	b := startBackend(t, "b")
	r := register(t, ctx, cli, prefix, discovery.Instance{Service: "svc", ID: "b", Addr: b.addr, Weight: 4})
	em, err := endpoints.NewManager(cli, prefix+"/svc")
	if err != nil {
		t.Fatal(err)
	}
	got, err := em.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep, ok := got[r.Key()]
	if len(got) != 1 || !ok || ep.Addr != b.addr {
		t.Fatalf("endpoints.Manager.List: %+v, want %s at %s", got, r.Key(), b.addr)
	}
	if md, _ := ep.Metadata.(map[string]any); md["id"] != "b" || md["weight"] != 4.0 {
		t.Fatalf("metadata as etcd reads it: %#v", ep.Metadata)
	}
	rb, err := etcdresolver.NewBuilder(cli)
	if err != nil {
		t.Fatal(err)
	}
	// etcd's resolver drops one leading '/' of the target's path.
	conn, err := grpc.NewClient("etcd:///"+prefix+"/svc", grpc.WithResolvers(rb),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if name, err := call(ctx, healthpb.NewHealthClient(conn)); err != nil || name != "b" {
		t.Fatalf("call through etcd's resolver: %q %v", name, err)
	}
}
