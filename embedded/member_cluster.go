package embedded

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/lockstep-go/lockstep/internal/faultproxy"
)

// Member is one member of a Cluster.
type Member struct {
	c              *Cluster
	name           string
	dir            string
	o              *options
	initialCluster string
	lock           *fileutil.LockedFile
	clientProxy    *faultproxy.Proxy
	peer           *peerProxy

	mu       sync.Mutex
	e        *embed.Etcd
	starting bool         // a start is under way; e is still nil
	mute     *atomic.Bool // silences the default logger of the running etcd while it stops
}

func newClientProxy() (*faultproxy.Proxy, error) {
	p, err := faultproxy.New("127.0.0.1:0", "")
	if err != nil {
		return nil, fmt.Errorf("embedded: client proxy: %w", err)
	}
	p.Refuse() // until the member is up
	return p, nil
}

// Name returns the member's name: member0, member1, ...
func (m *Member) Name() string { return m.name }

// Endpoint returns the member's client URL. It stays the same across Stop
// and Restart.
func (m *Member) Endpoint() string { return "http://" + m.clientProxy.Addr() }

// Client returns a new client that talks to this member only. The cluster's
// Close closes it if the caller has not.
func (m *Member) Client() (*clientv3.Client, error) {
	return m.c.clients.open(clientConfig([]string{m.Endpoint()}))
}

// Running reports whether the member is started.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.e != nil
}

// IsLeader reports whether the member is running and believes it leads.
func (m *Member) IsLeader() bool {
	id, ok := m.id()
	lead, running := m.leaderID()
	return ok && running && id == lead
}

// Stop stops the member the way a crash would: clients lose their
// connections at once and it does not hand leadership over first. The data
// stays for Restart.
func (m *Member) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return fmt.Errorf("%w: %s", ErrStopped, m.name)
	}
	m.stopLocked()
	return nil
}

func (m *Member) stopLocked() {
	// Dropping client connections first ends their watch streams, which
	// the server would otherwise wait for before it stops.
	m.clientProxy.Refuse()
	m.c.setStopped(m.name, true)
	m.mute.Store(true)
	m.e.Server.HardStop()
	m.e.Close()
	m.e = nil
}

// Restart starts a stopped member again on the same data and waits until
// it serves clients, which needs a quorum of the cluster.
func (m *Member) Restart(ctx context.Context) error {
	return m.start(ctx)
}

// Partition cuts the member off from its peers in both directions; it keeps
// serving the clients connected to it, which can then read stale data but
// not write. It returns once the raft streams already open have stopped:
// no raft message sent afterwards reaches or leaves the member. Heal undoes
// it.
func (m *Member) Partition() { m.c.setPartitioned(m.name, true) }

// Heal reconnects a partitioned member to its peers.
func (m *Member) Heal() { m.c.setPartitioned(m.name, false) }

// start runs etcd for this member on fresh ports behind its proxies.
func (m *Member) start(ctx context.Context) error {
	m.mu.Lock()
	if m.e != nil || m.starting {
		m.mu.Unlock()
		return fmt.Errorf("embedded: start %s: already running", m.name)
	}
	m.starting = true
	m.mu.Unlock()
	e, mute, err := m.run(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.starting = false
	if err != nil {
		return err
	}
	m.e, m.mute = e, mute
	return nil
}

// run starts etcd on fresh loopback ports, choosing again if another
// process took one first, and points the member's proxies at it.
func (m *Member) run(ctx context.Context) (*embed.Etcd, *atomic.Bool, error) {
	mute := new(atomic.Bool)
	lg := memberLogger(m.o, mute)
	for attempt := 1; ; attempt++ {
		clientURL, err := freeURL()
		if err != nil {
			return nil, nil, err
		}
		peerURL, err := freeURL()
		if err != nil {
			return nil, nil, err
		}
		m.peer.setTarget(peerURL)
		m.c.setStopped(m.name, false)
		e, err := startMember(ctx, memberSpec{
			name:            m.name,
			dir:             m.dir,
			listenClient:    clientURL,
			advertiseClient: m.Endpoint(),
			listenPeer:      peerURL,
			advertisePeer:   m.peer.url(),
			initialCluster:  m.initialCluster,
			clusterToken:    "lockstep-cluster",
			noFsync:         m.o.noFsync,
			logger:          lg,
			tune:            m.o.tune,
		})
		if errors.Is(err, ErrPortInUse) && attempt < portAttempts {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		u, _ := url.Parse(clientURL)
		m.clientProxy.SetTarget(u.Host)
		m.clientProxy.Pass()
		return e, mute, nil
	}
}

func (m *Member) close() {
	m.mu.Lock()
	if m.e != nil {
		m.stopLocked()
	}
	m.mu.Unlock()
	if m.clientProxy != nil {
		m.clientProxy.Close()
	}
	if m.peer != nil {
		m.peer.close()
	}
	if m.lock != nil {
		m.lock.Close()
	}
}

func (m *Member) id() (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return 0, false
	}
	return uint64(m.e.Server.MemberID()), true
}

func (m *Member) leaderID() (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return 0, false
	}
	return uint64(m.e.Server.Leader()), true
}
