package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// lockDir claims dir for one server. The lock file stops a second lockstep
// server, in this process or another; dbInUse catches an etcd that is not
// ours, whose database lock would otherwise make the start hang.
func lockDir(dir string) (*fileutil.LockedFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: data dir: %w", err)
	}
	lf, err := fileutil.TryLockFile(filepath.Join(dir, "lockstep.lock"), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fileutil.ErrLocked) {
			return nil, fmt.Errorf("%w: %s", ErrDirInUse, dir)
		}
		return nil, fmt.Errorf("embedded: lock data dir: %w", err)
	}
	if dbInUse(filepath.Join(dir, "member", "snap", "db")) {
		lf.Close()
		return nil, fmt.Errorf("%w: %s (its database is open in another etcd)", ErrDirInUse, dir)
	}
	return lf, nil
}
