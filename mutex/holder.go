package mutex

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep-go/lockstep/internal/rpc"
)

// Holder describes who holds a mutex at the revision it was read.
type Holder struct {
	// Key is the holder's lock key: the prefix, "/", and its lease in hex.
	Key string
	// Lease is the holder's lease: its session.
	Lease clientv3.LeaseID
	// Token is the holder's fencing token (its key's create revision).
	Token int64
}

// Holder reads who holds the mutex, in one round trip. It returns
// ErrNotLocked if nobody does. The holder may have changed by the time the
// answer arrives; use it for display and diagnosis, not for decisions.
func (m *Mutex) Holder(ctx context.Context) (Holder, error) {
	resp, err := rpc.Get(ctx, m.s.Client(), nil, m.line.Dir, clientv3.WithFirstCreate()...)
	if err != nil {
		if ctx.Err() != nil {
			return Holder{}, ctx.Err()
		}
		return Holder{}, fmt.Errorf("mutex: read holder of %s: %w", m.prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return Holder{}, fmt.Errorf("%w: %s", ErrNotLocked, m.prefix)
	}
	kv := resp.Kvs[0]
	return Holder{Key: string(kv.Key), Lease: clientv3.LeaseID(kv.Lease), Token: kv.CreateRevision}, nil
}
