package leaderjob

import (
	"time"

	"github.com/lockstep-go/lockstep/internal/retry"
)

// backoff returns the pause after the n-th failure in a row (n >= 1): a
// random duration between half and all of min(max, min·2ⁿ⁻¹), so that
// runners that failed together do not campaign again together.
func (o *options) backoff(n int) time.Duration {
	return retry.Backoff{Base: o.backoffMin, Max: o.backoffMax}.Delay(n - 1)
}
