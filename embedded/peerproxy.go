package embedded

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// peerProxy fronts one member's peer port. Members talk raft over HTTP and
// every raft request names its sender (the X-PeerURLs header carries the
// sender's advertised peer URL, which is its own peerProxy), so the proxy
// can refuse traffic to or from a partitioned member in both directions and
// cut the long-lived raft streams already open.
//
// A request that names no sender (a follower forwarding a lease renewal to
// the leader) is refused only when its target is partitioned; a partitioned
// follower stops forwarding anyway once its election timeout passes without
// a leader.
type peerProxy struct {
	c     *Cluster
	owner string // name of the member behind this proxy
	ln    net.Listener
	srv   *http.Server
	tr    *http.Transport
	serve sync.WaitGroup

	handlers sync.WaitGroup // requests being proxied

	mu     sync.Mutex
	target *url.URL
	active map[*peerRequest]struct{}
	closed bool
}

type peerRequest struct {
	from   string // sender member name, "" if unknown
	cancel context.CancelFunc
	done   chan struct{} // closed when the handler has returned
}

// cutTimeout bounds how long cut waits for the requests it cancelled.
const cutTimeout = 2 * time.Second

func newPeerProxy(c *Cluster, owner string) (*peerProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &peerProxy{
		c:      c,
		owner:  owner,
		ln:     ln,
		tr:     &http.Transport{DialContext: (&net.Dialer{Timeout: time.Second}).DialContext},
		active: map[*peerRequest]struct{}{},
	}
	p.srv = &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	p.serve.Add(1)
	go func() { defer p.serve.Done(); p.srv.Serve(ln) }() // ends when close shuts the server down
	return p, nil
}

func (p *peerProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *peerProxy) setTarget(rawURL string) {
	u, _ := url.Parse(rawURL) // built by this package, always valid
	p.mu.Lock()
	p.target = u
	p.mu.Unlock()
}

func (p *peerProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	from := p.c.memberByPeerURL(firstPeerURL(r.Header.Get("X-PeerURLs")))
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	req := &peerRequest{from: from, cancel: cancel, done: make(chan struct{})}
	// The check and the registration happen under one lock, which cut
	// also takes after the partition is recorded: a request either sees
	// the partition or is in active when cut looks.
	p.mu.Lock()
	if p.closed || p.c.isCut(p.owner, from) {
		p.mu.Unlock()
		dropConnection(w)
		return
	}
	target := p.target
	p.active[req] = struct{}{}
	p.handlers.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.active, req)
		p.mu.Unlock()
		close(req.done)
		p.handlers.Done()
	}()
	// Cancelling stops reading from the member, but a handler blocked
	// writing to a peer that does not read would stay: a write deadline in
	// the past ends it. The handler does not return while that runs.
	deadlineSet := make(chan struct{})
	stopDeadline := context.AfterFunc(ctx, func() {
		defer close(deadlineSet)
		http.NewResponseController(w).SetWriteDeadline(time.Now())
	})
	defer func() {
		if !stopDeadline() {
			<-deadlineSet
		}
	}()

	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:     p.tr,
		FlushInterval: -1, // raft streams must not be buffered
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
}

// cut ends every open request to this proxy's member if it is the one
// partitioned, or from the partitioned member otherwise, and waits until
// their handlers have stopped copying: a raft message sent after cut
// returns does not get through on a stream that was already open.
func (p *peerProxy) cut(name string) {
	p.mu.Lock()
	var ending []*peerRequest
	for req := range p.active {
		if p.owner == name || req.from == name {
			req.cancel()
			ending = append(ending, req)
		}
	}
	p.mu.Unlock()
	timeout := time.NewTimer(cutTimeout)
	defer timeout.Stop()
	for _, req := range ending {
		select {
		case <-req.done:
		case <-timeout.C:
			return // not expected: cancelling ends a handler's reads and writes
		}
	}
}

// close stops the proxy and waits for its goroutines. Raft streams never
// end on their own, so it cuts them rather than waiting for them.
func (p *peerProxy) close() {
	p.mu.Lock()
	p.closed = true
	for req := range p.active {
		req.cancel()
	}
	p.mu.Unlock()
	p.srv.Close()
	p.handlers.Wait()
	p.serve.Wait()
	p.tr.CloseIdleConnections()
}

// dropConnection closes the client connection without an answer, as a
// network partition would.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

func firstPeerURL(header string) string {
	first, _, _ := strings.Cut(header, ",")
	return strings.TrimSpace(first)
}
