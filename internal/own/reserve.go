package own

import (
	"context"

	"github.com/lockstep-go/lockstep"
	"github.com/lockstep-go/lockstep/internal/link"
)

// Reserve waits, first come first served, until no other goroutine of this
// process uses key under s, then claims it: keys derived from a session's
// lease are the same for all its goroutines. release must be called once
// (a handle's onEnd does it); the session's end releases everything.
func Reserve(ctx context.Context, s *lockstep.Session, key string) (release func(), err error) {
	return link.Reserve(ctx, s, key)
}

// TryReserve claims key if no other goroutine of this process uses it,
// without waiting.
func TryReserve(s *lockstep.Session, key string) (release func(), ok bool) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	release, err := Reserve(done, s, key)
	return release, err == nil
}
