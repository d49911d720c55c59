package embedded

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// enableAuth creates the user root, with the role root, and turns on
// authentication, unless it is on already (a WithDir server started again).
// From then on ClientConfig logs in as root with password.
func (s *Server) enableAuth(ctx context.Context, password string) error {
	cli, err := clientv3.New(s.ClientConfig())
	if err != nil {
		return fmt.Errorf("embedded: auth: %w", err)
	}
	defer cli.Close()
	status, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("embedded: auth status: %w", err)
	}
	if !status.Enabled {
		steps := []func() error{
			func() error { _, err := cli.UserAdd(ctx, "root", password); return err },
			func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
			func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
			func() error { _, err := cli.AuthEnable(ctx); return err },
		}
		for _, step := range steps {
			if err := step(); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
				return fmt.Errorf("embedded: enable auth: %w", err)
			}
		}
	}
	s.rootPassword = password
	return nil
}
