// Command redbandit is an online LinUCB recommender that lives next to
// Redis. main only parses flags, wires components and handles signals; each
// subcommand's work lives in its own package.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "redbandit:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "redbandit",
		Usage: "an online contextual-bandit (LinUCB) recommender that lives next to Redis",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "redis", Value: "redis://127.0.0.1:6379/0", EnvVars: []string{"REDBANDIT_REDIS"},
				Usage: "Redis URL, redis://[user:pass@]host:port/db; a cluster: redis://[user:pass@]host:port?addr=host2:port2&addr=…"},
			&cli.StringSliceFlag{Name: "redis-replicas", EnvVars: []string{"REDBANDIT_REDIS_REPLICAS"},
				Usage: "URLs of replicas of --redis (comma-separated): sidecar, recommend and model read from them in turn, script load loads them too"},
			&cli.StringFlag{Name: "model", Value: "default", EnvVars: []string{"REDBANDIT_MODEL"},
				Usage: "model name M; its keys live under rb:{M}"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"REDBANDIT_LOG_LEVEL"},
				Usage: "debug, info, warn or error"},
		},
		Before: func(c *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
			return nil
		},
		Commands: []*cli.Command{
			bootstrapCommand(),
			recommendCommand(),
			scriptCommand(),
			modelCommand(),
			loadtestCommand(),
			aclCommand(),
			sidecarCommand(),
			datagenCommand(),
			simulateCommand(),
			trainerCommand(),
			joinerCommand(),
			produceCommand(),
			demoCommand(),
			doctorCommand(),
		},
	}
}

// withRedis connects to --redis for the length of one command.
func withRedis(c *cli.Context, f func(rueidis.Client) error) error {
	client, err := store.Dial(c.String("redis"))
	if err != nil {
		return err
	}
	defer client.Close()
	return f(client)
}

// withReplicas is withRedis for the commands that only read models (and
// script load): read-only commands go to --redis-replicas in turn, the
// rest to --redis. The writers keep to withRedis: a replica's offsets and
// arms may be behind the primary's.
func withReplicas(c *cli.Context, f func(rueidis.Client) error) error {
	client, err := store.DialReplicas(c.String("redis"), c.StringSlice("redis-replicas"))
	if err != nil {
		return fmt.Errorf("--redis-replicas: %w", err)
	}
	defer client.Close()
	return f(client)
}

// DefaultTimeout bounds the one-shot commands that read (recommend, model,
// script load, doctor): a primary that stops answering would otherwise
// hold them until the cluster fails it over, or for ever.
const DefaultTimeout = 10 * time.Second

func timeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: DefaultTimeout, Usage: "give up on Redis after this long (0: no limit)"}
}

// timeoutContext is c.Context ended after --timeout.
func timeoutContext(c *cli.Context) (context.Context, context.CancelFunc) {
	if d := c.Duration("timeout"); d > 0 {
		return context.WithTimeout(c.Context, d)
	}
	return context.WithCancel(c.Context)
}

// withTimeout runs f with timeoutContext and says which limit ended it.
func withTimeout(c *cli.Context, f func(context.Context) error) error {
	ctx, cancel := timeoutContext(c)
	defer cancel()
	err := f(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from Redis within --timeout %s: %w", c.Duration("timeout"), err)
	}
	return err
}

func recommendCommand() *cli.Command {
	return &cli.Command{
		Name:  "recommend",
		Usage: "print the top-k products for a context, through EVALSHA (or FCALL_RO)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "context", Required: true, Usage: "the context x as comma-separated numbers x1,...,xd"},
			&cli.IntFlag{Name: "k", Aliases: []string{"n"}, Value: 5, Usage: "number of products"},
			&cli.Float64Flag{Name: "alpha", Value: linucb.DefaultAlpha, Usage: "exploration weight α"},
			&cli.StringSliceFlag{Name: "candidates", Usage: "score only these product ids (comma-separated)"},
			&cli.StringSliceFlag{Name: "exclude", Usage: "never return these product ids (comma-separated)"},
			&cli.BoolFlag{Name: "fcall", Usage: "call the rb_recommend function with FCALL_RO instead of EVALSHA"},
			timeoutFlag(),
		},
		Action: func(c *cli.Context) error {
			x, err := parseFloats(c.String("context"))
			if err != nil {
				return fmt.Errorf("--context: %w", err)
			}
			q := store.Query{K: c.Int("k"), Alpha: c.Float64("alpha"), Context: x,
				Candidates: c.StringSlice("candidates"), Exclude: c.StringSlice("exclude")}
			return withReplicas(c, func(client rueidis.Client) error {
				recommend := store.Recommend
				if c.Bool("fcall") {
					recommend = store.RecommendFCall
				}
				var items []store.Item
				err := withTimeout(c, func(ctx context.Context) (err error) {
					items, err = recommend(ctx, client, c.String("model"), q)
					return err
				})
				if err != nil {
					return err
				}
				for i, it := range items {
					fmt.Fprintf(c.App.Writer, "%d\t%s\t%s\n", i+1, it.ID, store.FormatFloat(it.Score))
				}
				return nil
			})
		},
	}
}

// loadSpec reads a feature spec file; "reference" is the reference shop's.
func loadSpec(path string) (*spec.Spec, error) {
	if path == "reference" {
		return spec.Reference(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return spec.Parse(data)
}

func parseFloats(s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("value %d (%q) is not a number", i+1, p)
		}
		out[i] = v
	}
	return out, nil
}

