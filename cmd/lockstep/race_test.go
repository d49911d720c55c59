//go:build race

package main

// raceEnabled builds the binaries under test with the race detector too.
const raceEnabled = true
