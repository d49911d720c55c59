package cache

// Kind says what an Update carries.
type Kind int

const (
	// Whole: Snapshot is the whole state and Changes is empty. It is the
	// first update of every subscription, and what a subscriber that fell
	// behind receives instead of the changes it missed.
	Whole Kind = iota

	// Changes: Changes lead from the previous update's Snapshot to this
	// one's, in revision order.
	Changes
)

func (k Kind) String() string {
	if k == Whole {
		return "whole"
	}
	return "changes"
}

// ChangeType is what happened to a key.
type ChangeType int

const (
	Put ChangeType = iota
	Delete
)

func (t ChangeType) String() string {
	if t == Delete {
		return "delete"
	}
	return "put"
}

// Change is one key's change.
type Change struct {
	Type ChangeType
	// KeyValue is the key after a Put. After a Delete only Key and
	// ModRevision (the delete's revision; the listing's, in a resync) are
	// set.
	KeyValue
	// Prev is the key before the change; the zero KeyValue if it did not
	// exist.
	Prev KeyValue
}

// Update is one step of a subscription: the state it leads to, and how.
type Update struct {
	Kind Kind
	// Resync says that Changes come from listing the prefix again (after a
	// compaction, a broken watch or a lost leader), not from watch events:
	// whatever happened in between, summed up as one step.
	Resync   bool
	Snapshot Snapshot
	Changes  []Change
}

// Revision is the revision the update leads to.
func (u Update) Revision() int64 { return u.Snapshot.Revision() }
