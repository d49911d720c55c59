//go:build race

package queue_test

// raceEnabled scales the largest tests down under the race detector, which
// slows this code about tenfold.
const raceEnabled = true
