package testutil

import (
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

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
