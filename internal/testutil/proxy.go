package testutil

import (
	"context"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/lockstep-go/lockstep/internal/faultproxy"
)

// ProxiedConfig returns a client config for the shared server whose
// traffic goes through a new fault proxy, so that a test can break the
// network of one client. The proxy is closed when the test ends, after
// the clients made from the config later.
func ProxiedConfig(t testing.TB) (clientv3.Config, *faultproxy.Proxy) {
	t.Helper()
	srv := Server(t)
	p, err := faultproxy.New("127.0.0.1:0", strings.TrimPrefix(srv.Endpoints()[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := srv.ClientConfig()
	cfg.Endpoints = []string{"http://" + p.Addr()}
	return cfg, p
}

// CutAtFirstWatch returns a client of the shared server whose network
// silently fails (a blackhole) the moment it opens its first watch stream:
// its watches are never created, and nothing it sends after that arrives.
// clientv3's Watch waits for the server to create the watch, so this is how
// a test puts a caller inside Watch when etcd goes away.
func CutAtFirstWatch(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg, p := ProxiedConfig(t)
	var once sync.Once
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithStreamInterceptor(
		func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if method == "/etcdserverpb.Watch/Watch" {
				once.Do(p.Blackhole)
			}
			return streamer(ctx, desc, cc, method, opts...)
		}))
	return ClientWith(t, cfg)
}
