package sidecar

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// The dashboard's HTTP half: GET /v1/dashboard (the samples of board.go
// as panels), POST /v1/arms and the page itself.

//go:embed ui
var uiFiles embed.FS

// DashboardResponse is the body of GET /v1/dashboard.
type DashboardResponse struct {
	Model     string           `json:"model"`
	NowMS     int64            `json:"now_ms"`
	Products  int              `json:"products"`
	CTR       CTRPanel         `json:"ctr"`
	Trainer   TrainerPanel     `json:"trainer"`
	Serving   ServingPanel     `json:"serving"`
	Scoring   ScoringPanel     `json:"scoring"`
	Simulator *SimulationStats `json:"simulator"`
}

// ScoringPanel says where this sidecar scores the model: Mode is its
// --scoring; with local, Copied tells whether a current copy serves now
// (else the script answers), AgeS is the copy's age in seconds (nil
// without one) and Products its products. Counts by path are on /metrics
// (redbandit_sidecar_scored_total).
type ScoringPanel struct {
	Mode     string   `json:"mode"`
	Copied   bool     `json:"copied"`
	AgeS     *float64 `json:"age_s"`
	Products int      `json:"products"`
}

// CTRPanel holds the rolling click rates over time. Observed is the mean
// reward of the last Window events folded into the model (nil before any);
// Linucb, Random and Oracle come from a simulator, if one runs.
type CTRPanel struct {
	Window int        `json:"window"`
	Points []CTRPoint `json:"points"`
}

// CTRPoint is one sample of CTRPanel.
type CTRPoint struct {
	T        int64    `json:"t"`
	Observed *float64 `json:"observed"`
	Linucb   *float64 `json:"linucb,omitempty"`
	Random   *float64 `json:"random,omitempty"`
	Oracle   *float64 `json:"oracle,omitempty"`
}

// TrainerPanel is the trainers' progress as seen in the model: events
// folded (per second over the last 10 s), the consumer lag (nil without a
// Kafka admin), dead-lettered events and the last flush.
type TrainerPanel struct {
	Events     int64    `json:"events"`
	Rewards    float64  `json:"rewards"`
	DLQ        int64    `json:"dlq"`
	EventsPerS *float64 `json:"events_per_s"`
	Lag        *int64   `json:"lag"`
	FlushInfo
	Points []TrainerPoint `json:"points"`
}

// TrainerPoint is one sample of TrainerPanel.
type TrainerPoint struct {
	T          int64    `json:"t"`
	EventsPerS *float64 `json:"events_per_s"`
	Lag        *int64   `json:"lag"`
}

// ServingPanel is this sidecar's POST /v1/recommend traffic: requests per
// second and failures (status ≥ 500) over the last 10 s, p50 and p99
// latency (server side) over the last 10 s.
type ServingPanel struct {
	ServingPoint
	Points []ServingPoint `json:"points"`
}

