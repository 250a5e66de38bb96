package main

import (
	"fmt"
	"log/slog"

	"github.com/redis/rueidis"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/ops/doctor"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check a live deployment (run as rb-admin): one PASS/WARN/FAIL line per check, exit status 1 on FAIL",
		Flags: []cli.Flag{timeoutFlag()},
		Action: func(c *cli.Context) error {
			return withRedis(c, func(client rueidis.Client) error {
				ctx, cancel := timeoutContext(c)
				defer cancel()
				r := doctor.Run(ctx, client)
				if err := r.Print(c.App.Writer); err != nil {
					return err
				}
				if n := len(r.Failed()); n > 0 {
					return fmt.Errorf("doctor: %d of %d checks failed", n, len(r))
				}
				return nil
			})
		},
	}
}

// allowUnsafeFlag is the flag of the commands that write models.
func allowUnsafeFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-unsafe-redis",
		Usage: "write models even if redbandit doctor's durability checks fail (no persistence, eviction, an AOF whose writes the server refuses to replay)"}
}

// checkDurability refuses to write models to a Redis that would lose them
// (doctor.Check), unless --allow-unsafe-redis.
func checkDurability(c *cli.Context, client rueidis.Client) error {
	err := doctor.Check(c.Context, client)
	if err != nil && c.Bool("allow-unsafe-redis") {
		slog.Warn("writing models anyway (--allow-unsafe-redis)", "err", err)
		return nil
	}
	return err
}
