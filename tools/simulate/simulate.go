// Package simulate plays the reference shop's visitors against a live
// recommender: for each visit it picks a user and a time, builds the context
// through the feature spec, asks for the top 5, lets the simulated user
// click by the hidden ground truth, and sends the feedback event on — the
// Act step of the Read → Act → Learn → Write loop.
//
// Every visit is scored three ways on the same random numbers: the served
// policy (LinUCB through Redis or the sidecar, or one of the others), a
// uniformly random choice (the floor) and the oracle that knows the ground
// truth (the ceiling). The user examines the five products in order and
// clicks the first one whose click draw falls under its click probability;
// the same five draws decide for every policy, so their click rates differ
// only by what they recommend.
//
// What the served policy learns from a visit is the simulator's choice
// (Config.Feedback): one event (the click, or the first product shown with
// reward 0) or one per shown product (impressions, or reward: the same
// events, made by the joiner from the decision log and the click's reward
// by event id). How the feedback travels is the Sink's.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/joiner"
)

// Policies.
const (
	LinUCB = "linucb" // the model, through a Recommender
	Random = "random" // five distinct products uniformly at random
	Oracle = "oracle" // the five highest true click probabilities
)

// Slate is the number of products shown per visit.
const Slate = 5

// Feedback settings (Config.Feedback).
const (
	// FeedbackOne: one event per visit, the clicked product with reward 1,
	// or the first product shown with reward 0 when nothing is clicked.
	FeedbackOne = "one"
	// FeedbackImpressions: one event per shown product that counts (see
	// Config.Impressions), the clicked one with reward 1, the others 0. A
	// product shown and passed over is evidence too: with one event per
	// visit, most of what a slate shows is never learned from.
	FeedbackImpressions = "impressions"
	// FeedbackReward: rank, then reward by event id, as a shop does through
	// the sidecar: the Sink sends only the clicked product's reward with
	// the event id the recommender answered (Visit.EventID), and the joiner
	// emits, from the sidecar's decision log, the same events as
	// FeedbackImpressions — the click with reward 1 and the other counted
	// products with 0 when the reward wait ends. Feedback.Impressions are
	// those expected events.
	FeedbackReward = "reward"
)

// Impressions settings (Config.Impressions): which shown products count
// with FeedbackImpressions.
const (
	// ImpressionsAbove: the clicked product and those above it — the user
	// examines the slate top down, so the products below the click were
	// maybe never looked at. With no click, all count.
	ImpressionsAbove = "above"
	// ImpressionsAll: every shown product. It teaches the model that
	// products below a click were not wanted, though they were never
	// examined: on the reference shop it learns worse than one event per
	// visit.
	ImpressionsAll = "all"
)

// Recommender returns the top k product ids for a visit.
type Recommender interface {
	Recommend(ctx context.Context, v *Visit, k int) ([]string, error)
}

// Sink receives the feedback of each served visit.
type Sink interface {
	Send(ctx context.Context, fb Feedback) error
}

// Feedback is what one served visit teaches the model: the shown products
// that count, each with its reward, as Config.Feedback decides. A Sink
// decides how that travels; Events gives the self-contained events the
// trainer folds.
type Feedback struct {
	EventID     string   // the visit's event id, sim-<seed>-<visit>
	Visit       *Visit   // the visit (its context is Visit.X)
	Slate       []string // the products shown, top first
	Clicked     int      // the clicked position in Slate, or -1
	Impressions []Impression
}

// Impression is one shown product that counts, with its reward.
type Impression struct {
	EventID   string // unique: the visit's with FeedbackOne, the visit's and "-<position>" with FeedbackImpressions, the joiner's with FeedbackReward
	Position  int    // in the slate, 0 at the top
	ProductID string
	Reward    float64
}

// Events returns one self-contained feedback event per impression: the
// product, the reward and the visit's encoded context.
func (fb Feedback) Events() []event.Event {
	evs := make([]event.Event, len(fb.Impressions))
	for i, im := range fb.Impressions {
		evs[i] = event.Event{EventID: im.EventID, ProductID: im.ProductID, Reward: im.Reward,
			ContextVector: fb.Visit.X, Timestamp: fb.Visit.At.UnixMilli()}
	}
	return evs
}

