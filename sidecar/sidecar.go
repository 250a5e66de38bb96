// Package sidecar is redbandit's HTTP shim for clients that do not speak
// Redis: one EVALSHA (or FCALL_RO) per recommendation (or, with
// Config.Scoring local, a copy of the model scored in Go: local.go),
// contexts given as a dense vector, as named features or as raw attributes
// encoded by the model's feature spec, plus health, readiness, model info
// and Prometheus metrics.
//
// Endpoints:
//
//	POST /v1/recommend        {"model", "context" | "attributes", "k", "alpha", "candidates", "exclude"}
//	POST /v1/feedback         {"event_id", "product_id", "reward", "context" | "attributes", "timestamp"} or {"events": [...]};
//	                          {"event_id", "product_id", "reward"} alone: a reward by event id (decision log)
//	POST /v1/explain          as recommend; each item's score split into estimate and exploration bonus (?log=true: logged)
//	GET  /v1/models/{model}   dimension, features, groups, spec, products, events, last write
//	GET  /healthz             the process is alive
//	GET  /readyz              Redis answers, the scripts are loaded, Kafka answers (with feedback on)
//	GET  /metrics             Prometheus metrics
//	GET  /                    the dashboard (a page polling the next two)
//	GET  /v1/dashboard        click rates, trainer progress and serving over time (?model=M)
//	POST /v1/arms             every product's events, mean reward, estimate and bonus for a context
//
// Errors are JSON {"error": "…"}: 400 for a malformed or invalid request,
// 404 for an unknown model, 413 for a body over the limit, 503 when Redis is
// unreachable or too slow, 500 for a model whose stored data is malformed.
package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/decision"
)

// Defaults of Config.
const (
	DefaultListen        = "127.0.0.1:8080"
	DefaultModel         = "default"
	DefaultK             = 5
	DefaultMaxK          = 1000 // the script holds Redis longer the larger k is (docs/BENCHMARKS.md)
	DefaultMaxBody       = 64 << 10
	DefaultTimeout       = 2 * time.Second
	DefaultMetaTTL       = 5 * time.Second
	DefaultBoardInterval = time.Second
	shutdownTimeout      = 10 * time.Second
)

// Config configures the sidecar. Zero values take the defaults above.
type Config struct {
	Listen  string         // listen address; default 127.0.0.1:8080
	Redis   rueidis.Client // required
	Model   string         // model of requests that name none; default "default"
	K       int            // products per recommendation when the request says none; default 5
	MaxK    int            // the largest k a request may ask for; default 1000
	Alpha   float64        // exploration weight when the request says none; default 0.1 (linucb.DefaultAlpha) unless AlphaSet
	FCall   bool           // score with FCALL_RO instead of EVALSHA_RO
	MaxBody int64          // request body limit in bytes; default 64 KiB
	Timeout time.Duration  // per-request limit on Redis; default 2s
	MetaTTL time.Duration  // how long model metadata (features, spec) is cached; default 5s
	Logger  *slog.Logger   // default slog.Default()

	// AlphaSet makes Alpha count as given even when it is 0 (no
	// exploration: the estimate alone), which its zero value cannot say.
	AlphaSet bool

	// Brokers enable feedback capture (POST /v1/feedback): Run connects an
	// idempotent producer to them. Default none: feedback answers 503.
	Brokers []string
	// Topic receives the feedback; default "feedback-events".
	Topic string
	// Producer, if set, is used instead of one made from Brokers (tests).
	Producer Producer
	// DecisionsTopic, if set, is the decision log: every recommendation
	// (and explanation asked with ?log=true) is produced to it, and POST
	// /v1/feedback takes rewards by event id. Default none; the command's
	// --decisions-topic defaults to "decisions".
	DecisionsTopic string
	// DecisionBuffer bounds the decisions waiting for Kafka; default
	// DefaultDecisionBuffer. Beyond it decisions are dropped and counted.
	DecisionBuffer int
	// DecisionLog, if set, is used instead of a producer made from Brokers
	// for the decision log (tests).
	DecisionLog DecisionProducer
	// SchemaRegistry, if set, is the URL of a schema registry with which
	// Run registers the decision log's schemas; their ids go in the wire
	// header. Default none: the fixed ids of package decision.
	SchemaRegistry string
	// Admin, if set, lets the dashboard compute the consumer lag of Topic.
	// Run makes one from Brokers. Default none: the lag is unknown.
	Admin Admin

	// Scoring is where recommendations are scored: ScoringRedis (default,
	// the scoring script) or ScoringLocal (a copy of each model in the
	// sidecar, refreshed from the model's change record; the script
	// answers while a model has no current copy). See local.go.
	Scoring string
	// LocalMaxProducts: a model with more products is not copied; default
	// 50,000.
	LocalMaxProducts int
	// MaxStaleness: a copy not known current for longer is not used;
	// default 1s.
	MaxStaleness time.Duration
	// LocalPoll is how often copies are refreshed; default 10ms.
	LocalPoll time.Duration

	// BoardInterval is the dashboard's sampling period; default 1s.
	BoardInterval time.Duration
	// Simulation, if set, is sampled with the default model for the
	// dashboard: a simulator's click rates (the demo's). Default none.
	Simulation func() SimulationStats
}

