package own

import (
	"context"
	"sync"

	"github.com/lockstep-go/lockstep"
)

// Keys derived from a session's lease (etcd's Mutex and Election layout)
// are the same for every goroutine that uses the session. etcd's Mutex
// therefore lets two goroutines "hold" one lock at once; lockstep makes the
// second wait here, in process, until the first is done with the key.

type reservation struct {
	s   *lockstep.Session
	key string
}

var (
	reservedMu sync.Mutex
	reserved   = map[reservation]chan struct{}{} // closed when released
)

// Reserve waits until no other goroutine of this process uses key under s,
// then claims it. It returns a release function that must be called exactly
// once; entries are removed on release, so nothing accumulates.
func Reserve(ctx context.Context, s *lockstep.Session, key string) (release func(), err error) {
	r := reservation{s, key}
	for {
		reservedMu.Lock()
		busy, ok := reserved[r]
		if !ok {
			freed := make(chan struct{})
			reserved[r] = freed
			reservedMu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					reservedMu.Lock()
					delete(reserved, r)
					reservedMu.Unlock()
					close(freed)
				})
			}, nil
		}
		reservedMu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.Done():
			return nil, s.Err()
		}
	}
}