// Visit is one simulated visit.
type Visit struct {
	N          int // 1-based
	User       scenario.User
	At         time.Time
	Attributes map[string]any // raw attributes, as the sidecar takes them
	X          []float64      // the context encoded by the spec
	// EventID is the event id the Recommender answered with (the
	// sidecar's), or empty.
	EventID string
	draws   [Slate]float64 // the user's click draws, one per slate position
}

// Config configures Run. Zero values take the defaults.
type Config struct {
	Visits      int       // default 20,000
	Policy      string    // the policy served and fed back: linucb (default), random or oracle
	Rate        float64   // visits per second; 0 = as fast as possible
	Seed        uint64    // seed of the visits (users, times, draws); default 1
	DataSeed    uint64    // seed of the catalogue and users (datagen's --seed); default 1
	Now         time.Time // visits fall in the 7 days before; default time.Now()
	Window      int       // visits in the rolling CTR; default 1,000
	Feedback    string    // FeedbackOne, FeedbackImpressions (default) or FeedbackReward
	Impressions string    // with FeedbackImpressions or FeedbackReward: ImpressionsAbove (default) or ImpressionsAll

	Recommender Recommender // required for the linucb policy
	Sink        Sink        // required: where feedback goes
	Out         io.Writer   // one line per visit and progress; nil: none
	Every       int         // with Out, print a CTR line every this many visits (default 1,000); per-visit lines if Verbose
	Verbose     bool        // print one line per visit
	Live        *Live       // if set, updated after every visit
	Logger      *slog.Logger

	// DriftAt, if positive, changes the tastes after this many visits: the
	// users click by the ground truth's Drifted model from the next visit
	// on (scenario.Drift), and the summary reports the recovery (Drift).
	DriftAt int
}

// Summary is the outcome of a run.
type Summary struct {
	Visits  int                `json:"visits"`
	Policy  string             `json:"policy"`
	CTR     map[string]float64 `json:"ctr"`      // over all visits, by policy
	CTRLast map[string]float64 `json:"ctr_last"` // over the last quarter of the visits made
	Clicks  map[string]int     `json:"clicks"`
	Sent    int                `json:"events_sent"` // feedback events (impressions) sent; with FeedbackReward, those the joiner is to emit
	// Feedback and Impressions are the settings of the run.
	Feedback    string `json:"feedback"`
	Impressions string `json:"impressions,omitempty"`
	// Curve holds, every Window/10 visits, the rolling CTR of each policy
	// over the last Window visits.
	Curve   []Point         `json:"-"`
	Latency []time.Duration `json:"-"` // of each Recommender call

	// Drift reports the change of tastes of a run with Config.DriftAt.
	*Drift `json:",omitempty"`
}

// Point is one sample of the learning curve.
type Point struct {
	Visit int
	CTR   map[string]float64
}

// ErrNoRecommender reports a linucb run without a Recommender.
var ErrNoRecommender = errors.New("simulate: the linucb policy needs a recommender")

// ErrNoEventID reports a FeedbackReward run whose Recommender answers
// without an event id (only the sidecar's does).
var ErrNoEventID = errors.New("the recommender answered no event id: a reward by event id needs the sidecar")

// ErrSetting reports an unknown feedback or impressions setting.
var ErrSetting = errors.New("simulate: unknown setting")

// CheckFeedback returns ErrSetting, wrapped, unless feedback and
// impressions are known settings (or empty: the defaults).
func CheckFeedback(feedback, impressions string) error {
	switch {
	case feedback != "" && feedback != FeedbackOne && feedback != FeedbackImpressions && feedback != FeedbackReward:
		return fmt.Errorf("%w: feedback %q (reward, impressions or one)", ErrSetting, feedback)
	case impressions != "" && impressions != ImpressionsAll && impressions != ImpressionsAbove:
		return fmt.Errorf("%w: impressions %q (above or all)", ErrSetting, impressions)
	}
	return nil
}