// Producer is the part of a franz-go client the sidecar uses.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Ping(ctx context.Context) error
}

func (c *Config) withDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.K == 0 {
		c.K = DefaultK
	}
	if c.MaxK == 0 {
		c.MaxK = DefaultMaxK
	}
	if c.Alpha == 0 && !c.AlphaSet {
		c.Alpha = linucb.DefaultAlpha
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MetaTTL == 0 {
		c.MetaTTL = DefaultMetaTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.BoardInterval == 0 {
		c.BoardInterval = DefaultBoardInterval
	}
	if c.DecisionBuffer == 0 {
		c.DecisionBuffer = DefaultDecisionBuffer
	}
	if c.Scoring == "" {
		c.Scoring = ScoringRedis
	}
	if c.LocalMaxProducts == 0 {
		c.LocalMaxProducts = DefaultLocalMaxProducts
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.LocalPoll == 0 {
		c.LocalPoll = DefaultLocalPoll
	}
}

// Server serves the sidecar's endpoints. Create it with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	board   *board
	mux     *http.ServeMux

	decisions   *decisionLog    // nil: no decision log
	rewardCodec *decision.Codec // rewards by event id without a decision log of this sidecar's own

	mu    sync.Mutex
	cache map[string]*modelInfo

	scored *localMetrics // which path scored each recommendation, and the copies
	local  *local        // nil unless Scoring is ScoringLocal
}

// modelInfo is the cached metadata of one model.
type modelInfo struct {
	meta    store.Meta
	spec    *spec.Spec     // nil if the model has none
	index   map[string]int // feature name → position
	fetched time.Time
}

// New returns a Server; it does not touch Redis.
func New(cfg Config) *Server {
	cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), board: newBoard(), cache: map[string]*modelInfo{}}
	s.rewardCodec, _ = decision.NewCodec() // constant schemas: tests catch an error
	if cfg.DecisionsTopic != "" && cfg.DecisionLog != nil {
		s.decisions = newDecisionLog(cfg.DecisionsTopic, cfg.DecisionLog, s.metrics.registry)
	}
	s.scored = newLocalMetrics(s.metrics.registry)
	if cfg.Scoring == ScoringLocal {
		s.local = newLocal(cfg, s.scored)
	}
	s.mux = http.NewServeMux()
	s.handle("POST /v1/recommend", "recommend", s.recommend)
	s.handle("POST /v1/feedback", "feedback", s.feedback)
	s.handle("POST /v1/explain", "explain", s.explain)
	s.handle("GET /v1/models/{model}", "model", s.model)
	s.handle("GET /healthz", "healthz", s.healthz)
	s.handle("GET /readyz", "readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.handle("GET /v1/dashboard", "dashboard", s.dashboard)
	s.handle("POST /v1/arms", "arms", s.arms)
	index, assets := uiHandler()
	s.mux.Handle("GET /{$}", index)
	s.mux.Handle("GET /ui/", assets)
	// Anything else: 405 for a known path with another method, else 404,
	// as JSON like every other answer.
	allowed := map[string]string{"/v1/recommend": "POST", "/v1/feedback": "POST", "/v1/explain": "POST", "/v1/arms": "POST",
		"/v1/dashboard": "GET", "/healthz": "GET", "/readyz": "GET", "/metrics": "GET", "/": "GET"}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		method, ok := allowed[r.URL.Path]
		if !ok && strings.HasPrefix(r.URL.Path, "/v1/models/") {
			method, ok = "GET", true
		}
		if ok {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, method, r.Method))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return s
}

// Handler returns the HTTP handler of all endpoints. Serve also runs the
// dashboard's sampler; with Handler alone, GET /v1/dashboard samples a
// model once, when it first asks for it, and has no history beyond that.
func (s *Server) Handler() http.Handler { return s.mux }

// Registry returns the Prometheus registry of the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.registry }

