package robustness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"text/tabwriter"

	"github.com/lockstep-go/lockstep/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m, printSummary) }

// row is one workload's line in the summary.
type row struct {
	workload   string
	ops        int64
	faults     int
	faultKinds string
	violations []string
	notes      string
	seed       uint64
}

var (
	summaryMu   sync.Mutex
	summary     []row
	summaryPath string // LOCKSTEP_ROBUSTNESS_SUMMARY
)

// judge checks a workload's history with check and reports the result:
// the history's own failure, check's violations, and any worker that
// hung.
func (e *env) judge(t *testing.T, workload string, hist *history, check func([]change) (violations []string, notes string)) {
	t.Helper()
	cs, err := hist.all()
	var violations []string
	if err != nil {
		violations = append(violations, err.Error())
	}
	v, notes := check(cs)
	violations = append(violations, v...)
	violations = append(violations, e.hangReports()...)
	e.report(t, workload, notes, violations)
}

// report records a workload's result and fails the test for each
// violation. notes says what the checkers saw (rounds, items, phantoms).
func (e *env) report(t *testing.T, workload, notes string, violations []string) {
	t.Helper()
	for _, v := range violations {
		t.Errorf("%s: %s", workload, v)
	}
	t.Logf("%s: %d operations, faults: %s; %s", workload, e.ops.Load(), e.faultSummary(), notes)
	summaryMu.Lock()
	defer summaryMu.Unlock()
	// Read inside a test, so that go test's cache is keyed on it: a run
	// that asks for the summary in a new file runs the suite.
	summaryPath = os.Getenv("LOCKSTEP_ROBUSTNESS_SUMMARY")
	summary = append(summary, row{workload, e.ops.Load(), e.faultCount(), e.faultSummary(), violations, notes, e.seed})
}

// printSummary prints the table to stdout, which go test shows only with
// -v or on failure, and appends it to the file named by
// LOCKSTEP_ROBUSTNESS_SUMMARY if set, so that a run of the whole tree can
// show it without running the suite again.
func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\nrobustness summary (-robust.duration=%v per workload)\n", *duration)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\toperations\tfaults\tviolations\tseed\tfaults by kind")
	for _, r := range summary {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", r.workload, r.ops, r.faults, len(r.violations), r.seed, r.faultKinds)
	}
	tw.Flush()
	for _, r := range summary {
		fmt.Fprintf(&b, "%s: %s\n", r.workload, r.notes)
	}
	os.Stdout.Write(b.Bytes())
	if summaryPath != "" {
		f, err := os.OpenFile(summaryPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.Write(b.Bytes())
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "robustness summary: %v\n", err)
		}
	}
}
