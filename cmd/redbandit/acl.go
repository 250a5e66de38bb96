package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/acl"
)

func aclCommand() *cli.Command {
	return &cli.Command{
		Name:  "acl",
		Usage: "write the Redis ACL file of the least-privilege users (rb-serve, rb-trainer, rb-admin)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "users.acl", Usage: "file to write (mode 0600); - for standard output"},
			&cli.StringFlag{Name: "serve-password", EnvVars: []string{"REDBANDIT_SERVE_PASSWORD"}, Usage: "password of rb-serve"},
			&cli.StringFlag{Name: "trainer-password", EnvVars: []string{"REDBANDIT_TRAINER_PASSWORD"}, Usage: "password of rb-trainer"},
			&cli.StringFlag{Name: "admin-password", EnvVars: []string{"REDBANDIT_ADMIN_PASSWORD"}, Usage: "password of rb-admin"},
		},
		Action: func(c *cli.Context) error {
			p := acl.Passwords{Serve: c.String("serve-password"), Trainer: c.String("trainer-password"), Admin: c.String("admin-password")}
			if c.String("out") == "-" {
				return acl.Write(c.App.Writer, p)
			}
			f, err := os.OpenFile(c.String("out"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("acl: %w", err)
			}
			if err := acl.Write(f, p); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
}
