package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockstep-go/lockstep/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

func newProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends a line and reads the echo, giving up after wait.
func roundTrip(c net.Conn, r *bufio.Reader, wait time.Duration) error {
	c.SetDeadline(time.Now().Add(wait))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("wrong echo: " + line)
	}
	return nil
}

func TestPassForwards(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if err := roundTrip(c, r, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestBlackholeKeepsConnectionsOpenButSilent(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if err := roundTrip(c, r, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	err := roundTrip(c, r, 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip through a blackhole: got %v, want a timeout", err)
	}
	p.Pass() // drops the connection that lost bytes
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection that lived through a blackhole was not dropped")
	}
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, 5*time.Second); err != nil {
		t.Fatalf("new connection after Pass: %v", err)
	}
}

func TestRefuseClosesConnections(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	p.Refuse()
	if err := roundTrip(c, r, 5*time.Second); err == nil {
		t.Fatal("open connection still works after Refuse")
	}
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, 5*time.Second); err == nil {
		t.Fatal("new connection works while refusing")
	}
	p.Pass()
	c3, r3 := dial(t, p)
	if err := roundTrip(c3, r3, 5*time.Second); err != nil {
		t.Fatalf("after Pass: %v", err)
	}
}

func TestDelayHoldsData(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	const delay = 50 * time.Millisecond
	p.SetDelay(delay)
	start := time.Now()
	if err := roundTrip(c, r, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Both directions are delayed; a lower bound cannot be flaky.
	if got := time.Since(start); got < 2*delay {
		t.Fatalf("round trip with %v delay each way took %v", delay, got)
	}
}

func TestDropConnectionsAndClose(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if err := roundTrip(c, r, 5*time.Second); err != nil { // the link is up
		t.Fatal(err)
	}
	p.DropConnections()
	if err := roundTrip(c, r, 5*time.Second); err == nil {
		t.Fatal("dropped connection still works")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
