package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/tools/scenario"
)

func datagenCommand() *cli.Command {
	return &cli.Command{
		Name:  "datagen",
		Usage: "write the reference shop's catalogue, users and a 10,000-event training log, reproducibly from a seed",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "data", Usage: "directory to write"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of everything generated"},
			&cli.StringFlag{Name: "scenario", Value: scenario.Steady, Usage: "steady, new-products (the log never shows the six coffees) or drift (the history is steady's)"},
			&cli.TimestampFlag{Name: "now", Layout: time.RFC3339, DefaultText: scenario.DefaultNow.Format(time.RFC3339) + ", fixed so a seed always gives the same files", Usage: "events fall in the 7 days before this instant"},
		},
		Action: func(c *cli.Context) error {
			now := scenario.DefaultNow
			if t := c.Timestamp("now"); t != nil {
				now = *t
			}
			dir := c.String("out")
			if err := scenario.GenerateScenario(dir, c.Uint64("seed"), now, c.String("scenario")); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s, %s and %s (%d events) to %s\nbootstrap with: redbandit bootstrap --spec reference %s\n",
				scenario.CatalogueFile, scenario.UsersFile, scenario.LogFile, scenario.LogEvents, dir, filepath.Join(dir, scenario.LogFile))
			return nil
		},
	}
}
