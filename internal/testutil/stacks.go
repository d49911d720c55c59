package testutil

import "runtime"

// Stacks returns the stacks of every goroutine: what a test that gives up
// waiting prints, so that a hang seen once can be read afterwards.
func Stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
