// Package demo runs redbandit's whole loop on one machine — Redis, Kafka,
// the trainer, the sidecar and the simulated shop — and reports how fast the
// bandit learns: Read (Redis) → Act (feedback to Kafka) → Learn (trainer) →
// Write (Redis).
//
// Run starts a redis-server (the project's redis.conf when given, with the
// least-privilege ACL users and fresh random passwords), an in-process Kafka
// broker unless Brokers names a real one, generates the reference shop's
// data, warm-starts the model from its 10,000-event history (or starts cold),
// runs the trainer, the joiner and the sidecar in-process, plays the
// visits, and stops everything it started before it returns.
//
// By default (Feedback simulate.FeedbackReward, through the sidecar) the
// visits travel as a shop's would: the sidecar logs each decision, the
// simulated user's click goes back as a reward by event id, and the joiner
// turns decisions and rewards into the feedback events the trainer folds.
// With FeedbackImpressions or FeedbackOne (and always with Via "redis",
// which has no event ids) the simulator sends self-contained feedback
// events to the feedback topic itself.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
	"github.com/redbandit/redbandit/ops/doctor"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
	"github.com/redbandit/redbandit/trainer"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/joiner"
	kafkatopic "github.com/redbandit/redbandit/training/topic"
)

// Config configures a demo run. Zero values take the defaults.
type Config struct {
	Visits        int           // default 20,000
	Cold          bool          // no history: the model starts empty
	Alpha         float64       // default 0.1 warm, 1.0 cold
	Via           string        // "http" (default: through the sidecar, so its dashboard shows the serving) or "redis" (EVALSHA)
	Rate          float64       // visits per second; default DefaultRate; < 0: as fast as possible
	Seed          uint64        // seed of the data and the visits; default 1
	Feedback      string        // simulate.FeedbackReward (default through the sidecar), simulate.FeedbackImpressions (default with Via redis) or simulate.FeedbackOne
	Impressions   string        // with reward or impressions: simulate.ImpressionsAbove (default) or simulate.ImpressionsAll
	RewardWait    time.Duration // with reward: the joiner's reward wait; default DefaultRewardWait
	FlushInterval time.Duration // the trainer's; default DefaultFlushInterval (200 ms)
	Brokers       []string      // a real Kafka; default: an in-process broker
	RedisConf     string        // redis.conf to start Redis with; default: equivalent flags
	Dir           string        // working directory (data, Redis files); default a new temporary one, removed at the end
	Listen        string        // the sidecar's address; default DefaultListen, or a free loopback port if that is taken
	Out           io.Writer     // progress lines; default discard
	Quiet         bool          // no line per visit
	Logger        *slog.Logger  // the components' logs; default discard
	// EnvFile, if set, is where Run writes, once everything runs, the
	// shell line a client needs to reach this run (EnvLine); it removes
	// the file when it returns. Default: no file.
	EnvFile string
	// OnFeedback, if set, is called with each visit's feedback once its
	// sink took it (tests compare it with what was trained).
	OnFeedback func(simulate.Feedback)
	// OnReady, if set, is called once every component runs, with the
	// sidecar's base URL (its dashboard is at the root).
	OnReady func(sidecarURL string)
	// Hold keeps every component running after the visits, so the
	// dashboard stays up, until ctx is done. OnSummary, if set, receives the
	// summary when the visits end (before holding).
	Hold      bool
	OnSummary func(Summary)

	// Scenario is the shop's (package scenario): scenario.Steady (default),
	// scenario.NewProducts (the coffees launched after a history without
	// them) or scenario.Drift (the tastes change after half the visits;
	// the demo first runs the same visits without forgetting, quietly, and
	// reports both recoveries).
	Scenario string
	// HalfLife is the model's half-life in events per product
	// (forgetting): 0 takes the scenario's (scenario.DriftHalfLife for
	// drift, none otherwise), negative means none.
	HalfLife float64
	// Prior is the starting state of the products a scenario launches:
	// PriorFresh (default) or PriorPooled.
	Prior string

	single   bool            // the drift scenario's runs: no second run
	baseline *simulate.Drift // the drift scenario's run without forgetting
}

