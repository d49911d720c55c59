package config_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockstep-go/lockstep/config"
	"github.com/lockstep-go/lockstep/internal/testutil"
)

// IfRevision is a compare-and-swap: of two editors that read the same
// revision, the second one's Put fails.
func TestPutIfRevision(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	key := testutil.Prefix(t) + "/k"
	created, err := config.Put(ctx, cli, key, "v1", config.IfRevision(0))
	if err != nil {
		t.Fatalf("Put of a new key with IfRevision(0): %v", err)
	}
	if _, err := config.Put(ctx, cli, key, "again", config.IfRevision(0)); !errors.Is(err, config.ErrConflict) {
		t.Fatalf("Put with IfRevision(0) on an existing key: got %v, want ErrConflict", err)
	}
	first, err := config.Put(ctx, cli, key, "v2", config.IfRevision(created))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Put(ctx, cli, key, "v2-other", config.IfRevision(created)); !errors.Is(err, config.ErrConflict) {
		t.Fatalf("the second editor's Put: got %v, want ErrConflict", err)
	}
	// A revision after the write works too (a Version's Revision).
	if _, err := config.Put(ctx, cli, key, "v3", config.IfRevision(first+5)); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Put(ctx, cli, "", "x"); !errors.Is(err, config.ErrInvalidArgument) {
		t.Fatalf("Put of an empty key: %v", err)
	}
}

// A compare-and-swap whose answer was lost after etcd applied it is not
// reported as a conflict with itself.
func TestPutAnswerLost(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli, loser := testutil.LosingClient(t)
	key := testutil.Prefix(t) + "/k"
	rev, err := config.Put(ctx, cli, key, "v1")
	if err != nil {
		t.Fatal(err)
	}
	loser.Next("Txn", testutil.TxnPuts(key), nil)
	got, err := config.Put(ctx, cli, key, "v2", config.IfRevision(rev))
	if err != nil {
		t.Fatalf("Put whose answer was lost: %v", err)
	}
	if loser.Lost() != 1 || got <= rev {
		t.Fatalf("lost %d answers, revision %d after %d", loser.Lost(), got, rev)
	}
}

func TestHistoryAndRollback(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli := testutil.Client(t)
	prefix := testutil.Prefix(t) + "/"
	r1, _ := config.Put(ctx, cli, prefix+"a", "1")
	r2, _ := config.Put(ctx, cli, prefix+"b", "1")
	r3, _ := config.Put(ctx, cli, prefix+"a", "2")
	if _, err := cli.Delete(ctx, prefix+"b"); err != nil {
		t.Fatal(err)
	}
	r5, _ := config.Put(ctx, cli, prefix+"c", "1")

	hist, err := config.History(ctx, cli, prefix, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range hist {
		got = append(got, fmt.Sprint(e.Revision, e.Values))
	}
	want := []string{
		fmt.Sprint(r5, map[string]string{"a": "2", "c": "1"}),
		fmt.Sprint(r5-1, map[string]string{"a": "2"}),
		fmt.Sprint(r3, map[string]string{"a": "2", "b": "1"}),
		fmt.Sprint(r2, map[string]string{"a": "1", "b": "1"}),
		fmt.Sprint(r1, map[string]string{"a": "1"}),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("History:\n%v\nwant:\n%v", got, want)
	}
	if short, err := config.History(ctx, cli, prefix, 2); err != nil || len(short) != 2 || short[1].Revision != r5-1 {
		t.Fatalf("History(2): %v, %v", short, err)
	}

	rev, err := config.Rollback(ctx, cli, prefix, r2)
	if err != nil {
		t.Fatal(err)
	}
	now, err := config.History(ctx, cli, prefix, 1)
	if err != nil {
		t.Fatal(err)
	}
	if now[0].Revision != rev || fmt.Sprint(now[0].Values) != fmt.Sprint(map[string]string{"a": "1", "b": "1"}) {
		t.Fatalf("after Rollback to %d: %v at %d (rollback wrote at %d)", r2, now[0].Values, now[0].Revision, rev)
	}

	// Compacted history cannot be rolled back to.
	if _, err := cli.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Rollback(ctx, cli, prefix, r1); !errors.Is(err, config.ErrCompacted) {
		t.Fatalf("Rollback to a compacted revision: got %v, want ErrCompacted", err)
	}
	if after, err := config.History(ctx, cli, prefix, 10); err != nil || len(after) != 1 || after[0].Revision != rev {
		t.Fatalf("History after the compaction: %v, %v; want only the current state", after, err)
	}
}

// A rollback that races another write writes nothing.
func TestRollbackConflict(t *testing.T) {
	ctx := testutil.Context(t, 30*time.Second)
	cli, hooks := testutil.LosingClient(t)
	prefix := testutil.Prefix(t) + "/"
	r1, _ := config.Put(ctx, cli, prefix+"a", "1")
	config.Put(ctx, cli, prefix+"a", "2")
	other := testutil.Client(t)
	for _, race := range []func(){
		func() { config.Put(ctx, other, prefix+"new", "x") },
		func() { config.Put(ctx, other, prefix+"a", "3") },
		func() { other.Delete(ctx, prefix+"new") },
	} {
		// Between the rollback's read of the prefix as it is and its write.
		hooks.After("Range", testutil.CurrentRange(), race)
		if _, err := config.Rollback(ctx, cli, prefix, r1); !errors.Is(err, config.ErrConflict) {
			t.Fatalf("Rollback with a racing write: got %v, want ErrConflict", err)
		}
	}
	if v, _ := other.Get(ctx, prefix+"a"); string(v.Kvs[0].Value) != "3" {
		t.Fatalf("a = %s after the failed rollbacks, want 3", v.Kvs[0].Value)
	}
}
