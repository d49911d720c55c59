package retry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Transient reports whether a failed etcd call is worth retrying: the
// cluster is electing a leader, is overloaded or slow, or the connection to
// a member broke (a restart, a partition). A context's end is final (the
// caller that bounds an attempt with a timeout of its own decides), and so
// is everything the server refused on its merits: permission denied, a
// bad request, a lease it does not know, and a full database (NOSPACE lasts
// until an operator acts).
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, rpctypes.ErrGRPCNoSpace) || errors.Is(err, rpctypes.ErrNoSpace) {
		return false
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// Refused reports whether etcd refused a call for who is asking: the user
// lacks the permission, or could not authenticate. Asking again changes
// nothing until an operator acts, so a loop that would retry anything
// else returns these.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrAuthNotEnabled) ||
		errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrInvalidAuthToken) ||
		refusedWatch(err)
}

// refusedWatch recognises a watch the server refused to create: clientv3
// hands it over as a plain error holding gRPC's text ("rpc error: code =
// PermissionDenied desc = etcdserver: permission denied"), with no code.
func refusedWatch(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "code = PermissionDenied") || strings.Contains(msg, "code = Unauthenticated")
}

// Refusal returns a refused watch's error as one that matches etcd's
// rpctypes.ErrPermissionDenied, so that callers can match it as they match
// any other refusal; other errors are returned as they are.
func Refusal(err error) error {
	if err != nil && refusedWatch(err) && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return fmt.Errorf("%w (%v)", rpctypes.ErrPermissionDenied, err)
	}
	return err
}