func (c *Config) defaults() error {
	if c.Visits == 0 {
		c.Visits = 20000
	}
	if c.Policy == "" {
		c.Policy = LinUCB
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.DataSeed == 0 {
		c.DataSeed = 1
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	if c.Window == 0 {
		c.Window = 1000
	}
	if c.Every == 0 {
		c.Every = 1000
	}
	if c.Feedback == "" {
		c.Feedback = FeedbackImpressions
	}
	if c.Impressions == "" {
		c.Impressions = ImpressionsAbove
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Policy != LinUCB && c.Policy != Random && c.Policy != Oracle:
		return fmt.Errorf("simulate: unknown policy %q (linucb, random or oracle)", c.Policy)
	case c.Policy == LinUCB && c.Recommender == nil:
		return ErrNoRecommender
	case CheckFeedback(c.Feedback, c.Impressions) != nil:
		return CheckFeedback(c.Feedback, c.Impressions)
	case c.Feedback == FeedbackReward && c.Policy != LinUCB:
		return fmt.Errorf("%w: feedback reward needs the linucb policy: only its slates are decisions with event ids", ErrSetting)
	case c.Sink == nil:
		return errors.New("simulate: no sink for the feedback")
	case c.DriftAt < 0:
		return fmt.Errorf("simulate: drift at visit %d", c.DriftAt)
	case c.Visits < 1 || c.Rate < 0:
		return fmt.Errorf("simulate: visits %d and rate %v must be positive", c.Visits, c.Rate)
	}
	return nil
}

// Run simulates cfg.Visits visits and returns the summary. It stops early,
// with the summary so far, when ctx is done.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	sp := spec.Reference()
	cat := scenario.Catalogue(cfg.DataSeed)
	users := scenario.Users(cfg.DataSeed)
	truth := scenario.NewTruth(cat)
	before, after := truth, truth.Drifted()
	byID := make(map[string]scenario.Product, len(cat))
	for _, p := range cat {
		byID[p.ID] = p
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5171))
	pick := rand.New(rand.NewPCG(cfg.Seed, 0x2a2d)) // the random policy's own stream

	policies := []string{LinUCB, Random, Oracle}
	if cfg.Recommender == nil {
		policies = []string{Random, Oracle}
	}
	sum := Summary{Policy: cfg.Policy, Feedback: cfg.Feedback, CTR: map[string]float64{}, CTRLast: map[string]float64{}, Clicks: map[string]int{}}
	if cfg.Feedback != FeedbackOne {
		sum.Impressions = cfg.Impressions
	}
	hits := map[string][]bool{}
	var tick *time.Ticker
	if cfg.Rate > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer tick.Stop()
	}
	for n := 1; n <= cfg.Visits; n++ {
		if tick != nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		if truth = before; cfg.DriftAt > 0 && n > cfg.DriftAt {
			truth = after
		}
		v := &Visit{N: n, User: users[rng.IntN(len(users))]}
		v.At = scenario.RandomTime(rng, cfg.Now)
		v.Attributes = v.User.Attributes(v.At)
		x, err := sp.Encode(v.Attributes)
		if err != nil {
			return sum, fmt.Errorf("simulate: visit %d: %w", n, err)
		}
		v.X = x
		for i := range v.draws {
			v.draws[i] = rng.Float64()
		}
		shown := map[string][]string{
			Random: randomSlate(pick, cat),
			Oracle: oracleSlate(truth, v, cat),
		}
		if cfg.Recommender != nil {
			start := time.Now()
			ids, err := cfg.Recommender.Recommend(ctx, v, Slate)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				return sum, fmt.Errorf("simulate: visit %d: recommend: %w", n, err)
			}
			sum.Latency = append(sum.Latency, time.Since(start))
			shown[LinUCB] = ids
			if cfg.Feedback == FeedbackReward && v.EventID == "" {
				return sum, fmt.Errorf("simulate: visit %d: %w", n, ErrNoEventID)
			}
		}
		clicked := map[string]int{}
		for _, pol := range policies {
			clicked[pol] = click(truth, v, shown[pol], byID)
			hit := clicked[pol] >= 0
			hits[pol] = append(hits[pol], hit)
			if hit {
				sum.Clicks[pol]++
			}
		}
		served := shown[cfg.Policy]
		if len(served) > 0 {
			fb := feedback(&cfg, v, served, clicked[cfg.Policy])
			if err := cfg.Sink.Send(ctx, fb); err != nil {
				if ctx.Err() != nil {
					break
				}
				return sum, fmt.Errorf("simulate: visit %d: send feedback: %w", n, err)
			}
			sum.Sent += len(fb.Impressions)
		}
		sum.Visits = n
		if cfg.Live != nil {
			cfg.Live.record(n, cfg.Window, clicked)
		}
		if n%max(1, cfg.Window/10) == 0 {
			p := Point{Visit: n, CTR: map[string]float64{}}
			for _, pol := range policies {
				p.CTR[pol] = rolling(hits[pol], cfg.Window)
			}
			sum.Curve = append(sum.Curve, p)
		}
		if cfg.Out != nil {
			if cfg.Verbose {
				c := "-"
				if i := clicked[cfg.Policy]; i >= 0 {
					c = served[i]
				}
				local := v.At.In(scenario.ShopZone)
				fmt.Fprintf(cfg.Out, "visit %6d  %s age %2d %s %s  shown %s  click %s\n", n, v.User.ID, v.User.Age,
					local.Format("Mon"), local.Format("15:04"), strings.Join(served, ","), c)
			}
			if n%cfg.Every == 0 {
				fmt.Fprintf(cfg.Out, "visits %6d  rolling CTR (last %d):%s\n", n, cfg.Window, ctrLine(policies, hits, cfg.Window))
			}
		}
	}
	// The last quarter of the visits made (all of them if interrupted early).
	last := max(1, sum.Visits/4)
	for _, pol := range policies {
		if sum.Visits > 0 {
			sum.CTR[pol] = float64(sum.Clicks[pol]) / float64(sum.Visits)
			sum.CTRLast[pol] = rolling(hits[pol], last)
		}
	}
	if cfg.DriftAt > 0 && sum.Visits > 0 {
		sum.Drift = drift(hits[cfg.Policy], hits[Oracle], cfg.DriftAt, cfg.Window)
	}
	return sum, ctx.Err()
}

