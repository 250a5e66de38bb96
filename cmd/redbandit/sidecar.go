package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"

	"github.com/redis/rueidis"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/sidecar"
)

func sidecarCommand() *cli.Command {
	return &cli.Command{
		Name:  "sidecar",
		Usage: "serve recommendations over HTTP (POST /v1/recommend), with health, readiness, model info and metrics",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: sidecar.DefaultListen, EnvVars: []string{"REDBANDIT_LISTEN"}, Usage: "listen address"},
			&cli.BoolFlag{Name: "fcall", EnvVars: []string{"REDBANDIT_FCALL"}, Usage: "score with FCALL_RO rb_recommend instead of EVALSHA_RO"},
			&cli.IntFlag{Name: "k", Value: sidecar.DefaultK, Usage: "products per recommendation when a request gives no k"},
			&cli.IntFlag{Name: "max-k", Value: sidecar.DefaultMaxK, Usage: "the largest k a request may ask for (a larger one is a 400: a large k holds Redis longer)"},
			&cli.Float64Flag{Name: "alpha", Value: linucb.DefaultAlpha, Usage: "exploration weight when a request gives no alpha"},
			&cli.DurationFlag{Name: "timeout", Value: sidecar.DefaultTimeout, Usage: "per-request limit on Redis"},
			&cli.Int64Flag{Name: "max-body", Value: sidecar.DefaultMaxBody, Usage: "request body limit in bytes"},
			&cli.StringSliceFlag{Name: "brokers", EnvVars: []string{"REDBANDIT_BROKERS"}, Usage: "Kafka brokers (host:port, comma-separated); enables POST /v1/feedback"},
			&cli.StringFlag{Name: "topic", Value: sidecar.DefaultTopic, EnvVars: []string{"REDBANDIT_TOPIC"}, Usage: "topic the feedback is produced to"},
			&cli.StringFlag{Name: "decisions-topic", Value: sidecar.DefaultDecisionsTopic, EnvVars: []string{"REDBANDIT_DECISIONS_TOPIC"},
				Usage: "with --brokers, log every decision to this topic and take rewards by event id (empty: off)"},
			&cli.IntFlag{Name: "decision-buffer", Value: sidecar.DefaultDecisionBuffer, Usage: "decisions waiting for Kafka before new ones are dropped (counted in /metrics)"},
			&cli.StringFlag{Name: "schema-registry", EnvVars: []string{"REDBANDIT_SCHEMA_REGISTRY"}, DefaultText: "none: fixed schema ids",
				Usage: "schema registry URL: register the decision log's schemas and write their ids"},
			&cli.StringFlag{Name: "scoring", Value: sidecar.ScoringRedis, EnvVars: []string{"REDBANDIT_SCORING"}, Usage: "where recommendations are scored: redis (the scoring script, every answer reflects every finished write) or local (a copy of each model in the sidecar, refreshed from the model's change record within --max-staleness; the script answers while a model has no current copy). docs/OPERATIONS.md"},
			&cli.IntFlag{Name: "local-max-products", Value: sidecar.DefaultLocalMaxProducts, Usage: "with --scoring local: a model with more products is scored by Redis (a copy takes 8·(d+d²) bytes per product and some for its id)"},
			&cli.DurationFlag{Name: "max-staleness", Value: sidecar.DefaultMaxStaleness, Usage: "with --scoring local: a copy not known to hold every write for longer is not used (Redis scores)"},
			&cli.IntFlag{Name: "procs", EnvVars: []string{"REDBANDIT_PROCS"}, Usage: "OS threads running Go code at once (GOMAXPROCS); 0: $GOMAXPROCS if set, else one less than Go's own setting (the CPUs, or a container's CPU limit; at least 1), leaving a core to the Redis next to the sidecar"},
		},
		Action: func(c *cli.Context) error {
			if a := c.Float64("alpha"); !(a >= 0) || math.IsInf(a, 1) {
				return fmt.Errorf("sidecar: --alpha %v: want a finite number ≥ 0", a)
			}
			if sc := c.String("scoring"); sc != sidecar.ScoringRedis && sc != sidecar.ScoringLocal {
				return fmt.Errorf("sidecar: --scoring %q: want %s or %s", sc, sidecar.ScoringLocal, sidecar.ScoringRedis)
			}
			if c.Int("local-max-products") < 1 || c.Duration("max-staleness") <= 0 {
				return fmt.Errorf("sidecar: --local-max-products and --max-staleness must be positive")
			}
			_, envSet := os.LookupEnv("GOMAXPROCS")
			procs, err := sidecarProcs(c.Int("procs"), envSet, runtime.GOMAXPROCS(0))
			if err != nil {
				return err
			}
			runtime.GOMAXPROCS(procs)
			slog.Info("sidecar threads", "gomaxprocs", procs, "cpus", runtime.NumCPU())
			return withReplicas(c, func(client rueidis.Client) error {
				return sidecar.Run(c.Context, sidecar.Config{
					Listen: c.String("listen"), Redis: client, Model: c.String("model"), FCall: c.Bool("fcall"),
					K: c.Int("k"), MaxK: c.Int("max-k"), Alpha: c.Float64("alpha"), AlphaSet: c.IsSet("alpha"), Timeout: c.Duration("timeout"), MaxBody: c.Int64("max-body"),
					Logger: slog.Default(), Brokers: c.StringSlice("brokers"), Topic: c.String("topic"),
					DecisionsTopic: c.String("decisions-topic"), DecisionBuffer: c.Int("decision-buffer"), SchemaRegistry: c.String("schema-registry"),
					Scoring: c.String("scoring"), LocalMaxProducts: c.Int("local-max-products"), MaxStaleness: c.Duration("max-staleness"),
				})
			})
		},
	}
}

// sidecarProcs returns the sidecar's GOMAXPROCS: flag if > 0, else current
// (the runtime's setting at start) if the GOMAXPROCS environment variable
// is set, else current-1, at least 1. Unset, current is Go's default: the
// CPUs the process may use, or fewer under a container's CPU limit (set
// explicitly, it no longer follows later changes of that limit).
//
// Redis runs its commands on one thread; a sidecar next to it that may run
// Go code on every CPU takes that thread's core in turns (docs/BENCHMARKS.md,
// the sidecar's overhead).
func sidecarProcs(flag int, envSet bool, current int) (int, error) {
	switch {
	case flag < 0:
		return 0, fmt.Errorf("sidecar: --procs %d < 0", flag)
	case flag > 0:
		return flag, nil
	case envSet:
		return current, nil
	}
	return max(1, current-1), nil
}
