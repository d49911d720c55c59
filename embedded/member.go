package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// memberSpec is what it takes to start one etcd member.
type memberSpec struct {
	name            string
	dir             string
	listenClient    string // URL
	advertiseClient string // URL
	listenPeer      string // URL
	advertisePeer   string // URL
	initialCluster  string
	clusterToken    string
	noFsync         bool
	logger          *zap.Logger
	tls             *TLSFiles // nil: plain http
	tune            func(*embed.Config)
}

func (sp memberSpec) config() (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name = sp.name
	cfg.Dir = sp.dir
	urls := []struct {
		dst *[]url.URL
		raw string
	}{
		{&cfg.ListenClientUrls, sp.listenClient},
		{&cfg.AdvertiseClientUrls, sp.advertiseClient},
		{&cfg.ListenPeerUrls, sp.listenPeer},
		{&cfg.AdvertisePeerUrls, sp.advertisePeer},
	}
	for _, u := range urls {
		parsed, err := url.Parse(u.raw)
		if err != nil {
			return nil, fmt.Errorf("%w: url %q: %w", ErrInvalidOption, u.raw, err)
		}
		*u.dst = []url.URL{*parsed}
	}
	cfg.InitialCluster = sp.initialCluster
	cfg.InitialClusterToken = sp.clusterToken
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.UnsafeNoFsync = sp.noFsync
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(sp.logger)
	if sp.tls != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: sp.tls.serverCert, KeyFile: sp.tls.serverKey}
	}
	if sp.tune != nil {
		sp.tune(cfg)
	}
	return cfg, nil
}

// startMember starts one member and waits until it serves clients, or
// until ctx ends. A member of a new cluster serves only once a quorum of
// its peers is up, so cluster members must be started concurrently.
func startMember(ctx context.Context, sp memberSpec) (*embed.Etcd, error) {
	cfg, err := sp.config()
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if isAddrInUse(err) {
			return nil, fmt.Errorf("%w: %w", ErrPortInUse, err)
		}
		return nil, fmt.Errorf("embedded: start %s: %w", sp.name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded: %s stopped while starting: %w", sp.name, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrNotReady, sp.name, ctx.Err())
	}
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// freeURL returns an http URL on a loopback port that was free a moment
// ago. Another process may take it before etcd binds it; callers retry on
// ErrPortInUse with a new one.
func freeURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("embedded: find a free port: %w", err)
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}

// checkFree reports ErrPortInUse if nobody can listen on the URL's address.
func checkFree(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: url %q", ErrInvalidOption, rawURL)
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		if isAddrInUse(err) {
			return fmt.Errorf("%w: %s", ErrPortInUse, u.Host)
		}
		return fmt.Errorf("embedded: listen on %s: %w", u.Host, err)
	}
	return l.Close()
}

// memberLogger is the logger for one member: the caller's, or a quiet one
// that goes mute when mute is set.
func memberLogger(o *options, mute *atomic.Bool) *zap.Logger {
	if o.logger != nil {
		return o.logger
	}
	return quietLogger(mute)
}

// portAttempts is how many times a start retries when a port it picked
// itself was taken in the meantime by another process.
const portAttempts = 8