// feedback decides which of the served slate's products count, and with
// which reward, by cfg.Feedback and cfg.Impressions. With FeedbackReward
// they are the joiner's events, with its ids (decision id/product id).
func feedback(cfg *Config, v *Visit, slate []string, clicked int) Feedback {
	fb := Feedback{EventID: fmt.Sprintf("sim-%d-%d", cfg.Seed, v.N), Visit: v, Slate: slate, Clicked: clicked}
	if cfg.Feedback == FeedbackReward {
		fb.EventID = v.EventID
	}
	if cfg.Feedback == FeedbackOne {
		im := Impression{EventID: fb.EventID, Position: 0, ProductID: slate[0]}
		if clicked >= 0 {
			im.Position, im.ProductID, im.Reward = clicked, slate[clicked], 1
		}
		fb.Impressions = []Impression{im}
		return fb
	}
	shown := min(len(slate), Slate)
	if cfg.Impressions == ImpressionsAbove && clicked >= 0 {
		shown = clicked + 1
	}
	for i, id := range slate[:shown] {
		im := Impression{EventID: fmt.Sprintf("%s-%d", fb.EventID, i), Position: i, ProductID: id}
		if cfg.Feedback == FeedbackReward {
			im.EventID = joiner.EventID(fb.EventID, id)
		}
		if i == clicked {
			im.Reward = 1
		}
		fb.Impressions = append(fb.Impressions, im)
	}
	return fb
}

func ctrLine(policies []string, hits map[string][]bool, window int) string {
	var b strings.Builder
	for _, pol := range policies {
		fmt.Fprintf(&b, "  %s %.3f", pol, rolling(hits[pol], window))
	}
	return b.String()
}

func rolling(h []bool, window int) float64 {
	from := max(0, len(h)-window)
	n := 0
	for _, x := range h[from:] {
		if x {
			n++
		}
	}
	if len(h) == from {
		return 0
	}
	return float64(n) / float64(len(h)-from)
}

// click returns the slate position the user clicks, or -1.
func click(truth *scenario.Truth, v *Visit, slate []string, byID map[string]scenario.Product) int {
	for i, id := range slate {
		if i >= Slate {
			break
		}
		p, ok := byID[id]
		if ok && v.draws[i] < truth.Prob(v.User, p, v.At) {
			return i
		}
	}
	return -1
}

func randomSlate(rng *rand.Rand, cat []scenario.Product) []string {
	perm := rng.Perm(len(cat))[:Slate]
	out := make([]string, Slate)
	for i, j := range perm {
		out[i] = cat[j].ID
	}
	return out
}

// oracleSlate ranks the catalogue by true click probability.
func oracleSlate(truth *scenario.Truth, v *Visit, cat []scenario.Product) []string {
	type scored struct {
		id string
		p  float64
	}
	all := make([]scored, len(cat))
	for i, p := range cat {
		all[i] = scored{p.ID, truth.Prob(v.User, p, v.At)}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].p > all[j].p })
	out := make([]string, Slate)
	for i := range out {
		out[i] = all[i].id
	}
	return out
}

// Percentile returns the p-quantile (nearest rank) of durations.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
