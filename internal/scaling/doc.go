// Package scaling measures how the cost of lockstep's recipes grows with
// the number of participants on one name, side by side with etcd's own
// packages on the same server in the same run. The benchmarks are in its
// tests; the plot command turns their output into the figures of
// docs/scaling.md:
//
//	go test ./internal/scaling -run '^$' -bench . -benchtime 200x | tee scaling.txt
//	go run ./internal/scaling/plot -out docs/img < scaling.txt
package scaling
