package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/ops/acl"
)

func aclCommand() *cli.Command {
	return &cli.Command{
		Name:  "acl",
		Usage: "write the Redis ACL file of the least-privilege users (rb-serve, rb-trainer, rb-admin; the default user off, with only the rights an AOF replay needs)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "users.acl", Usage: "file to write; - for standard output"},
			&cli.StringFlag{Name: "mode", Value: "0600", Usage: "file mode of --out (octal); 0644 lets a Redis running as another user read it (the file holds SHA-256 hashes, not passwords)"},
			&cli.StringFlag{Name: "serve-password", EnvVars: []string{"REDBANDIT_SERVE_PASSWORD"}, Usage: "password of rb-serve"},
			&cli.StringFlag{Name: "trainer-password", EnvVars: []string{"REDBANDIT_TRAINER_PASSWORD"}, Usage: "password of rb-trainer"},
			&cli.StringFlag{Name: "admin-password", EnvVars: []string{"REDBANDIT_ADMIN_PASSWORD"}, Usage: "password of rb-admin"},
		},
		Action: func(c *cli.Context) error {
			p := acl.Passwords{Serve: c.String("serve-password"), Trainer: c.String("trainer-password"), Admin: c.String("admin-password")}
			if c.String("out") == "-" {
				return acl.Write(c.App.Writer, p)
			}
			mode, err := strconv.ParseUint(c.String("mode"), 8, 32)
			if err != nil || mode > 0o777 {
				return fmt.Errorf("acl: --mode %q is not an octal file mode", c.String("mode"))
			}
			f, err := os.OpenFile(c.String("out"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(mode))
			if err != nil {
				return fmt.Errorf("acl: %w", err)
			}
			if err := f.Chmod(os.FileMode(mode)); err != nil { // the umask may have narrowed it
				f.Close()
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