// Run loads the scripts, checks the default model's format, serves until ctx
// is done, then shuts down gracefully: in-flight requests get up to 10 s.
func Run(ctx context.Context, cfg Config) error {
	cfg.withDefaults()
	if cfg.Redis == nil {
		return errors.New("sidecar: no Redis client")
	}
	if cfg.Scoring != ScoringRedis && cfg.Scoring != ScoringLocal {
		return fmt.Errorf("sidecar: scoring %q: want %s or %s", cfg.Scoring, ScoringLocal, ScoringRedis)
	}
	if cfg.Producer == nil && len(cfg.Brokers) > 0 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(time.Millisecond), kgo.RecordDeliveryTimeout(cfg.Timeout))
		if err != nil {
			return fmt.Errorf("sidecar: kafka: %w", err)
		}
		defer flushClose(cl, cfg.Logger, "the producer")
		cfg.Producer = cl
		if cfg.Admin == nil {
			cfg.Admin = kadm.NewClient(cl)
		}
	}
	if cfg.DecisionLog == nil && len(cfg.Brokers) > 0 && cfg.DecisionsTopic != "" {
		cl, err := newDecisionClient(cfg.Brokers, cfg.DecisionBuffer)
		if err != nil {
			return err
		}
		defer flushClose(cl, cfg.Logger, "the decision log")
		cfg.DecisionLog = cl
	}
	s := New(cfg)
	if s.decisions != nil && cfg.SchemaRegistry != "" {
		d, r, err := RegisterSchemas(ctx, cfg.SchemaRegistry, cfg.DecisionsTopic)
		if err != nil {
			return fmt.Errorf("sidecar: %w", err)
		}
		s.decisions.codec.SetIDs(d, r)
	}
	if err := s.Prepare(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("sidecar: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Prepare loads the scripts and the function library into Redis (a user
// without that right, such as rb-serve, relies on an admin having loaded
// them) and refuses a default model of a format this build does not read.
func (s *Server) Prepare(ctx context.Context) error {
	if err := store.Load(ctx, s.cfg.Redis); err != nil {
		var re *rueidis.RedisError
		if !errors.As(err, &re) || !strings.HasPrefix(re.Error(), "NOPERM") {
			return fmt.Errorf("sidecar: %w", err)
		}
		s.log.Warn("sidecar: no permission to load the scripts; relying on them being loaded", "err", err)
	}
	if _, err := store.ReadMeta(ctx, s.cfg.Redis, s.cfg.Model); err != nil && !errors.Is(err, store.ErrNoModel) {
		return fmt.Errorf("sidecar: model %s: %w", s.cfg.Model, err)
	}
	return nil
}

// Serve serves on ln until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s.sampleLoop(sctx)
	}()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if s.local != nil {
			s.local.run(sctx)
		}
	}()
	defer func() {
		stopSampling()
		<-sampled
		<-copied
	}()
	s.log.Info("sidecar: listening", "addr", ln.Addr().String(), "model", s.cfg.Model, "fcall", s.cfg.FCall, "scoring", s.cfg.Scoring)
	select {
	case err := <-done:
		return fmt.Errorf("sidecar: serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("sidecar: shutting down")
	// A context of its own: assigning sctx here would race with the
	// sampler's goroutine reading it when it starts late.
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("sidecar: shutdown: %w", err)
	}
	<-done
	return nil
}

// modelInfo returns the model's metadata from the cache, or from Redis if it
// is missing or older than MetaTTL.
func (s *Server) modelInfo(ctx context.Context, model string) (*modelInfo, error) {
	s.mu.Lock()
	info := s.cache[model]
	s.mu.Unlock()
	if info != nil && time.Since(info.fetched) < s.cfg.MetaTTL {
		return info, nil
	}
	start := time.Now()
	meta, err := store.ReadMeta(ctx, s.cfg.Redis, model)
	s.metrics.redis.WithLabelValues("meta").Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	info = &modelInfo{meta: meta, index: map[string]int{}, fetched: time.Now()}
	for i, f := range meta.Features {
		info.index[f] = i
	}
	if meta.Spec != "" {
		if info.spec, err = spec.Parse([]byte(meta.Spec)); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", store.ErrBadModel, store.RootKey(model), err)
		}
	}
	s.metrics.model(model, meta)
	s.mu.Lock()
	s.cache[model] = info
	s.mu.Unlock()
	return info, nil
}

// newEventID returns a random 128-bit id for a recommendation, which the
// client quotes when it reports feedback.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MaxEventID bounds the length in bytes of an event id a recommendation
// request gives.
const MaxEventID = 128

// checkEventID refuses an event id a client gives that is too long or
// holds control characters (it becomes a Kafka key and a log field).
func checkEventID(id string) error {
	if len(id) > MaxEventID {
		return badRequest("event_id is %d bytes, at most %d", len(id), MaxEventID)
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return badRequest("event_id holds a control character or invalid UTF-8")
		}
	}
	return nil
}

// tieSeed returns the seed that orders the equal scores of the decision
// eventID (1..linucb.MaxSeed, from its FNV-1a hash): random across
// decisions, the same for a call repeated with the same event id.
func tieSeed(eventID string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(eventID))
	return 1 + int64(h.Sum64()%linucb.MaxSeed)
}

// flushClose closes a Kafka client Run made, after waiting up to
// shutdownTimeout for the records it still buffers: a Kafka that is down
// costs those records (logged), not the shutdown.
func flushClose(cl *kgo.Client, log *slog.Logger, what string) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		log.Warn("sidecar: flush "+what, "err", err)
	}
	cl.Close()
}
