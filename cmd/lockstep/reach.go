package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpcstatus "google.golang.org/grpc/status"
)

// unreachable dials every endpoint once, at the same time, and reports an
// error when all of them fail in a way that waiting cannot mend: the
// connection was refused, or the host name does not resolve. It returns
// nil as soon as one endpoint accepts a connection, or when the outcome is
// open (a timeout, an endpoint it cannot dial itself).
func unreachable(ctx context.Context, endpoints []string) error {
	errs := make([]error, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = dialOnce(ctx, ep)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if !isFinal(err) {
			return nil
		}
	}
	// One line, as every error lockstep prints.
	format := strings.TrimSuffix(strings.Repeat("%w; ", len(errs)), "; ")
	return fmt.Errorf(format, anys(errs)...)
}

func anys(errs []error) []any {
	out := make([]any, len(errs))
	for i, err := range errs {
		out[i] = err
	}
	return out
}

// dialOnce opens and closes one TCP connection to an endpoint.
func dialOnce(ctx context.Context, endpoint string) error {
	host := endpoint
	if u, err := url.Parse(endpoint); err == nil && strings.Contains(endpoint, "://") {
		if u.Scheme != "http" && u.Scheme != "https" {
			return errNotDialed // unix sockets and the like: clientv3 knows best
		}
		host = u.Host
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	conn.Close()
	return nil
}

var errNotDialed = errors.New("not dialed")

// isFinal says whether a dial error will not pass by waiting.
func isFinal(err error) bool {
	var dns *net.DNSError
	switch {
	case err == nil:
		return false
	case errors.As(err, &dns):
		return dns.IsNotFound
	default:
		return errors.Is(err, syscall.ECONNREFUSED)
	}
}

// lastConnError is why gRPC failed to connect to etcd, when it failed (""
// while it is still connecting, or connected): "transport: authentication
// handshake failed: ...", "connection reset by peer". clientv3's calls wait
// for a connection and end with the caller's deadline alone; a call that
// does not wait fails at once, with the connection's last error, while the
// connection is in TRANSIENT_FAILURE.
func lastConnError(ctx context.Context, cli *clientv3.Client) string {
	conn := cli.ActiveConnection()
	if conn.GetState() != connectivity.TransientFailure {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(false))
	s, ok := grpcstatus.FromError(err)
	if !ok || s.Code() != codes.Unavailable {
		return ""
	}
	msg := s.Message()
	// gRPC quotes the transport's text: connection error: desc = "...".
	if q, found := strings.CutPrefix(msg, "connection error: desc = "); found {
		if u, err := strconv.Unquote(q); err == nil {
			msg = u
		}
	}
	return msg
}
