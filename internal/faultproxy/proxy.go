// Package faultproxy is a TCP proxy that injects network faults between an
// etcd client and a member: blackhole (bytes vanish, connections stay open),
// refuse (connections are closed as if the server were down), delay, and
// dropping every open connection. The embedded cluster puts one in front of
// each member's client port; tests put one between a client and a member.
package faultproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by operations on a closed proxy.
var ErrClosed = errors.New("faultproxy: closed")

type mode int

const (
	pass mode = iota
	blackhole
	refuse
)

// Proxy forwards TCP connections from its listen address to a target.
type Proxy struct {
	ln net.Listener
	wg sync.WaitGroup // the accept loop and every copy goroutine

	mu     sync.Mutex
	target string
	mode   mode
	delay  time.Duration
	conns  map[net.Conn]struct{} // both ends of every open link
	closed bool
}

// New listens on listenAddr (for instance "127.0.0.1:0") and forwards every
// connection to target.
func New(listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections go; open ones are dropped.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	p.DropConnections()
}

// Blackhole makes every byte in either direction vanish, on open and new
// connections alike, while the connections stay open: what a client sees
// when a network path silently fails.
func (p *Proxy) Blackhole() { p.setMode(blackhole) }

// Refuse closes every open connection and closes new ones at once: what a
// client sees when the server process is down.
func (p *Proxy) Refuse() {
	p.setMode(refuse)
	p.DropConnections()
}

// Pass restores normal forwarding. Connections that lived through a
// blackhole lost bytes, so they are dropped and clients reconnect.
func (p *Proxy) Pass() {
	p.mu.Lock()
	was := p.mode
	p.mode = pass
	p.mu.Unlock()
	if was == blackhole {
		p.DropConnections()
	}
}

// SetDelay holds every chunk of data for d before forwarding it, in both
// directions. Zero removes the delay.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// DropConnections closes every open connection; new ones are accepted as
// the current mode says.
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.DropConnections()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (p *Proxy) setMode(m mode) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

func (p *Proxy) state() (mode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		target, m := p.target, p.mode
		p.mu.Unlock()
		if m == refuse {
			in.Close()
			continue
		}
		p.wg.Add(1)
		go p.link(in, target)
	}
}

// link dials the target and copies both ways until either side closes.
func (p *Proxy) link(in net.Conn, target string) {
	defer p.wg.Done()
	out, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		in.Close()
		return
	}
	if !p.track(in, out) {
		in.Close()
		out.Close()
		return
	}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); p.copy(out, in) }()
	go func() { defer copies.Done(); p.copy(in, out) }()
	copies.Wait()
	p.untrack(in, out)
}

func (p *Proxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == refuse {
		return false // closed or refused while this link was being dialled
	}
	p.conns[in] = struct{}{}
	p.conns[out] = struct{}{}
	return true
}

func (p *Proxy) untrack(in, out net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, in)
	delete(p.conns, out)
}

// copy forwards src to dst chunk by chunk, consulting the mode for each
// chunk so that a fault applies to connections already open. When either
// direction ends, both connections are closed.
func (p *Proxy) copy(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, delay := p.state()
			if m == pass {
				if delay > 0 {
					time.Sleep(delay)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or a closed connection: the link is over
		}
	}
}
