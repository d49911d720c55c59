package robustness

import (
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
	summaryMu sync.Mutex
	summary   []row
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
	summary = append(summary, row{workload, e.ops.Load(), e.faultCount(), e.faultSummary(), violations, notes, e.seed})
}

func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	fmt.Fprintf(os.Stdout, "\nrobustness summary (-robust.duration=%v per workload)\n", *duration)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\toperations\tfaults\tviolations\tseed\tfaults by kind")
	for _, r := range summary {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", r.workload, r.ops, r.faults, len(r.violations), r.seed, r.faultKinds)
	}
	tw.Flush()
	for _, r := range summary {
		fmt.Fprintf(os.Stdout, "%s: %s\n", r.workload, r.notes)
	}
}
