package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/tools/demo"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole loop on this machine (Redis, Kafka, trainer, sidecar, simulated shop) and show the bandit learning",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "visits", Value: 20000, Usage: "visits to simulate"},
			&cli.BoolFlag{Name: "cold", Usage: "no history: start from an empty model (and --alpha 1.0 unless given)"},
			&cli.Float64Flag{Name: "alpha", DefaultText: "0.1 warm, 1.0 cold", Usage: "exploration weight"},
			&cli.StringFlag{Name: "via", Value: "http", Usage: "recommend through http (the sidecar, whose dashboard then shows the serving) or redis (EVALSHA)"},
			&cli.Float64Flag{Name: "rate", Value: demo.DefaultRate, Usage: "visits per second (-1: as fast as possible; see README on batch size)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the data and the visits"},
			&cli.StringFlag{Name: "feedback", DefaultText: "reward (impressions with --via redis)",
				Usage: "what a visit teaches and how it travels: reward (rank, then only the click's reward by event id to the sidecar; the joiner adds the impressions from the decision log), impressions (the simulator sends one event per shown product that counts, with the context) or one (one event with the context: the click, or the first product shown with reward 0)"},
			impressionsFlag(),
			&cli.DurationFlag{Name: "reward-wait", Value: demo.DefaultRewardWait, Usage: "with --feedback reward, the joiner's reward wait (short: the simulated user answers at once)"},
			&cli.DurationFlag{Name: "flush-interval", Value: demo.DefaultFlushInterval, Usage: "the trainer's flush interval"},
			&cli.StringSliceFlag{Name: "brokers", DefaultText: "an in-process broker", Usage: "a real Kafka"},
			&cli.StringFlag{Name: "redis-conf", Usage: "redis.conf to start Redis with (make demo passes the project's)"},
			&cli.StringFlag{Name: "listen", DefaultText: demo.DefaultListen + ", or a free loopback port if it is taken", Usage: "the sidecar's and dashboard's address"},
			&cli.BoolFlag{Name: "hold", Usage: "keep everything running after the visits, with the dashboard, until Ctrl-C"},
			&cli.BoolFlag{Name: "open", Usage: "open the dashboard in a browser (xdg-open, when there is a display)"},
			&cli.StringFlag{Name: "dir", DefaultText: "a temporary one, removed at the end", Usage: "working directory to keep (data, Redis AOF, ACL file)"},
			&cli.StringFlag{Name: "svg", Value: "demo-learning-curve.svg", Usage: "where to write the learning curve (empty: nowhere)"},
			&cli.StringFlag{Name: "env", Value: "demo.env", Usage: "where to write, while the demo runs, the export line of the serving user's Redis URL, the model and the sidecar for the README's examples (. demo.env; empty: nowhere)"},
			&cli.StringFlag{Name: "scenario", Value: scenario.Steady, Usage: "steady; new-products (the six coffees are missing from the history and launched when the visits start); drift (the tastes change after half the visits — coffee in the evening, no weekend pizza — with forgetting on; a first quiet run without forgetting on the same visits gives the comparison)"},
			&cli.Float64Flag{Name: "half-life", DefaultText: fmt.Sprintf("%d with --scenario drift, none otherwise", scenario.DriftHalfLife), Usage: "the model forgets: an event's weight halves every this many later events of its product (-1: never)"},
			&cli.StringFlag{Name: "prior", Value: demo.PriorFresh, Usage: "starting state of the products a scenario launches: fresh (A = λI, b = 0), pooled (from the arms of their category) or none (not registered: never scored, the baseline)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no line per visit"},
			&cli.BoolFlag{Name: "json", Usage: "end with the summary as one JSON object on the last line"},
		},
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			cfg := demo.Config{Visits: c.Int("visits"), Cold: c.Bool("cold"), Alpha: c.Float64("alpha"), Via: c.String("via"),
				Rate: c.Float64("rate"), Seed: c.Uint64("seed"), Feedback: c.String("feedback"), Impressions: c.String("impressions"), RewardWait: c.Duration("reward-wait"), FlushInterval: c.Duration("flush-interval"), Brokers: c.StringSlice("brokers"),
				RedisConf: c.String("redis-conf"), Listen: c.String("listen"), Dir: c.String("dir"), Out: w, Quiet: c.Bool("quiet"), Hold: c.Bool("hold"), EnvFile: c.String("env"),
				Scenario: c.String("scenario"), HalfLife: c.Float64("half-life"), Prior: c.String("prior")}
			if c.Bool("open") {
				cfg.OnReady = func(url string) { openBrowser(w, url+"/") }
			}
			var reported bool
			cfg.OnSummary = func(sum demo.Summary) {
				reported = true
				if err := report(c, sum); err != nil {
					fmt.Fprintf(w, "demo: %v\n", err)
				}
			}
			if c.String("log-level") == "debug" {
				cfg.Logger = slog.Default()
			}
			sum, err := demo.Run(c.Context, cfg)
			if err != nil {
				return err
			}
			if sum.Interrupted {
				fmt.Fprintf(w, "\ndemo: interrupted after %d visits; everything it started is stopped\n", sum.Visits)
			}
			if !reported {
				return report(c, sum)
			}
			return nil
		},
	}
}