// Summary is the outcome of a demo run.
type Summary struct {
	simulate.Summary
	Alpha         float64 `json:"alpha"`
	Cold          bool    `json:"cold"`
	EventsTrained int64   `json:"events_trained"`
	Flushes       int64   `json:"flushes"`
	ServingP50MS  float64 `json:"serving_p50_ms"`
	ServingP99MS  float64 `json:"serving_p99_ms"`
	OracleShare   float64 `json:"linucb_share_of_oracle_last"` // CTRLast linucb / oracle
	Interrupted   bool    `json:"interrupted,omitempty"`       // stopped by the context before all visits
	// With FeedbackReward, what travelled: the decisions and rewards on
	// the decision log, the feedback events the joiner emitted (committed)
	// and its dead letters.
	RewardWaitMS  int64  `json:"reward_wait_ms,omitempty"`
	Decisions     int64  `json:"decisions,omitempty"`
	Rewards       int64  `json:"rewards,omitempty"`
	EventsEmitted int64  `json:"events_emitted,omitempty"`
	DeadLetters   int64  `json:"dead_letters,omitempty"`
	SidecarURL    string `json:"-"`

	Scenario string  `json:"scenario"`
	HalfLife float64 `json:"half_life,omitempty"` // the model's, in events per product
	Launched int     `json:"launched,omitempty"`  // products the scenario launched after the history
	Prior    string  `json:"prior,omitempty"`     // their starting state
	// With the drift scenario: simulate.Drift's recovered_within, of the
	// first run on the same visits with forgetting off.
	RecoveredWithinNoForgetting *int `json:"recovered_within_no_forgetting,omitempty"`
}

