package cache

import (
	"iter"
	"strings"

	"github.com/benbjohnson/immutable"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// KeyValue is one key of a cached prefix, as etcd holds it at the
// snapshot's revision.
type KeyValue struct {
	Key            string
	Value          string
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
}

func fromEtcd(kv *mvccpb.KeyValue) KeyValue {
	return KeyValue{
		Key:            string(kv.Key),
		Value:          string(kv.Value),
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Lease:          kv.Lease,
	}
}

// Snapshot is the cached prefix at one revision. It is immutable: taking
// one costs nothing, and it stays as it is while the cache moves on. The
// zero Snapshot is empty.
type Snapshot struct {
	prefix string
	rev    int64
	m      *immutable.SortedMap[string, KeyValue]
}

// Prefix is the prefix the snapshot holds.
func (s Snapshot) Prefix() string { return s.prefix }

// Revision is the etcd revision the snapshot reflects: every change to
// the prefix up to and including it, and none after.
func (s Snapshot) Revision() int64 { return s.rev }

// Len is the number of keys.
func (s Snapshot) Len() int {
	if s.m == nil {
		return 0
	}
	return s.m.Len()
}

// Get returns the key's entry, if the key exists.
func (s Snapshot) Get(key string) (KeyValue, bool) {
	if s.m == nil {
		return KeyValue{}, false
	}
	return s.m.Get(key)
}

// All yields every key in key order: for key, kv := range snap.All().
func (s Snapshot) All() iter.Seq2[string, KeyValue] {
	return func(yield func(string, KeyValue) bool) {
		if s.m == nil {
			return
		}
		for it := s.m.Iterator(); !it.Done(); {
			k, v, _ := it.Next()
			if !yield(k, v) {
				return
			}
		}
	}
}

// Under yields, in key order, the keys that start with p: a part of the
// prefix, found without a scan of the rest.
func (s Snapshot) Under(p string) iter.Seq2[string, KeyValue] {
	return func(yield func(string, KeyValue) bool) {
		if s.m == nil {
			return
		}
		it := s.m.Iterator()
		it.Seek(p)
		for !it.Done() {
			k, v, _ := it.Next()
			if !strings.HasPrefix(k, p) || !yield(k, v) {
				return
			}
		}
	}
}

// with returns the snapshot after changes, at revision rev.
func (s Snapshot) with(rev int64, changes []Change) Snapshot {
	m := s.m
	for _, c := range changes {
		if c.Type == Delete {
			m = m.Delete(c.Key)
		} else {
			m = m.Set(c.Key, c.KeyValue)
		}
	}
	return Snapshot{prefix: s.prefix, rev: rev, m: m}
}
