package discovery_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lockstep-go/lockstep/discovery"
	"github.com/lockstep-go/lockstep/embedded"
)

// A gRPC server registers itself; a client dials it by service name, and
// sees it drain.
func Example() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		log.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(server, hs)
	go server.Serve(lis)
	defer server.Stop()

	reg, err := discovery.Register(ctx, cli, "/services", discovery.Instance{
		Service: "greeter", ID: "node-a", Addr: lis.Addr().String(), Weight: 10},
		discovery.WithHealth(hs), discovery.WithGrace(0))
	if err != nil {
		log.Fatal(err)
	}

	conn, err := grpc.NewClient("lockstep:///greeter",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(discovery.NewResolver(cli, "/services")),
		grpc.WithDefaultServiceConfig(discovery.WeightedRoundRobin))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("health:", resp.Status)

	w, err := discovery.Watch(ctx, cli, "/services", "greeter")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if err := reg.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	for list := range w.Updates(ctx) {
		if len(list) == 1 && list[0].Status == discovery.Draining {
			fmt.Println(list[0].ID, list[0].Status, "weight", list[0].Weight)
			break
		}
	}
	if err := reg.Close(ctx); err != nil {
		log.Fatal(err)
	}
	for list := range w.Updates(ctx) {
		if len(list) == 0 {
			fmt.Println("instances after Close:", len(list))
			break
		}
	}
	// Output:
	// health: SERVING
	// node-a draining weight 10
	// instances after Close: 0
}
