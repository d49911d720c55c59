package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a single in-process etcd member.
type Server struct {
	e        *embed.Etcd
	dir      string
	tempDir  bool
	lock     *fileutil.LockedFile
	endpoint string
	clients  clientSet
	mute     atomic.Bool // silences the default logger during Close

	tls          *TLSFiles   // nil without WithTLS
	clientTLS    *tls.Config // what ClientConfig trusts and presents
	rootPassword string      // "" without WithAuth

	closeOnce sync.Once
}

// Start starts a single etcd member on loopback and returns once it serves
// clients. Without options it listens on a free port, keeps its data in a
// temporary directory removed by Close, and logs only warnings and errors.
//
// Errors: ErrPortInUse (WithClientURL's port is taken), ErrDirInUse
// (another server holds WithDir's directory), ErrNotReady (ctx ended first;
// it also matches ctx's error), ErrInvalidOption.
func Start(ctx context.Context, opts ...Option) (*Server, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.clientURL != "" {
		if err := checkFree(o.clientURL); err != nil {
			return nil, err
		}
	}
	s := &Server{dir: o.dir}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "lockstep-etcd-"); err != nil {
			return nil, fmt.Errorf("embedded: data dir: %w", err)
		}
		s.tempDir = true
	}
	if s.lock, err = lockDir(s.dir); err != nil {
		s.removeTempDir()
		return nil, err
	}
	if o.tls {
		if err := s.useTLS(); err != nil {
			s.lock.Close()
			s.removeTempDir()
			return nil, err
		}
	}
	if s.e, err = startSingle(ctx, s.dir, o, s.tls, memberLogger(o, &s.mute)); err != nil {
		s.lock.Close()
		s.removeTempDir()
		return nil, err
	}
	s.endpoint = o.scheme() + "://" + s.e.Clients[0].Addr().String()
	if o.auth {
		if err := s.enableAuth(ctx, o.rootPassword); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// useTLS generates (or finds) the TLS files in the data directory.
func (s *Server) useTLS() error {
	var err error
	if s.tls, err = tlsFiles(s.dir); err != nil {
		return err
	}
	s.clientTLS, err = s.tls.clientTLS()
	return err
}

// TLS returns the files WithTLS generated, or nil without WithTLS.
func (s *Server) TLS() *TLSFiles { return s.tls }

// startSingle starts a one-member cluster, choosing the ports it was not
// given and choosing again if another process took one first.
func startSingle(ctx context.Context, dir string, o *options, tlsFiles *TLSFiles, lg *zap.Logger) (*embed.Etcd, error) {
	for attempt := 1; ; attempt++ {
		clientURL := o.clientURL
		if clientURL == "" {
			var err error
			if clientURL, err = freeURL(); err != nil {
				return nil, err
			}
			clientURL = o.scheme() + strings.TrimPrefix(clientURL, "http")
		}
		peerURL, err := freeURL()
		if err != nil {
			return nil, err
		}
		e, err := startMember(ctx, memberSpec{
			name:            o.name,
			dir:             dir,
			listenClient:    clientURL,
			advertiseClient: clientURL,
			listenPeer:      peerURL,
			advertisePeer:   peerURL,
			initialCluster:  o.name + "=" + peerURL,
			clusterToken:    "lockstep",
			noFsync:         o.noFsync,
			logger:          lg,
			tls:             tlsFiles,
			tune:            o.tune,
		})
		if errors.Is(err, ErrPortInUse) && attempt < portAttempts {
			continue
		}
		return e, err
	}
}

// Endpoints returns the client URLs to give an etcd client.
func (s *Server) Endpoints() []string { return []string{s.endpoint} }

// Client returns a new client connected to this server. Close closes it if
// the caller has not.
func (s *Server) Client() (*clientv3.Client, error) {
	return s.clients.open(s.ClientConfig())
}

// ClientConfig returns a client configuration for this server, for callers
// that need their own settings (interceptors, timeouts). A client made from
// it is the caller's to close, before Close: an open watch delays Close
// while etcd waits for it to end.
//
// With WithTLS it trusts the generated authority and presents the client
// certificate; with WithAuth it logs in as root.
func (s *Server) ClientConfig() clientv3.Config {
	cfg := clientConfig(s.Endpoints())
	cfg.TLS = s.clientTLS
	if s.rootPassword != "" {
		cfg.Username, cfg.Password = "root", s.rootPassword
	}
	return cfg
}

// Dir returns the data directory.
func (s *Server) Dir() string { return s.dir }

// Close closes the clients made by Client, stops the server, and removes
// the data directory unless it was given with WithDir. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.clients.closeAll()
		s.mute.Store(true)
		s.e.Close()
		s.lock.Close()
		s.removeTempDir()
	})
	return nil
}

func (s *Server) removeTempDir() {
	if s.tempDir {
		os.RemoveAll(s.dir)
	}
}

func clientConfig(endpoints []string) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		// Retries and reconnects are reported to the caller as errors where
		// they matter; the client's own warnings would only be noise.
		Logger: zap.NewNop(),
	}
}

// clientSet tracks the clients handed out so that Close can close them.
type clientSet struct {
	mu      sync.Mutex
	clients []*clientv3.Client
}

func (cs *clientSet) open(cfg clientv3.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded: client: %w", err)
	}
	cs.mu.Lock()
	cs.clients = append(cs.clients, cli)
	cs.mu.Unlock()
	return cli, nil
}

func (cs *clientSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, cli := range cs.clients {
		cli.Close() // an error here only means the caller closed it already
	}
	cs.clients = nil
}
