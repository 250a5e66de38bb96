package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/loadtest"
	"github.com/redbandit/redbandit/model/linucb"
)

func loadtestCommand() *cli.Command {
	return &cli.Command{
		Name:  "loadtest",
		Usage: "load-test recommendations like redis-benchmark: throughput, errors, latency percentiles",
		Description: `Sends recommendation requests to --redis from --clients clients and checks every
answer (min(k, products or candidates) items, scores descending, known ids; a
wrong answer counts as an error). Targets: redis (EVALSHA_RO), fcall (FCALL_RO),
http (the sidecar at --url, POST /v1/recommend), client-side (fetch every arm
and score in Go, the baseline), ping (the floor).

Without --products it tests the existing model --model. With --products N it
creates a synthetic model of N products (d = --dim; at d = 15 the reference
shop's layout with one-hot groups) under a unique name, and deletes it
afterwards unless --keep.

--rate R makes the run open-loop: requests are scheduled at R per second in
total and latency counts from the scheduled time (no coordinated omission).

It exits with an error if any request failed or got a wrong answer.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "clients", Aliases: []string{"c"}, Value: 1, Usage: "concurrent clients, one connection each"},
			&cli.IntFlag{Name: "requests", Aliases: []string{"n"}, DefaultText: fmt.Sprintf("%d unless --duration", loadtest.DefaultRequests), Usage: "measured requests per target"},
			&cli.DurationFlag{Name: "duration", Usage: "run each target this long instead of --requests"},
			&cli.IntFlag{Name: "pipeline", Aliases: []string{"P"}, Value: 1, Usage: "requests per round trip per client"},
			&cli.StringFlag{Name: "client", Value: loadtest.ClientGo, Usage: "go (rueidis, net/http) or lean (RESP and HTTP/1.1 written by hand on each client's goroutine, like redis-benchmark and wrk); client-side always uses rueidis"},
			&cli.Float64Flag{Name: "rate", Usage: "open loop: schedule this many requests per second in total (0: closed loop)"},
			&cli.DurationFlag{Name: "warmup", Usage: "run each target this long before measuring"},
			&cli.StringFlag{Name: "target", Value: loadtest.TargetRedis, Usage: "redis, fcall, http, http-local, http-ping, client-side or ping"},
			&cli.StringFlag{Name: "url", Value: loadtest.DefaultSidecarURL, EnvVars: []string{"REDBANDIT_SIDECAR_URL"}, Usage: "the sidecar of the http target (serving the same Redis)"},
			&cli.StringFlag{Name: "local-url", Value: loadtest.DefaultLocalURL, EnvVars: []string{"REDBANDIT_LOCAL_SIDECAR_URL"}, Usage: "the sidecar of the http-local target: one run with --scoring local on the same Redis"},
			&cli.StringFlag{Name: "compare", Usage: "comma-separated targets run back to back, reported as ratios to the first (instead of --target)"},
			&cli.IntFlag{Name: "products", Usage: "create a synthetic model of this many products (0: use --model as it is)"},
			&cli.IntFlag{Name: "dim", DefaultText: fmt.Sprintf("%d, the reference shop's", loadtest.DefaultDim), Usage: "dimension of the synthetic model"},
			&cli.IntFlag{Name: "nonzero", DefaultText: fmt.Sprintf("min(%d, d)", loadtest.DefaultNonzero), Usage: "non-zero context entries for a model without one-hot groups"},
			&cli.IntFlag{Name: "candidates", Usage: "score a random list of this many products per request (0: the whole catalogue)"},
			&cli.IntFlag{Name: "k", Value: loadtest.DefaultK, Usage: "products per recommendation"},
			&cli.Float64Flag{Name: "alpha", Value: linucb.DefaultAlpha, Usage: "exploration weight α"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the synthetic model and the contexts"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the synthetic model in Redis"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per target per line"},
			&cli.BoolFlag{Name: "csv", Usage: "print CSV: a header, then one row per target"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no live progress line"},
		},
		Action: func(c *cli.Context) error {
			// The Config takes 0 for "the default": an explicit 0 here is an error.
			for _, name := range []string{"clients", "pipeline", "k"} {
				if c.Int(name) < 1 {
					return fmt.Errorf("loadtest: --%s %d < 1", name, c.Int(name))
				}
			}
			cfg := loadtest.Config{
				RedisURL: c.String("redis"), SidecarURL: c.String("url"), LocalURL: c.String("local-url"), Model: c.String("model"), Targets: []string{c.String("target")},
				Clients: c.Int("clients"), Requests: c.Int("requests"), Duration: c.Duration("duration"),
				Pipeline: c.Int("pipeline"), Client: c.String("client"), Rate: c.Float64("rate"), Warmup: c.Duration("warmup"),
				Products: c.Int("products"), Dim: c.Int("dim"), Nonzero: c.Int("nonzero"),
				Candidates: c.Int("candidates"), K: c.Int("k"), Alpha: c.Float64("alpha"), Seed: c.Uint64("seed"),
				Keep: c.Bool("keep"), Out: c.App.Writer, Logger: slog.Default(),
			}
			if c.IsSet("compare") {
				if c.IsSet("target") {
					return errors.New("loadtest: give --target or --compare, not both")
				}
				cfg.Targets = nil
				for _, t := range strings.Split(c.String("compare"), ",") {
					cfg.Targets = append(cfg.Targets, strings.TrimSpace(t))
				}
			}
			switch {
			case c.Bool("json") && c.Bool("csv"):
				return errors.New("loadtest: give --json or --csv, not both")
			case c.Bool("json"):
				cfg.Format = loadtest.FormatJSON
			case c.Bool("csv"):
				cfg.Format = loadtest.FormatCSV
			}
			if f, ok := c.App.Writer.(*os.File); ok && !c.Bool("quiet") && isTerminal(f) {
				cfg.Progress = f
			}
			rep, err := loadtest.Run(c.Context, cfg)
			if err != nil {
				return err
			}
			var failed, total int64
			for _, r := range rep.Results {
				failed += r.Errors
				total += r.Requests
			}
			if failed > 0 {
				return fmt.Errorf("loadtest: %d of %d requests failed or got a wrong answer", failed, total)
			}
			return nil
		},
	}
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