// dashboard serves GET /v1/dashboard[?model=M].
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) (int, any, error) {
	model := r.URL.Query().Get("model")
	if model == "" {
		model = s.cfg.Model
	}
	if _, err := s.modelInfo(r.Context(), model); err != nil {
		return 0, nil, err
	}
	b := s.board
	b.mu.Lock()
	tr := b.models[model]
	if tr == nil && len(b.models) >= boardModels {
		b.mu.Unlock()
		return 0, nil, badRequest("the dashboard follows %d models at most; none has been idle for %v", boardModels, boardIdle)
	}
	if tr == nil {
		tr = &track{}
		b.models[model] = tr
	}
	tr.asked = time.Now()
	fresh := len(tr.samples) == 0
	b.mu.Unlock()
	if fresh { // a model seen for the first time: sample it now
		if err := s.sampleModel(r.Context(), model, time.Now(), s.endOffsets(r.Context())); err != nil {
			return 0, nil, err
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	resp := DashboardResponse{Model: model, NowMS: now.UnixMilli(), Products: tr.arms,
		CTR: CTRPanel{Window: ctrWindow, Points: make([]CTRPoint, len(tr.samples))}}
	resp.Trainer.Points = make([]TrainerPoint, len(tr.samples))
	for i, smp := range tr.samples {
		p := CTRPoint{T: smp.t.UnixMilli(), Observed: observedCTR(tr.samples[:i+1])}
		if smp.sim != nil {
			p.Linucb, p.Random, p.Oracle = rate(smp.sim.CTR, "linucb"), rate(smp.sim.CTR, "random"), rate(smp.sim.CTR, "oracle")
		}
		resp.CTR.Points[i] = p
		resp.Trainer.Points[i] = TrainerPoint{T: p.T, EventsPerS: eventsPerSecond(tr.samples[:i+1]), Lag: smp.lag}
	}
	if n := len(tr.samples); n > 0 {
		last := tr.samples[n-1]
		resp.Trainer.Events, resp.Trainer.Rewards, resp.Trainer.DLQ = last.events, last.rewards, last.invalid
		resp.Trainer.EventsPerS, resp.Trainer.Lag = resp.Trainer.Points[n-1].EventsPerS, last.lag
		resp.Simulator = last.sim
	}
	resp.Trainer.FlushInfo = tr.flush
	resp.Serving.Points = slices.Clone(b.servings)
	resp.Serving.ServingPoint = b.serving.point(now)
	resp.Scoring = s.scoringPanel(model)
	return http.StatusOK, resp, nil
}

func rate(m map[string]float64, k string) *float64 {
	v, ok := m[k]
	if !ok {
		return nil
	}
	return &v
}

// ArmsResponse is the body of POST /v1/arms: the products with the most
// events (all of them up to Limit), and for the given context each one's
// estimate xᵀθ, bonus α·√(xᵀA⁻¹x) and score.
type ArmsResponse struct {
	Model    string      `json:"model"`
	Alpha    float64     `json:"alpha"`
	Context  []float64   `json:"context"`
	Products int         `json:"products"`
	Arms     []ArmDetail `json:"arms"`
}

// ArmDetail is one product of ArmsResponse. MeanReward is the mean of the
// rewards folded into it (nil with no events).
type ArmDetail struct {
	ID         string   `json:"id"`
	Events     int64    `json:"events"`
	MeanReward *float64 `json:"mean_reward"`
	Estimate   float64  `json:"estimate"`
	Bonus      float64  `json:"bonus"`
	Score      float64  `json:"score"`
}

// armsRequest is the body of POST /v1/arms.
type armsRequest struct {
	Model      string          `json:"model"`
	Context    json.RawMessage `json:"context"`
	Attributes map[string]any  `json:"attributes"`
	Alpha      *float64        `json:"alpha"`
	Limit      *int            `json:"limit"`
}

// Limits of POST /v1/arms.
const (
	defaultArmsLimit = 200
	maxArmsLimit     = 5000
)

// arms serves POST /v1/arms. It reads the model's metadata, the product
// index and every arm's event count, then θ and A⁻¹ of the Limit products
// with the most events: four round trips, the last two pipelined.
func (s *Server) arms(w http.ResponseWriter, r *http.Request) (int, any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	var req armsRequest
	if err := s.decode(w, r, &req); err != nil {
		return 0, nil, err
	}
	model := req.Model
	if model == "" {
		model = s.cfg.Model
	}
	alpha, limit := s.cfg.Alpha, defaultArmsLimit
	if req.Alpha != nil {
		alpha = *req.Alpha
	}
	if !(alpha >= 0) || math.IsInf(alpha, 0) {
		return 0, nil, badRequest("alpha must be a finite number >= 0")
	}
	if req.Limit != nil {
		limit = *req.Limit
	}
	if limit < 1 || limit > maxArmsLimit {
		return 0, nil, badRequest("limit must be in 1..%d, got %d", maxArmsLimit, limit)
	}
	meta, err := store.ReadMeta(ctx, s.cfg.Redis, model) // the arm count now, not as cached
	if err != nil {
		return 0, nil, err
	}
	x, err := s.context(ctx, model, recommendRequest{Model: model, Context: req.Context, Attributes: req.Attributes})
	if err != nil {
		return 0, nil, err
	}
	d := meta.Dim
	if len(x) != d {
		return 0, nil, badRequest("context has %d values, the model %d", len(x), d)
	}
	ids, err := store.ReadProducts(ctx, s.cfg.Redis, model, meta.Arms)
	if err != nil {
		return 0, nil, err
	}
	counts, err := store.ReadCounts(ctx, s.cfg.Redis, model, ids)
	if err != nil {
		return 0, nil, err
	}
	all := make([]ArmDetail, len(ids))
	for i, cn := range counts {
		all[i] = ArmDetail{ID: cn.ID, Events: cn.Events}
		if m, ok := cn.MeanReward(); ok {
			all[i].MeanReward = &m
		}
	}
	slices.SortStableFunc(all, func(a, b ArmDetail) int { return cmpEvents(a, b) })
	all = all[:min(limit, len(all))]
	top := make([]string, len(all))
	for i, a := range all {
		top[i] = a.ID
	}
	params, err := store.ReadParams(ctx, s.cfg.Redis, model, d, top)
	if err != nil {
		return 0, nil, err
	}
	for i, a := range params {
		p := a.Params
		if !a.Stored {
			p = store.PriorParams(d, meta.Lambda)
		}
		mean, quad := linucb.MeanVar(x, p)
		all[i].Estimate, all[i].Bonus = mean, alpha*math.Sqrt(quad)
		all[i].Score = all[i].Estimate + all[i].Bonus
	}
	return http.StatusOK, ArmsResponse{Model: model, Alpha: alpha, Context: x, Products: len(ids), Arms: all}, nil
}

// cmpEvents orders arms by events, most first, then by id.
func cmpEvents(a, b ArmDetail) int {
	switch {
	case a.Events != b.Events:
		if a.Events > b.Events {
			return -1
		}
		return 1
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}

// uiHandler serves the page and its assets.
func uiHandler() (index, assets http.Handler) {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	page, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	index = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})
	return index, http.StripPrefix("/ui/", http.FileServerFS(sub))
}
