package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstep-go/lockstep"
)

// envEndpoints is read when --endpoints is not given.
const envEndpoints = "LOCKSTEP_ENDPOINTS"

const defaultEndpoints = "http://127.0.0.1:2379"

// connFlags are the flags every command that talks to etcd shares.
type connFlags struct {
	endpoints   string
	dialTimeout time.Duration
	ttl         time.Duration
	secure      secureFlags
}

// register adds --endpoints, --dial-timeout and the TLS and
// authentication flags.
func (c *connFlags) register(f *cmdFlags) {
	f.StringVar(&c.endpoints, "endpoints", "", "comma-separated etcd client URLs (default $"+envEndpoints+", else $ETCDCTL_ENDPOINTS, else "+defaultEndpoints+")")
	f.DurationVar(&c.dialTimeout, "dial-timeout", 5*time.Second, "give up connecting to etcd after this long")
	c.secure.register(f)
}

// registerSession adds the connection flags and --ttl, for commands that
// hold something through a session.
func (c *connFlags) registerSession(f *cmdFlags) {
	c.register(f)
	f.DurationVar(&c.ttl, "ttl", lockstep.DefaultTTL, "session TTL, whole seconds, at least 2s: what this process holds is released this long after it dies")
}

func (c *connFlags) endpointList() []string {
	raw := fromEnv(c.endpoints, "ENDPOINTS")
	if raw == "" {
		raw = defaultEndpoints
	}
	var eps []string
	for _, ep := range strings.Split(raw, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	return eps
}

// client connects to etcd and checks that it answers, so that a wrong
// endpoint is an error now rather than a hang later. When every endpoint
// refuses the connection or names a host that does not resolve, it says so
// at once instead of waiting out --dial-timeout.
func (c *connFlags) client(ctx context.Context) (*clientv3.Client, error) {
	eps := c.endpointList()
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: c.dialTimeout,
		Logger:      zap.NewNop(),
	}
	if err := c.secure.apply(&cfg); err != nil {
		return nil, err
	}
	if err := c.reach(ctx, cfg); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("log in to etcd at %v: %w", eps, err)
	}
	return cli, nil
}

// reach checks that etcd answers a client of cfg without its credentials
// (a client with credentials logs in as it connects, and a connection that
// fails then says only "context deadline exceeded"). A server that refuses
// the request for want of credentials has answered.
func (c *connFlags) reach(ctx context.Context, cfg clientv3.Config) error {
	eps := cfg.Endpoints
	cfg.Username, cfg.Password = "", ""
	cli, err := clientv3.New(cfg)
	if err != nil {
		return fmt.Errorf("connect to %v: %w", eps, err)
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	var (
		final error
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if final = unreachable(pctx, eps); final == nil {
			final = handshakeFailure(pctx, cli)
		}
		if final != nil {
			cancel()
		}
	}()
	_, err = cli.Get(pctx, "health", clientv3.WithCountOnly())
	cancel()
	wg.Wait()
	switch {
	case err == nil, errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrPermissionDenied):
		return nil
	case final != nil:
		return fmt.Errorf("cannot reach etcd: %w", final)
	default:
		// The wait ends with "context deadline exceeded"; gRPC knows why it
		// could not connect (a TLS handshake that failed, say).
		if last := lastConnError(ctx, cli); last != "" && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("etcd at %v does not answer within %v: %s", eps, c.dialTimeout, last)
		}
		return fmt.Errorf("etcd at %v does not answer within %v: %w", eps, c.dialTimeout, err)
	}
}

// session connects and opens a session with the --ttl flag. Close the
// session, then the client.
func (c *connFlags) session(ctx context.Context) (*clientv3.Client, *lockstep.Session, error) {
	cli, err := c.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	s, err := lockstep.NewSession(sctx, cli, lockstep.WithTTL(c.ttl))
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, s, nil
}

// env is what CMD needs to reach the same etcd, for a nested lockstep or
// etcdctl call: the endpoints and the TLS files, not the credentials.
func (c *connFlags) env() []string {
	return append([]string{envEndpoints + "=" + strings.Join(c.endpointList(), ",")}, c.secure.env()...)
}
