package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/rueidis"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/tools/produce"
	"github.com/redbandit/redbandit/trainer"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/joiner"
	"github.com/redbandit/redbandit/training/topic"
)

// kafkaFlags are the flags the trainer and produce commands share.
func kafkaFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "brokers", Value: cli.NewStringSlice("127.0.0.1:9092"), EnvVars: []string{"REDBANDIT_BROKERS"},
			Usage: "Kafka seed brokers, comma-separated host:port"},
		&cli.StringFlag{Name: "topic", Value: topic.DefaultFeedback, EnvVars: []string{"REDBANDIT_TOPIC"},
			Usage: "feedback topic"},
		&cli.IntFlag{Name: "partitions", Value: topic.DefaultPartitions, EnvVars: []string{"REDBANDIT_PARTITIONS"},
			Usage: "partitions of the topics when they must be created"},
	}
}

func trainerCommand() *cli.Command {
	return &cli.Command{
		Name:  "trainer",
		Usage: "consume feedback events from Kafka and fold them into the model, and join rewards by event id to the decision log (runs until SIGTERM)",
		Flags: append(append(kafkaFlags(),
			&cli.StringFlag{Name: "group", Value: trainer.DefaultGroup, EnvVars: []string{"REDBANDIT_GROUP"},
				Usage: "consumer group"},
			&cli.StringFlag{Name: "dlq-topic", EnvVars: []string{"REDBANDIT_DLQ_TOPIC"},
				DefaultText: "<topic>" + topic.DLQSuffix, Usage: "dead-letter topic"},
			&cli.DurationFlag{Name: "flush-interval", Value: trainer.DefaultFlushInterval, EnvVars: []string{"REDBANDIT_FLUSH_INTERVAL"},
				Usage: "time between writes to Redis (also one as soon as a backlog is caught up)"},
			&cli.IntFlag{Name: "max-dirty", Value: trainer.DefaultMaxDirty, EnvVars: []string{"REDBANDIT_MAX_DIRTY"},
				Usage: "write early once this many products have changed"},
			&cli.StringFlag{Name: "bootstrap", EnvVars: []string{"REDBANDIT_BOOTSTRAP"},
				Usage: "fold this historical CSV log into the model first (once per file content)"},
			&cli.StringFlag{Name: "schema-registry", EnvVars: []string{"REDBANDIT_SCHEMA_REGISTRY"}, DefaultText: "none: assume ours",
				Usage: "schema registry URL: read Avro records with their registered writer schema"},
			&cli.BoolFlag{Name: "reset-out-of-range", EnvVars: []string{"REDBANDIT_RESET_OUT_OF_RANGE"},
				Usage: "restart a partition whose stored offset is gone (retention) from its oldest event instead of stopping"},
			allowUnsafeFlag(),
		), joinerFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return errors.New("trainer takes no arguments")
			}
			return withRedis(c, func(client rueidis.Client) error {
				cfg := trainer.Config{
					Brokers: c.StringSlice("brokers"), Topic: c.String("topic"), Group: c.String("group"),
					Partitions: int32(c.Int("partitions")), DLQTopic: c.String("dlq-topic"),
					FlushInterval: c.Duration("flush-interval"), MaxDirty: c.Int("max-dirty"),
					Redis: client, Model: c.String("model"),
					SchemaRegistry: c.String("schema-registry"), ResetOutOfRange: c.Bool("reset-out-of-range"),
					Logger: slog.Default(),
				}
				if err := cfg.Validate(); err != nil {
					return err
				}
				var jcfg *joiner.Config
				if c.String("decisions-topic") != "" {
					j := joinerConfig(c, cfg.DLQTopic)
					if err := j.Validate(); err != nil {
						return err
					}
					jcfg = &j
				}
				// The configuration is checked first: it needs no Redis.
				if err := checkDurability(c, client); err != nil {
					return err
				}
				if path := c.String("bootstrap"); path != "" {
					err := bootstrapTrainer(c.Context, cfg, path)
					if err != nil && c.Context.Err() != nil && errors.Is(err, c.Context.Err()) {
						return nil // stopped while bootstrapping, like trainer.Run while starting
					}
					if err != nil {
						return err
					}
				}
				started := make(chan struct{})
				cfg.OnStarted = func() { close(started) }
				return runWithJoiner(c.Context, jcfg, started, func(ctx context.Context) error { return trainer.Run(ctx, cfg) })
			})
		},
	}
}

// bootstrapTrainer folds the CSV log at path into the trainer's model
// before it consumes, with the model's λ if it exists (else
// linucb.DefaultLambda). bootstrap applies a file once, so restarts and
// concurrent trainers fold it exactly once.
func bootstrapTrainer(ctx context.Context, cfg trainer.Config, path string) error {
	lambda := linucb.DefaultLambda
	if meta, err := store.ReadMeta(ctx, cfg.Redis, cfg.Model); err == nil {
		lambda = meta.Lambda
	}
	res, err := bootstrap.Run(ctx, cfg.Redis, path, bootstrap.Config{Model: cfg.Model, Lambda: lambda, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	cfg.Logger.Info("trainer: bootstrap done", "model", cfg.Model, "topic", cfg.Topic, "group", cfg.Group,
		"file", path, "already_applied", res.AlreadyApplied, "events", res.Events)
	return nil
}

func produceCommand() *cli.Command {
	return &cli.Command{
		Name:  "produce",
		Usage: "publish a CSV feedback log to the feedback topic, keyed by product id",
		Flags: append(kafkaFlags(),
			&cli.StringFlag{Name: "csv", Required: true, Usage: "the CSV log (the layout redbandit bootstrap reads)"},
			&cli.StringFlag{Name: "format", Value: produce.FormatAvro, EnvVars: []string{"REDBANDIT_FORMAT"},
				Usage: "avro (Confluent wire format; rewards 0/1) or json"},
			&cli.UintFlag{Name: "schema-id", Value: uint(event.DefaultSchemaID), Usage: "schema id written in the Avro wire header"},
			&cli.Float64Flag{Name: "rate", Usage: "events per second (0: as fast as possible)"},
			&cli.BoolFlag{Name: "skip-bad", Usage: "skip and count malformed rows instead of stopping at the first"},
		),
		Action: func(c *cli.Context) error {
			res, err := produce.Run(c.Context, c.String("csv"), produce.Config{
				Brokers: c.StringSlice("brokers"), Topic: c.String("topic"), Partitions: int32(c.Int("partitions")),
				Format: c.String("format"), SchemaID: uint32(c.Uint("schema-id")), Rate: c.Float64("rate"),
				SkipBad: c.Bool("skip-bad"), Logger: slog.Default(),
			})
			fmt.Fprintf(c.App.Writer, "produced %d events (%d rows skipped) to %s\n", res.Produced, res.Skipped, c.String("topic"))
			return err
		},
	}
}
