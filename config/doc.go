// Package config reads a typed configuration from an etcd prefix and
// keeps it current: hot reload with validation, compare-and-swap writes,
// history and rollback.
//
//	cfg, err := config.Open(ctx, cli, "/config/app/",
//		config.JSON[AppConfig]("/config/app/config.json"),
//		config.WithValidate(func(c AppConfig) error { ... }))
//	defer cfg.Close()
//	v := cfg.Current() // config.Version[AppConfig]{Value, Revision}
//	for v := range cfg.Updates(ctx) { ... }
//
// What it guarantees:
//
//   - A version is decoded from one snapshot of the prefix (package
//     cache): a configuration of several keys is never half updated.
//   - A version that fails to decode or validate is rejected: the last
//     good one stays current, Rejected says which revision and why, and
//     the next good version is taken as usual. Open fails instead if the
//     first version is bad: there is no last good one to keep.
//   - A deleted key is gone from the next version: values are decoded
//     from the prefix as it is, never merged into the previous value.
//   - Updates delivers the newest version to a slow consumer, not a
//     backlog.
//   - Put with IfRevision is a compare-and-swap (ErrConflict); Rollback
//     writes the prefix as it was at a revision in one transaction,
//     guarded against concurrent changes.
//
// What it does not guarantee: that a consumer sees every version (it sees
// the newest), or history older than etcd's last compaction.
// docs/config.md has the details.
package config
