package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is an n-member etcd cluster in this process, for failure tests.
//
// Each member sits behind two proxies whose addresses never change: one for
// clients (its Endpoint) and one for its peers. That is what lets a member
// be stopped and restarted on new ports while clients and peers keep the
// address they know, and what lets a member be partitioned from its peers
// while it keeps serving its clients.
type Cluster struct {
	dir     string
	members []*Member
	clients clientSet

	mu          sync.Mutex
	partitioned map[string]bool
	stopped     map[string]bool // members whose peer port is closed to everyone

	closeOnce sync.Once
}

// StartCluster starts n members and returns once every one of them serves
// clients. Options WithoutFsync, WithLogger, WithAutoCompaction,
// WithQuotaBackendBytes and WithConfig apply to every member; WithDir,
// WithClientURL, WithName, WithTLS and WithAuth are for a single member and
// return ErrInvalidOption.
func StartCluster(ctx context.Context, n int, opts ...Option) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, n)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.dir != "" || o.clientURL != "" || o.name != "lockstep" || o.tls || o.auth {
		return nil, fmt.Errorf("%w: WithDir, WithClientURL, WithName, WithTLS and WithAuth are for a single member", ErrInvalidOption)
	}
	dir, err := os.MkdirTemp("", "lockstep-cluster-")
	if err != nil {
		return nil, fmt.Errorf("embedded: data dir: %w", err)
	}
	c := &Cluster{dir: dir, partitioned: map[string]bool{}, stopped: map[string]bool{}}
	if err := c.addMembers(n, o); err != nil {
		c.Close()
		return nil, err
	}
	initial := make([]string, n)
	for i, m := range c.members {
		initial[i] = m.name + "=" + m.peer.url()
	}
	for _, m := range c.members {
		m.initialCluster = strings.Join(initial, ",")
	}

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) addMembers(n int, o *options) error {
	for i := range n {
		m := &Member{c: c, name: fmt.Sprintf("member%d", i), o: o}
		m.dir = filepath.Join(c.dir, m.name)
		c.members = append(c.members, m)
		var err error
		if m.lock, err = lockDir(m.dir); err != nil {
			return err
		}
		if m.clientProxy, err = newClientProxy(); err != nil {
			return err
		}
		if m.peer, err = newPeerProxy(c, m.name); err != nil {
			return err
		}
	}
	return nil
}

// Members returns the members, in order.
func (c *Cluster) Members() []*Member { return c.members }

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.Endpoint()
	}
	return eps
}

// Client returns a new client that knows every member. Close closes it if
// the caller has not.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return c.clients.open(clientConfig(c.Endpoints()))
}

// WaitLeader waits until the running, unpartitioned members agree on a
// leader that is one of them, and returns it.
func (c *Cluster) WaitLeader(ctx context.Context) (*Member, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := c.agreedLeader(); m != nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("embedded: wait for leader: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) agreedLeader() *Member {
	var leader *Member
	for _, m := range c.members {
		if c.isPartitioned(m.name) {
			continue
		}
		id, ok := m.leaderID()
		if !ok {
			continue // stopped
		}
		l := c.memberByID(id)
		if l == nil || (leader != nil && l != leader) {
			return nil
		}
		leader = l
	}
	if leader == nil || !leader.Running() || c.isPartitioned(leader.name) {
		return nil
	}
	return leader
}

// Close closes the clients made by Client, stops every member and removes
// the data. It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.clients.closeAll()
		var wg sync.WaitGroup
		for _, m := range c.members {
			wg.Add(1)
			go func() { defer wg.Done(); m.close() }()
		}
		wg.Wait()
		os.RemoveAll(c.dir)
	})
	return nil
}

func (c *Cluster) memberByID(id uint64) *Member {
	for _, m := range c.members {
		if mid, ok := m.id(); ok && mid == id {
			return m
		}
	}
	return nil
}

func (c *Cluster) memberByPeerURL(u string) string {
	for _, m := range c.members {
		if m.peer != nil && m.peer.url() == u {
			return m.name
		}
	}
	return ""
}

func (c *Cluster) isPartitioned(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.partitioned[name]
}

// isCut reports whether traffic from member `from` to member `to` must be
// dropped.
func (c *Cluster) isCut(to, from string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.partitioned[to] || c.stopped[to] || (from != "" && c.partitioned[from])
}

func (c *Cluster) setPartitioned(name string, cut bool) { c.setCut(c.partitioned, name, cut) }

// setStopped closes a stopping member's peer port to everyone: etcd waits
// for open peer connections when it stops, and raft streams never close on
// their own.
func (c *Cluster) setStopped(name string, cut bool) { c.setCut(c.stopped, name, cut) }

func (c *Cluster) setCut(set map[string]bool, name string, cut bool) {
	c.mu.Lock()
	set[name] = cut
	c.mu.Unlock()
	if cut {
		for _, m := range c.members {
			if m.peer != nil {
				m.peer.cut(name)
			}
		}
	}
}