func (c *Config) defaults() {
	if c.Visits == 0 {
		c.Visits = 20000
	}
	if c.Alpha == 0 {
		c.Alpha = 0.1
		if c.Cold {
			c.Alpha = 1.0
		}
	}
	if c.Via == "" {
		c.Via = "http"
	}
	if c.Feedback == "" {
		c.Feedback = simulate.FeedbackReward
		if c.Via == "redis" {
			c.Feedback = simulate.FeedbackImpressions
		}
	}
	if c.Impressions == "" {
		// The simulator's default; the joiner's alone would be all.
		c.Impressions = simulate.ImpressionsAbove
	}
	if c.RewardWait == 0 {
		c.RewardWait = DefaultRewardWait
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	switch {
	case c.Rate == 0:
		c.Rate = DefaultRate
	case c.Rate < 0:
		c.Rate = 0
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Scenario == "" {
		c.Scenario = scenario.Steady
	}
	if c.Prior == "" {
		c.Prior = PriorFresh
	}
}

const model = "demo"

// Defaults of the demo's pace. LinUCB is deterministic: between two
// flushes every similar visitor gets the same slate, so the feedback of a
// whole batch lands on the same few products. What counts is visits per
// flush, not events (impressions send up to five per visit). Measured
// offline (in-memory LinUCB, cold start, α = 1.0, 20,000 visits, share of
// the oracle's click rate over the last quarter), updating every 100 / 200
// / 500 visits: 99.3% / 99.7% / 65% with impressions above the click,
// 96.7% / 95.1% / 65% with one event per visit. The demo therefore paces
// the visits at DefaultRate and flushes every DefaultFlushInterval: about
// 100 visits per flush.
const (
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultRate          = 500.0 // visits per second
)

// DefaultRewardWait is the joiner's reward wait in the demo. The joiner's
// clock is each partition's record time, and the simulated user answers at
// once: its reward is on the log a few milliseconds after the decision, so
// a short wait loses none, while every millisecond of it delays the zeros
// of the products passed over — at DefaultRate, 300 ms is 150 visits whose
// slates do not yet know them. A shop's users answer in minutes: there,
// the 10-minute default of redbandit trainer.
const DefaultRewardWait = 300 * time.Millisecond

// DefaultListen is the sidecar's (and its dashboard's) address when it is
// free.
const DefaultListen = "127.0.0.1:8080"

// Run runs the demo; see the package comment.
func Run(ctx context.Context, cfg Config) (sum Summary, err error) {
	cfg.defaults()
	if cfg.Via != "redis" && cfg.Via != "http" {
		return sum, fmt.Errorf("demo: --via %q: want redis or http", cfg.Via)
	}
	if err := simulate.CheckFeedback(cfg.Feedback, cfg.Impressions); err != nil {
		return sum, fmt.Errorf("demo: %w", err)
	}
	if err := scenario.CheckScenario(cfg.Scenario); err != nil {
		return sum, fmt.Errorf("demo: %w", err)
	}
	if err := checkPrior(cfg.Prior); err != nil {
		return sum, err
	}
	if cfg.Scenario == scenario.Drift && !cfg.single {
		return runDrift(ctx, cfg)
	}
	byEventID := cfg.Feedback == simulate.FeedbackReward
	if byEventID && cfg.Via == "redis" {
		return sum, fmt.Errorf("demo: %w: feedback reward needs --via http: EVALSHA answers no event id", simulate.ErrSetting)
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "redbandit-demo-"); err != nil {
			return sum, fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, "demo: "+format+"\n", args...) }

	// Redis with the least-privilege users.
	pw := acl.Passwords{Serve: secret(), Trainer: secret(), Admin: secret()}
	rds, err := startRedis(ctx, dir, cfg.RedisConf, pw)
	if err != nil {
		return sum, err
	}
	defer rds.stop()
	say("redis-server on %s (ACL users %s, %s, %s)", rds.addr, acl.AdminUser, acl.TrainerUser, acl.ServeUser)
	admin, err := rds.client(acl.AdminUser, pw.Admin)
	if err != nil {
		return sum, err
	}
	defer admin.Close()
	trainerRedis, err := rds.client(acl.TrainerUser, pw.Trainer)
	if err != nil {
		return sum, err
	}
	defer trainerRedis.Close()
	serve, err := rds.client(acl.ServeUser, pw.Serve)
	if err != nil {
		return sum, err
	}
	defer serve.Close()
	if err := store.Load(ctx, admin); err != nil {
		return sum, fmt.Errorf("demo: load the scripts: %w", err)
	}
	// redbandit doctor, as an operator would run it: a FAIL stops the demo.
	report := doctor.Run(ctx, admin)
	if !cfg.Quiet {
		for _, res := range report {
			say("doctor: %s", res)
		}
	}
	if failed := report.Failed(); len(failed) > 0 {
		return sum, fmt.Errorf("demo: redbandit doctor failed: %v", failed)
	}

	// Kafka.
	brokers := cfg.Brokers
	topic, group := trainer.DefaultTopic, trainer.DefaultGroup
	decisions, joinGroup := decision.DefaultTopic, joiner.DefaultGroup
	if len(brokers) == 0 {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, trainer.DefaultTopic, decisions, trainer.DefaultTopic+kafkatopic.DLQSuffix))
		if err != nil {
			return sum, fmt.Errorf("demo: in-process kafka: %w", err)
		}
		defer cluster.Close()
		brokers = cluster.ListenAddrs()
		say("in-process Kafka broker on %s", brokers[0])
	} else {
		// A topic and group of this run's own, so that the events of an
		// earlier run on the same broker are not folded into this model.
		suffix := secret()[:8]
		topic, group = "redbandit-demo-"+suffix, "redbandit-demo-"+suffix
		decisions, joinGroup = topic+"-decisions", group+"-joiner"
		say("Kafka brokers %v, topic %s", brokers, topic)
		if err := kafkatopic.Ensure(ctx, brokers, 6, topic, decisions, topic+kafkatopic.DLQSuffix); err != nil {
			return sum, fmt.Errorf("demo: %w", err)
		}
	}

	// Data and the model.
	if err := scenario.GenerateScenario(dir, cfg.Seed, scenario.DefaultNow, cfg.Scenario); err != nil {
		return sum, err
	}
	history := filepath.Join(dir, scenario.LogFile)
	if cfg.Cold {
		// A log with the header only creates the empty model with its spec.
		history = filepath.Join(dir, "empty_log.csv")
		if err := emptyLog(history); err != nil {
			return sum, err
		}
	}
	boot, err := bootstrap.Run(ctx, trainerRedis, history, bootstrap.Config{Model: model, Spec: spec.Reference(), HalfLife: cfg.modelHalfLife()})
	if err != nil {
		return sum, fmt.Errorf("demo: bootstrap: %w", err)
	}
	if cfg.Cold {
		// Every product of the catalogue starts as a fresh arm, so the
		// whole catalogue is scored (and explored) from the first visit.
		if err := registerCatalogue(ctx, trainerRedis, scenario.Catalogue(cfg.Seed)); err != nil {
			return sum, err
		}
	}
	say("model %s: %d historical events folded (%s start), alpha %v", model, boot.Events, map[bool]string{true: "cold", false: "warm"}[cfg.Cold], cfg.Alpha)
	if sum.Launched, err = launch(ctx, trainerRedis, cfg); err != nil {
		return sum, err
	}
	sum.Scenario, sum.HalfLife = cfg.Scenario, cfg.modelHalfLife()
	if sum.Launched > 0 {
		sum.Prior = cfg.Prior
		say("scenario %s: %d products launched after the history, starting from a %s prior", cfg.Scenario, sum.Launched, cfg.Prior)
	}
	if at := cfg.driftAt(); at > 0 {
		say("scenario %s: the tastes change after visit %d; half-life %v events per product", cfg.Scenario, at, sum.HalfLife)
	}

	// Trainer and sidecar, in-process, stopped by cancel.
	run, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var flushes, trained atomic.Int64
	errs := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := trainer.Run(run, trainer.Config{Brokers: brokers, Topic: topic, Group: group, Redis: trainerRedis, Model: model, FlushInterval: cfg.FlushInterval,
			Logger: cfg.Logger, OnFlush: func(st trainer.FlushStats) { flushes.Add(1); trained.Add(st.Events) }})
		if err != nil && run.Err() == nil {
			errs <- fmt.Errorf("demo: trainer: %w", err)
		}
	}()
	// No linger: the sidecar answers a reward once Kafka has it, and the
	// simulated user waits for that answer before the next visit.
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
	if err != nil {
		return sum, fmt.Errorf("demo: kafka producer: %w", err)
	}
	defer prod.Close()
	var decisionLog *kgo.Client // the sidecar's, as redbandit sidecar makes it: a bounded buffer of its own
	var travelled *counts
	if byEventID {
		if decisionLog, err = kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(sidecar.DefaultDecisionBuffer),
			kgo.ProducerLinger(5*time.Millisecond)); err != nil {
			return sum, fmt.Errorf("demo: kafka decision log: %w", err)
		}
		defer decisionLog.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := joiner.Run(run, joiner.Config{Brokers: brokers, DecisionsTopic: decisions, FeedbackTopic: topic, Group: joinGroup,
				TransactionalID: joinGroup + "-" + secret()[:8], Partitions: 6, RewardWait: cfg.RewardWait, Impressions: cfg.Impressions,
				Model: model, TickInterval: joinerTick, Logger: cfg.Logger})
			if err != nil && run.Err() == nil {
				errs <- fmt.Errorf("demo: joiner: %w", err)
			}
		}()
		if travelled, err = newCounts(brokers, decisions, topic, topic+kafkatopic.DLQSuffix); err != nil {
			return sum, err
		}
		defer travelled.close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			travelled.run(run)
		}()
	}
	var ln net.Listener
	if cfg.Listen != "" {
		ln, err = net.Listen("tcp", cfg.Listen)
	} else if ln, err = net.Listen("tcp", DefaultListen); err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return sum, fmt.Errorf("demo: sidecar: %w", err)
	}
	var live simulate.Live
	scfg := sidecar.Config{Redis: serve, Model: model, Producer: prod, Admin: kadm.NewClient(prod), Topic: topic, Logger: cfg.Logger,
		Simulation: func() sidecar.SimulationStats {
			visits, ctr := live.Snapshot()
			return sidecar.SimulationStats{Visits: visits, CTR: ctr}
		}}
	if byEventID {
		scfg.DecisionsTopic, scfg.DecisionLog = decisions, decisionLog
	}
	sc := sidecar.New(scfg)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sc.Serve(run, ln); err != nil && run.Err() == nil {
			errs <- err
		}
	}()
	url := "http://" + ln.Addr().String()
	sum.SidecarURL = url
	say("trainer flushing every %v; sidecar on %s", cfg.FlushInterval, url)
	say("dashboard: %s/", url)
	env := EnvLine(rds.addr, pw.Serve, url)
	say("for the README's examples, in another shell (as %s, the serving user): %s", acl.ServeUser, env)
	if cfg.EnvFile != "" {
		if err := writeEnv(cfg.EnvFile, env); err != nil {
			return sum, err
		}
		defer os.Remove(cfg.EnvFile)
		say("or: . %s", cfg.EnvFile)
	}
	if cfg.OnReady != nil {
		cfg.OnReady(url)
	}

	// The visits.
	codec, err := event.NewCodec(spec.Reference().Dim())
	if err != nil {
		return sum, err
	}
	kafkaSink := &simulate.Kafka{Client: prod, Topic: topic, Codec: codec}
	var sink simulate.Sink = kafkaSink
	if byEventID {
		sink = &simulate.Rewards{URL: url, Model: model}
		say("feedback: rewards by event id to the sidecar; the joiner adds the impressions (%s) when the reward wait (%v) ends", cfg.Impressions, cfg.RewardWait)
	}
	if cfg.OnFeedback != nil {
		sink = observed{sink, cfg.OnFeedback}
	}
	var rec simulate.Recommender = &simulate.Redis{Client: serve, Model: model, Alpha: cfg.Alpha}
	if cfg.Via == "http" {
		rec = &simulate.HTTP{URL: url, Model: model, Alpha: cfg.Alpha}
	}
	simDone := make(chan struct{})
	var simErr error
	go func() {
		defer close(simDone)
		sum.Summary, simErr = simulate.Run(run, simulate.Config{Visits: cfg.Visits, Rate: cfg.Rate, Seed: cfg.Seed, DataSeed: cfg.Seed,
			Now: scenario.DefaultNow, Feedback: cfg.Feedback, Impressions: cfg.Impressions, Recommender: rec, Sink: sink, Out: cfg.Out, Verbose: !cfg.Quiet, Live: &live,
			DriftAt: cfg.driftAt()})
	}()
	select {
	case <-simDone:
	case err := <-errs:
		cancel()
		<-simDone
		return sum, err
	}
	switch {
	case simErr != nil && ctx.Err() != nil && sum.Visits > 0:
		// Interrupted (Ctrl-C): report the visits so far.
		sum.Interrupted = true
	case simErr != nil:
		return sum, simErr
	default:
		if err := kafkaSink.Flush(ctx); err != nil {
			return sum, err
		}
		// Let the joiner end the last reward waits (a tick moves an idle
		// partition's clock) and the trainer fold the last events.
		deadline := time.Now().Add(cfg.FlushInterval*3 + 5*time.Second)
		if byEventID {
			deadline = deadline.Add(cfg.RewardWait + 2*joinerTick)
		}
		for trained.Load() < int64(sum.Sent) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if byEventID {
			// The counts read the same committed records the trainer did.
			for (travelled.emitted.Load() < trained.Load() || travelled.decisions.Load() < int64(sum.Visits) ||
				travelled.rewards.Load() < int64(sum.Clicks[simulate.LinUCB])) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	if byEventID {
		sum.RewardWaitMS = cfg.RewardWait.Milliseconds()
		sum.Decisions, sum.Rewards = travelled.decisions.Load(), travelled.rewards.Load()
		sum.EventsEmitted, sum.DeadLetters = travelled.emitted.Load(), travelled.dead.Load()
	}
	sum.Alpha, sum.Cold = cfg.Alpha, cfg.Cold
	sum.EventsTrained, sum.Flushes = trained.Load(), flushes.Load()
	sum.ServingP50MS = float64(simulate.Percentile(sum.Latency, .5)) / 1e6
	sum.ServingP99MS = float64(simulate.Percentile(sum.Latency, .99)) / 1e6
	if o := sum.CTRLast[simulate.Oracle]; o > 0 {
		sum.OracleShare = sum.CTRLast[simulate.LinUCB] / o
	}
	if cfg.baseline != nil {
		sum.RecoveredWithinNoForgetting = &cfg.baseline.RecoveredWithin
	}
	if cfg.OnSummary != nil {
		cfg.OnSummary(sum)
	}
	if cfg.Hold && !sum.Interrupted {
		say("the visits are done; everything keeps running and the dashboard stays at %s/ — Ctrl-C to stop", url)
		select {
		case <-ctx.Done():
		case err := <-errs:
			return sum, err
		}
	}
	return sum, nil
}
