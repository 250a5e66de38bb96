package main

import (
	"log/slog"

	"github.com/redis/rueidis"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/linucb"
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
			&cli.Float64Flag{Name: "alpha", Value: linucb.DefaultAlpha, Usage: "exploration weight when a request gives no alpha"},
			&cli.DurationFlag{Name: "timeout", Value: sidecar.DefaultTimeout, Usage: "per-request limit on Redis"},
			&cli.Int64Flag{Name: "max-body", Value: sidecar.DefaultMaxBody, Usage: "request body limit in bytes"},
			&cli.StringSliceFlag{Name: "brokers", EnvVars: []string{"REDBANDIT_BROKERS"}, Usage: "Kafka brokers (host:port, comma-separated); enables POST /v1/feedback"},
			&cli.StringFlag{Name: "topic", Value: sidecar.DefaultTopic, EnvVars: []string{"REDBANDIT_TOPIC"}, Usage: "topic the feedback is produced to"},
		},
		Action: func(c *cli.Context) error {
			return withRedis(c, func(client rueidis.Client) error {
				return sidecar.Run(c.Context, sidecar.Config{
					Listen: c.String("listen"), Redis: client, Model: c.String("model"), FCall: c.Bool("fcall"),
					K: c.Int("k"), Alpha: c.Float64("alpha"), Timeout: c.Duration("timeout"), MaxBody: c.Int64("max-body"),
					Logger: slog.Default(), Brokers: c.StringSlice("brokers"), Topic: c.String("topic"),
				})
			})
		},
	}
}
