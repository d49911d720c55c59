package robustness

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The checkers are tested on made-up histories: each must accept a correct
// one and catch the violation it exists for.

const ms = time.Millisecond

func TestPermitModel(t *testing.T) {
	acq := func(tok int64, call, ret time.Duration) porcupine.Operation {
		return porcupine.Operation{Input: permitInput{true, tok}, Call: int64(call), Return: int64(ret)}
	}
	rel := func(tok int64, call, ret time.Duration) porcupine.Operation {
		return porcupine.Operation{Input: permitInput{false, tok}, Call: int64(call), Return: int64(ret)}
	}
	for _, tc := range []struct {
		name  string
		limit int
		ops   []porcupine.Operation
		ok    bool
	}{
		{"handoff after the holder learned", 1, []porcupine.Operation{acq(1, 0, 1*ms), rel(1, 5*ms, 6*ms), acq(2, 2*ms, 7*ms)}, true},
		{"successor before the holder learned", 1, []porcupine.Operation{acq(1, 0, 1*ms), rel(1, 5*ms, 9*ms), acq(2, 2*ms, 4*ms)}, false},
		{"revoked holder: its end counts from the revocation", 1, []porcupine.Operation{acq(1, 0, 1*ms), rel(1, 2*ms, 9*ms), acq(2, 2*ms, 4*ms)}, true},
		{"three permits, three holders", 3, []porcupine.Operation{acq(1, 0, 1*ms), acq(2, 0, 1*ms), acq(3, 0, 1*ms)}, true},
		{"three permits, four holders", 3, []porcupine.Operation{acq(1, 0, 1*ms), acq(2, 0, 1*ms), acq(3, 0, 1*ms), acq(4, 2*ms, 3*ms)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(permitModel(tc.limit), tc.ops); got != tc.ok {
				t.Errorf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestItemModel(t *testing.T) {
	op := func(name string, claim int64, call, ret time.Duration) porcupine.Operation {
		return porcupine.Operation{Input: itemInput{name, claim}, Call: int64(call), Return: int64(ret)}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"enqueue, claim, ack", []porcupine.Operation{op("enqueue", 0, 0, 1*ms), op("dequeue", 1, 2*ms, 3*ms), op("ack", 1, 4*ms, 5*ms)}, true},
		{"redelivered after the claim ended", []porcupine.Operation{op("enqueue", 0, 0, 1*ms), op("dequeue", 1, 2*ms, 3*ms), op("release", 1, 4*ms, 6*ms), op("dequeue", 2, 5*ms, 7*ms), op("ack", 2, 8*ms, 9*ms)}, true},
		{"redelivered while the first consumer still held it", []porcupine.Operation{op("enqueue", 0, 0, 1*ms), op("dequeue", 1, 2*ms, 3*ms), op("dequeue", 2, 4*ms, 5*ms), op("release", 1, 6*ms, 7*ms)}, false},
		{"acked twice", []porcupine.Operation{op("enqueue", 0, 0, 1*ms), op("dequeue", 1, 2*ms, 3*ms), op("ack", 1, 4*ms, 5*ms), op("dequeue", 2, 6*ms, 7*ms)}, false},
		{"refused ack while the claim held", []porcupine.Operation{op("enqueue", 0, 0, 1*ms), op("dequeue", 1, 2*ms, 3*ms), op("refused", 1, 4*ms, 5*ms), op("ack", 1, 6*ms, 7*ms)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(itemModel, tc.ops); got != tc.ok {
				t.Errorf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}

// hist builds a history from lines "rev put|del key [value]"; a put's
// create revision is its own unless the key is live.
func hist(lines ...string) []change {
	var cs []change
	live := map[string]change{}
	for _, l := range lines {
		var rev int64
		var op, key string
		fmt.Sscanf(l, "%d %s %s", &rev, &op, &key)
		parts := strings.SplitN(l, " ", 4)
		value := ""
		if len(parts) == 4 {
			value = strings.ReplaceAll(parts[3], `\n`, "\n")
		}
		c := change{rev: rev, key: key, value: value, del: op == "del", seen: time.Duration(rev) * ms}
		if prev, ok := live[key]; ok {
			c.create, c.version = prev.create, prev.version+1
			if c.del {
				c.value = prev.value
			}
		} else {
			c.create, c.version = rev, 1
		}
		if c.del {
			delete(live, key)
		} else {
			live[key] = c
		}
		cs = append(cs, c)
	}
	return cs
}

func TestCheckMutex(t *testing.T) {
	const name, counter = "/m/lock", "/m/counter"
	for _, tc := range []struct {
		name string
		cs   []change
		want string // a violation must contain this; "" for none
	}{
		{"fenced writes by owners", hist(
			"1 put /m/lock/a", "2 put /m/lock/b", "3 put /m/counter 1 1 0", "4 del /m/lock/a", "5 put /m/counter 2 2 1", "6 del /m/lock/b"), ""},
		{"write by a waiter", hist(
			"1 put /m/lock/a", "2 put /m/lock/b", "3 put /m/counter 1 2 1"), "did not hold the lock"},
		{"lost update", hist(
			"1 put /m/lock/a", "2 put /m/counter 1 1 0", "3 put /m/counter 1 1 0"), "an update was lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{start: time.Now()}
			got, _ := e.checkMutex(tc.cs, nil, nil, name, counter)
			expectViolation(t, got, tc.want)
		})
	}
}

func TestCheckBarrier(t *testing.T) {
	const name, log = "/b/x", "/b/log/"
	open := `/b/x/ready 2\np1 1\np2 2`
	for _, tc := range []struct {
		name string
		cs   []change
		want string
	}{
		{"a round", hist(
			"1 put /b/x/parties/p1 entered 2", "2 put /b/x/parties/p2 entered 2", "3 put "+open,
			"4 put /b/log/0 entered 3 /b/x/parties/p1", "5 put /b/x/parties/p1 left 2", "6 put /b/x/parties/p2 left 2",
			"7 del /b/x/ready", "7 del /b/x/parties/p1", "7 del /b/x/parties/p2"), ""},
		{"closed while a participant had not left", hist(
			"1 put /b/x/parties/p1 entered 2", "2 put /b/x/parties/p2 entered 2", "3 put "+open,
			"5 put /b/x/parties/p1 left 2",
			"7 del /b/x/ready", "7 del /b/x/parties/p1", "7 del /b/x/parties/p2"), "had not left"},
		{"record after the round closed", hist(
			"1 put /b/x/parties/p1 entered 2", "2 put /b/x/parties/p2 entered 2", "3 put "+open,
			"5 put /b/x/parties/p1 left 2", "6 put /b/x/parties/p2 left 2",
			"7 del /b/x/ready", "8 put /b/log/0 leaving 3 /b/x/parties/p1"), "not open"},
		{"opened short of the count", hist(
			"1 put /b/x/parties/p1 entered 2", "3 put "+open), "not entered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := checkBarrier(tc.cs, name, log, 2)
			expectViolation(t, got, tc.want)
		})
	}
}

func TestCheckLeaderJob(t *testing.T) {
	const name, log = "/l/e", "/l/log/"
	cs := hist("1 put /l/e/a", "2 put /l/e/b", "3 del /l/e/a", "4 del /l/e/b")
	run := func(worker int, key string, token int64, lease clientv3.LeaseID, start, end time.Duration) *jobRun {
		return &jobRun{worker: worker, key: key, token: token, lease: lease, start: start, end: end}
	}
	for _, tc := range []struct {
		name    string
		runs    []*jobRun
		revoked []revocation
		want    string
	}{
		{"one after the other", []*jobRun{run(0, "/l/e/a", 1, 10, 1*ms, 2*ms), run(1, "/l/e/b", 2, 11, 3*ms, 4*ms)}, nil, ""},
		{"overlap", []*jobRun{run(0, "/l/e/a", 1, 10, 1*ms, 3500*ms/1000), run(1, "/l/e/b", 2, 11, 3*ms, 4*ms)}, nil, "overlap"},
		{"overlap after a revocation", []*jobRun{run(0, "/l/e/a", 1, 10, 1*ms, 3500*ms/1000), run(1, "/l/e/b", 2, 11, 3*ms, 4*ms)}, []revocation{{10, 2 * ms}}, ""},
		{"job outlived its term", []*jobRun{run(0, "/l/e/a", 1, 10, 1*ms, 5*ms)}, nil, "after the observer saw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{start: time.Now(), revoked: tc.revoked}
			got, _ := e.checkLeaderJob(cs, tc.runs, name, log)
			expectViolation(t, got, tc.want)
		})
	}
}

func expectViolation(t *testing.T, got []string, want string) {
	t.Helper()
	if want == "" {
		if len(got) > 0 {
			t.Errorf("violations %q, want none", got)
		}
		return
	}
	for _, v := range got {
		if strings.Contains(v, want) {
			return
		}
	}
	t.Errorf("violations %q, want one about %q", got, want)
}