// report prints the demo's summary, writes the learning curve and, with
// --json, the summary as JSON.
func report(c *cli.Context, sum demo.Summary) error {
	w := c.App.Writer
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nvisits\t%d\t(alpha %v, %s start)\n", sum.Visits, sum.Alpha, map[bool]string{true: "cold", false: "warm"}[sum.Cold])
	fmt.Fprintf(tw, "policy\tCTR\tCTR last quarter\n")
	for _, pol := range []string{simulate.LinUCB, simulate.Random, simulate.Oracle} {
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\n", pol, sum.CTR[pol], sum.CTRLast[pol])
	}
	fmt.Fprintf(tw, "linucb / oracle, last quarter\t%.1f%%\t\n", 100*sum.OracleShare)
	fmt.Fprintf(tw, "events sent / trained\t%d / %d\t(%d flushes; feedback %s)\n", sum.Sent, sum.EventsTrained, sum.Flushes, feedbackText(sum.Summary))
	if sum.Feedback == simulate.FeedbackReward {
		fmt.Fprintf(tw, "decisions / rewards logged\t%d / %d\t(joiner: %d events emitted, %d dead letters; reward wait %v)\n",
			sum.Decisions, sum.Rewards, sum.EventsEmitted, sum.DeadLetters, time.Duration(sum.RewardWaitMS)*time.Millisecond)
	}
	fmt.Fprintf(tw, "serving p50 / p99\t%.3f / %.3f ms\t\n", sum.ServingP50MS, sum.ServingP99MS)
	if sum.Launched > 0 {
		fmt.Fprintf(tw, "scenario %s\t%d products launched\t(%s prior)\n", sum.Scenario, sum.Launched, sum.Prior)
	}
	if d := sum.Drift; d != nil {
		fmt.Fprintf(tw, "scenario %s\ttastes change after visit %d\t(half-life %v events per product)\n", sum.Scenario, d.At, sum.HalfLife)
		fmt.Fprintf(tw, "linucb / oracle before / after\t%.1f%% / %.1f%%\t\n", 100*d.OracleShareBefore, 100*d.OracleShareAfter)
		fmt.Fprintf(tw, "back to %.0f%% of the oracle within\t%d visits\t(-1: not in this run)\n", 100*simulate.RecoveryShare, d.RecoveredWithin)
		if r := sum.RecoveredWithinNoForgetting; r != nil {
			fmt.Fprintf(tw, "... without forgetting\t%d visits\t(same visits)\n", *r)
		}
	}
	tw.Flush()
	if path := c.String("svg"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("svg: %w", err)
		}
		title := fmt.Sprintf("redbandit: rolling click rate, %s start, alpha %v", map[bool]string{true: "cold", false: "warm"}[sum.Cold], sum.Alpha)
		if err := demo.WriteSVG(f, title, sum.Curve); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(w, "learning curve: %s\n", path)
	}
	if c.Bool("json") {
		b, err := json.Marshal(sum)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
	}
	return nil
}

// feedbackFlag and impressionsFlag are demo's and simulate's choice of
// what a visit teaches (simulate.Config.Feedback and Impressions).
func feedbackFlag() cli.Flag {
	return &cli.StringFlag{Name: "feedback", Value: simulate.FeedbackImpressions,
		Usage: "what a visit teaches: one (the click, or the first product shown with reward 0) or impressions (every shown product that counts: the click 1, the others 0)"}
}

func impressionsFlag() cli.Flag {
	return &cli.StringFlag{Name: "impressions", Value: simulate.ImpressionsAbove,
		Usage: "with --feedback impressions or reward, the shown products that count: above (the click and those above it; all when nothing is clicked) or all"}
}

// feedbackText names a run's feedback setting: "one", "impressions all", …
func feedbackText(sum simulate.Summary) string {
	if sum.Impressions == "" {
		return sum.Feedback
	}
	return sum.Feedback + " " + sum.Impressions
}

// openBrowser opens url with xdg-open when there is a display; otherwise, or
// if that fails, the printed URL is all there is.
func openBrowser(w io.Writer, url string) {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return
	}
	if err := exec.Command("xdg-open", url).Start(); err != nil {
		fmt.Fprintf(w, "demo: could not open a browser (%v); open %s\n", err, url)
	}
}