func scriptCommand() *cli.Command {
	return &cli.Command{
		Name:  "script",
		Usage: "the scoring script and function library",
		Subcommands: []*cli.Command{
			{
				Name:  "sha",
				Usage: "print the SHA1 of recommend.lua (the name EVALSHA calls it by)",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(c.App.Writer, lua.RecommendSHA())
					return nil
				},
			},
			{
				Name:  "load",
				Usage: "load the scripts (SCRIPT LOAD) and the rb_recommend function library (FUNCTION LOAD REPLACE)",
				Flags: []cli.Flag{timeoutFlag()},
				Action: func(c *cli.Context) error {
					return withReplicas(c, func(client rueidis.Client) error {
						if err := withTimeout(c, func(ctx context.Context) error { return store.Load(ctx, client) }); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "loaded recommend.lua as %s and function library %s (%s)\n",
							lua.RecommendSHA(), lua.LibraryName, lua.RecommendFunction)
						return nil
					})
				},
			},
			{
				Name:  "show",
				Usage: "print recommend.lua, or with --library the function library source",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "library", Usage: "print the FUNCTION LOAD source instead"}},
				Action: func(c *cli.Context) error {
					if c.Bool("library") {
						fmt.Fprint(c.App.Writer, lua.Library())
					} else {
						fmt.Fprint(c.App.Writer, lua.RecommendSource())
					}
					return nil
				},
			},
		},
	}
}

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "print the model's metadata",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "spec", Usage: "print the stored feature spec in full"}, timeoutFlag()},
		Action: func(c *cli.Context) error {
			return withReplicas(c, func(client rueidis.Client) error {
				var m store.Meta
				err := withTimeout(c, func(ctx context.Context) (err error) {
					m, err = store.ReadMeta(ctx, client, c.String("model"))
					return err
				})
				if err != nil {
					return err
				}
				w := c.App.Writer
				fmt.Fprintf(w, "model     %s (key %s)\n", c.String("model"), store.RootKey(c.String("model")))
				fmt.Fprintf(w, "format    %d\ndimension %d\nlambda    %s\nfeatures  %s\n", m.Format, m.Dim, store.FormatFloat(m.Lambda), strings.Join(m.Features, ","))
				var groups []string
				for _, g := range m.Groups {
					var names []string
					for _, i := range g.Features {
						names = append(names, m.Features[i])
					}
					if g.Optional {
						names = append(names, "(or none)")
					}
					groups = append(groups, strings.Join(names, ","))
				}
				fmt.Fprintf(w, "one-hot   %s\n", strings.Join(groups, ";"))
				specInfo := "none"
				if m.Spec != "" {
					specInfo = "stored (redbandit model --spec prints it)"
					if c.Bool("spec") {
						specInfo = m.Spec
					}
				}
				fmt.Fprintf(w, "spec      %s\n", specInfo)
				fmt.Fprintf(w, "products  %d\nevents    %d\nupdated   %d (unix ms)\n", m.Arms, m.Events, m.UpdatedMS)
				return nil
			})
		},
	}
}

func bootstrapCommand() *cli.Command {
	return &cli.Command{
		Name:      "bootstrap",
		Usage:     "fold a historical feedback log (CSV) into the model and exit",
		ArgsUsage: "FILE.csv",
		Flags: []cli.Flag{
			&cli.Float64Flag{Name: "lambda", Value: linucb.DefaultLambda, Usage: "ridge regularisation λ of new arms"},
			&cli.BoolFlag{Name: "skip-bad", Usage: "skip and count malformed rows instead of stopping at the first"},
			&cli.Float64Flag{Name: "half-life", Usage: "forgetting, for a new model: an event's weight halves every this many later events of its product (0: never; fixed when the model is created, docs/OPERATIONS.md)"},
			&cli.StringFlag{Name: "spec", Usage: "the model's feature spec (JSON file, or \"reference\" for the reference shop's); stored with the model, it gives the one-hot groups"},
			&cli.StringFlag{Name: "onehot", Usage: "one-hot groups of feature names: names comma-separated, groups semicolon-separated (e.g. 'gender_f,gender_m;src_search,src_email'); recorded when the model is created, they make scoring faster"},
			allowUnsafeFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("bootstrap takes exactly one FILE.csv")
			}
			cfg := bootstrap.Config{Model: c.String("model"), Lambda: c.Float64("lambda"), HalfLife: c.Float64("half-life"),
				SkipBad: c.Bool("skip-bad"), Logger: slog.Default()}
			if sp := c.String("spec"); sp != "" {
				var err error
				if cfg.Spec, err = loadSpec(sp); err != nil {
					return err
				}
			}
			if g := c.String("onehot"); g != "" {
				for _, grp := range strings.Split(g, ";") {
					cfg.OneHot = append(cfg.OneHot, strings.Split(grp, ","))
				}
			}
			return withRedis(c, func(client rueidis.Client) error {
				if err := checkDurability(c, client); err != nil {
					return err
				}
				res, err := bootstrap.Run(c.Context, client, c.Args().First(), cfg)
				if err != nil {
					return err
				}
				w := c.App.Writer
				if res.AlreadyApplied {
					fmt.Fprintf(w, "%s (sha256 %s) was already applied to model %s: nothing to do\n", c.Args().First(), res.SHA256, cfg.Model)
					return nil
				}
				fmt.Fprintf(w, "folded %d events (%d rows, %d skipped) into %d products of model %s\n",
					res.Events, res.Rows, res.Skipped, res.Products, cfg.Model)
				return nil
			})
		},
	}
}
