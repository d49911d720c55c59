package lockstep

import (
	"context"

	"github.com/lockstep-go/lockstep/internal/link"
)

// The parts of a Session that lockstep's own packages use and its users
// do not see; see package internal/link.
func init() {
	link.Context = func(s any) context.Context { return s.(*Session).ctx }
	link.Reserve = func(ctx context.Context, s any, key string) (func(), error) {
		return s.(*Session).reserve(ctx, key)
	}
	link.Sweep = func(s any, c link.Cleanup) { s.(*Session).sweep(c) }
}
