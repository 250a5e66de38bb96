package main

import (
	"encoding/json"
	"fmt"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
	"github.com/redbandit/redbandit/training/event"
)

func simulateCommand() *cli.Command {
	return &cli.Command{
		Name:  "simulate",
		Usage: "play the reference shop's visitors: recommend, click by the hidden ground truth, send feedback to Kafka",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "visits", Value: 20000, Usage: "number of visits"},
			&cli.StringFlag{Name: "via", Value: "redis", Usage: "redis (EVALSHA) or http (the sidecar at --url, raw attributes)"},
			&cli.StringFlag{Name: "url", Value: "http://" + sidecar.DefaultListen, EnvVars: []string{"REDBANDIT_SIDECAR_URL"}, Usage: "the sidecar, with --via http"},
			&cli.StringFlag{Name: "policy", Value: simulate.LinUCB, Usage: "the policy served and fed back: linucb, random or oracle (all three are scored on every visit)"},
			&cli.Float64Flag{Name: "rate", Usage: "visits per second (0: as fast as possible)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the visits"},
			&cli.Uint64Flag{Name: "data-seed", Value: 1, Usage: "seed of the catalogue and users (datagen's --seed)"},
			feedbackFlag(), impressionsFlag(),
			&cli.StringFlag{Name: "scenario", Value: scenario.Steady, Usage: "steady or drift (the tastes change after half the visits: coffee in the evening, no weekend pizza; the summary reports the recovery); new-products concerns the model's history (datagen --scenario)"},
			&cli.Float64Flag{Name: "alpha", Value: linucb.DefaultAlpha, Usage: "exploration weight"},
			&cli.StringSliceFlag{Name: "brokers", Value: cli.NewStringSlice("127.0.0.1:9092"), EnvVars: []string{"REDBANDIT_BROKERS"}, Usage: "Kafka brokers"},
			&cli.StringFlag{Name: "topic", Value: sidecar.DefaultTopic, EnvVars: []string{"REDBANDIT_TOPIC"}, Usage: "feedback topic"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no line per visit, only the rolling CTR every 1,000 visits"},
			&cli.BoolFlag{Name: "json", Usage: "end with the summary as one JSON object on the last line"},
		},
		Action: func(c *cli.Context) error {
			if c.String("feedback") == simulate.FeedbackReward {
				// Its Kafka sink sends self-contained events; rewards by
				// event id need the sidecar's decision log and a joiner.
				return fmt.Errorf("--feedback reward: only the demo runs that route; simulate sends one or impressions")
			}
			kc, err := kgo.NewClient(kgo.SeedBrokers(c.StringSlice("brokers")...))
			if err != nil {
				return fmt.Errorf("kafka: %w", err)
			}
			defer kc.Close()
			if err := scenario.CheckScenario(c.String("scenario")); err != nil {
				return err
			}
			codec, err := event.NewCodec(spec.Reference().Dim())
			if err != nil {
				return err
			}
			sink := &simulate.Kafka{Client: kc, Topic: c.String("topic"), Codec: codec}
			return withRedis(c, func(client rueidis.Client) error {
				cfg := simulate.Config{Visits: c.Int("visits"), Policy: c.String("policy"), Rate: c.Float64("rate"),
					Seed: c.Uint64("seed"), DataSeed: c.Uint64("data-seed"), Feedback: c.String("feedback"), Impressions: c.String("impressions"), Sink: sink, Out: c.App.Writer, Verbose: !c.Bool("quiet")}
				if c.String("scenario") == scenario.Drift {
					cfg.DriftAt = int(float64(cfg.Visits) * scenario.DriftAt)
				}
				switch c.String("via") {
				case "redis":
					cfg.Recommender = &simulate.Redis{Client: client, Model: c.String("model"), Alpha: c.Float64("alpha")}
				case "http":
					cfg.Recommender = &simulate.HTTP{URL: c.String("url"), Model: c.String("model"), Alpha: c.Float64("alpha")}
				default:
					return fmt.Errorf("--via %q: want redis or http", c.String("via"))
				}
				sum, err := simulate.Run(c.Context, cfg)
				if ferr := sink.Flush(c.Context); err == nil {
					err = ferr
				}
				if err != nil {
					return err
				}
				w := c.App.Writer
				fmt.Fprintf(w, "visits %d  events sent %d  (feedback %s)\n", sum.Visits, sum.Sent, feedbackText(sum))
				for _, pol := range []string{simulate.LinUCB, simulate.Random, simulate.Oracle} {
					fmt.Fprintf(w, "  %-7s CTR %.4f  last quarter %.4f\n", pol, sum.CTR[pol], sum.CTRLast[pol])
				}
				fmt.Fprintf(w, "  recommend p50 %v  p99 %v\n", simulate.Percentile(sum.Latency, .5), simulate.Percentile(sum.Latency, .99))
				if d := sum.Drift; d != nil {
					fmt.Fprintf(w, "  drift after visit %d: linucb / oracle %.1f%% before, %.1f%% after; back to %.0f%% within %d visits (-1: not in this run)\n",
						d.At, 100*d.OracleShareBefore, 100*d.OracleShareAfter, 100*simulate.RecoveryShare, d.RecoveredWithin)
				}
				if c.Bool("json") {
					out := map[string]any{"visits": sum.Visits, "alpha": c.Float64("alpha"), "ctr": sum.CTR, "ctr_last": sum.CTRLast, "events_sent": sum.Sent, "feedback": sum.Feedback, "impressions": sum.Impressions}
					if d := sum.Drift; d != nil {
						out["drift_at"], out["oracle_share_before"], out["oracle_share_after"], out["recovered_within"] = d.At, d.OracleShareBefore, d.OracleShareAfter, d.RecoveredWithin
					}
					b, _ := json.Marshal(out)
					fmt.Fprintln(w, string(b))
				}
				return nil
			})
		},
	}
}
