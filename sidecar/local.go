package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/store"
)

// Scoring modes (Config.Scoring).
const (
	ScoringRedis = "redis" // every recommendation runs the scoring script in Redis
	ScoringLocal = "local" // from a copy of the model in the sidecar, the script as fallback
)

// Defaults of local scoring.
const (
	DefaultLocalMaxProducts = 50_000
	DefaultMaxStaleness     = time.Second
	DefaultLocalPoll        = 10 * time.Millisecond
	maxLocalModels          = 64              // models copied at once; others are scored by Redis
	localRetry              = time.Second     // after a model could not be copied
	localLoadTimeout        = 5 * time.Minute // a first load of a large model over a slow link
)

// Why a recommendation in local mode went to Redis (the fallbacks metric).
const (
	fallbackUnloaded = "unloaded" // no copy yet (or the model has none: missing, malformed)
	fallbackTooLarge = "too_large"
	fallbackStale    = "stale"
	fallbackQuery    = "query" // a query the copy leaves to the script (store.ErrNotLocal)
)

// local serves recommendations from decoded copies of the models
// (store.Copy), one per model that has been asked for and answered by the
// script once; run keeps them fresh. A copy older than maxStale, missing,
// or of a model with more than maxProducts products is not used: the
// request goes to the script.
type local struct {
	redis       rueidis.Client
	maxProducts int
	maxStale    time.Duration
	poll        time.Duration
	log         *slog.Logger
	m           *localMetrics

	// models maps the copied models' names to their copies: read by every
	// request without a lock, replaced whole (under mu) when one is added
	// or dropped.
	mu     sync.Mutex
	models atomic.Pointer[map[string]*localModel]
}

// localModel is the copy of one model. copy and fresh are read by requests
// and written by run.
type localModel struct {
	copy     atomic.Pointer[store.Copy] // nil while there is none
	fresh    atomic.Int64               // Unix ns: start of the last refresh that succeeded
	tooLarge atomic.Bool
	retryAt  time.Time // run's own: when to try again after a failure
	failing  bool      // run's own: the last attempt failed (logged once)
}

func newLocal(cfg Config, m *localMetrics) *local {
	l := &local{redis: cfg.Redis, maxProducts: cfg.LocalMaxProducts, maxStale: cfg.MaxStaleness, poll: cfg.LocalPoll,
		log: cfg.Logger, m: m}
	l.models.Store(&map[string]*localModel{})
	return l
}

// update replaces the models map with a copy changed by f.
func (l *local) update(f func(map[string]*localModel)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.models.Load()
	next := make(map[string]*localModel, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	f(next)
	l.models.Store(&next)
}

// recommend answers q from model's copy. ok is false when the request
// must go to the script instead; the reason is counted.
func (l *local) recommend(model string, q store.Query) (items []store.Item, ok bool, err error) {
	lm := (*l.models.Load())[model]
	reason := fallbackUnloaded
	if lm != nil {
		if cp := lm.copy.Load(); cp != nil {
			if time.Since(time.Unix(0, lm.fresh.Load())) > l.maxStale {
				reason = fallbackStale
			} else {
				items, err = cp.Recommend(q)
				if !errors.Is(err, store.ErrNotLocal) {
					l.m.served.WithLabelValues(ScoringLocal).Inc()
					return items, true, err
				}
				reason = fallbackQuery
			}
		} else if lm.tooLarge.Load() {
			reason = fallbackTooLarge
		}
	}
	l.m.fallbacks.WithLabelValues(reason).Inc()
	return nil, false, nil
}

// want asks for a copy of model, which the script has just answered (so
// it exists): run loads it.
func (l *local) want(model string) {
	if m := *l.models.Load(); m[model] != nil || len(m) >= maxLocalModels {
		return
	}
	l.update(func(m map[string]*localModel) {
		if m[model] == nil && len(m) < maxLocalModels {
			m[model] = &localModel{}
		}
	})
}

// run refreshes every wanted model each poll interval until ctx is done.
func (l *local) run(ctx context.Context) {
	t := time.NewTicker(l.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for name, lm := range *l.models.Load() {
			l.refresh(ctx, name, lm)
		}
	}
}

// refresh loads or refreshes one model's copy and records its age.
func (l *local) refresh(ctx context.Context, name string, lm *localModel) {
	start := time.Now()
	if start.Before(lm.retryAt) {
		return
	}
	cp := lm.copy.Load()
	var err error
	var r store.Refreshed
	if cp == nil {
		lctx, cancel := context.WithTimeout(ctx, localLoadTimeout)
		cp, err = store.LoadCopy(lctx, l.redis, name, l.maxProducts)
		cancel()
		if err == nil {
			r = store.Refreshed{Full: true, Arms: cp.Products()}
			// A large model takes a while to load; the copy holds what
			// was written before the load began: catch up with what was
			// written since (usually nothing, or a few products).
			again := time.Now()
			rctx, cancel := context.WithTimeout(ctx, localLoadTimeout)
			_, err = cp.Refresh(rctx, l.redis, l.maxProducts)
			cancel()
			start = again
		}
	} else {
		rctx, cancel := context.WithTimeout(ctx, max(l.maxStale, localLoadTimeout))
		r, err = cp.Refresh(rctx, l.redis, l.maxProducts)
		cancel()
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, store.ErrNoModel) {
			// Deleted: forget it (asked for again once the script answers
			// for it).
			l.update(func(m map[string]*localModel) { delete(m, name) })
			lm.copy.Store(nil)
			l.m.age.DeleteLabelValues(name)
			l.m.products.DeleteLabelValues(name)
			l.m.bytes.DeleteLabelValues(name)
			l.log.Info("sidecar: model gone; local copy dropped", "model", name)
			return
		}
		lm.tooLarge.Store(errors.Is(err, store.ErrTooLarge))
		if errors.Is(err, store.ErrTooLarge) || errors.Is(err, store.ErrBadModel) {
			// The script answers for the model (its own error, if any).
			lm.copy.Store(nil)
			lm.retryAt = start.Add(localRetry)
		}
		if !lm.failing {
			l.log.Warn("sidecar: local copy not refreshed; Redis scores the model", "model", name, "err", err)
			lm.failing = true
		}
		l.m.age.WithLabelValues(name).Set(time.Since(time.Unix(0, lm.fresh.Load())).Seconds())
		return
	}
	if lm.failing {
		l.log.Info("sidecar: local copy refreshed", "model", name)
		lm.failing = false
	}
	lm.tooLarge.Store(false)
	lm.copy.Store(cp)
	lm.fresh.Store(start.UnixNano())
	if r.Arms > 0 {
		kind := "changed"
		if r.Full {
			kind = "full"
		}
		l.m.reloaded.WithLabelValues(kind).Add(float64(r.Arms))
		l.m.reloadSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
		l.m.products.WithLabelValues(name).Set(float64(cp.Products()))
		l.m.bytes.WithLabelValues(name).Set(float64(cp.Bytes()))
	}
	l.m.age.WithLabelValues(name).Set(time.Since(start).Seconds())
}

// localMetrics are the metrics of local scoring.
type localMetrics struct {
	served        *prometheus.CounterVec   // recommendations by the path that scored them: local or redis
	fallbacks     *prometheus.CounterVec   // local-mode recommendations Redis scored, by reason
	age           *prometheus.GaugeVec     // per model: seconds since the copy was last known current
	products      *prometheus.GaugeVec     // per model: products in the copy
	bytes         *prometheus.GaugeVec     // per model: estimated bytes of the copy
	reloaded      *prometheus.CounterVec   // products reloaded, by kind (changed, full)
	reloadSeconds *prometheus.HistogramVec // time of a refresh that reloaded products, by kind
}

func newLocalMetrics(reg *prometheus.Registry) *localMetrics {
	m := &localMetrics{
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redbandit_sidecar_scored_total", Help: "Recommendations by the path that scored them: local (the sidecar's copy) or redis (the scoring script).",
		}, []string{"path"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redbandit_sidecar_local_fallbacks_total", Help: "Recommendations in local scoring mode that the scoring script answered, by reason (unloaded, too_large, stale, query).",
		}, []string{"reason"}),
		age: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redbandit_sidecar_local_copy_age_seconds", Help: "Seconds since the model's local copy was last known to hold every write (set at each refresh).",
		}, []string{"model"}),
		products: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redbandit_sidecar_local_products", Help: "Products in the model's local copy.",
		}, []string{"model"}),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redbandit_sidecar_local_bytes", Help: "Estimated memory of the model's local copy, bytes.",
		}, []string{"model"}),
		reloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redbandit_sidecar_local_reloaded_products_total", Help: "Products reloaded into local copies: changed (from the change record) or full (whole models).",
		}, []string{"kind"}),
		reloadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "redbandit_sidecar_local_reload_seconds", Help: "Time of a refresh that reloaded products, by kind.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"kind"}),
	}
	reg.MustRegister(m.served, m.fallbacks, m.age, m.products, m.bytes, m.reloaded, m.reloadSeconds)
	return m
}

// scoringPanel is the dashboard's view of how model is scored.
func (s *Server) scoringPanel(model string) ScoringPanel {
	p := ScoringPanel{Mode: s.cfg.Scoring}
	if s.local == nil {
		return p
	}
	lm := (*s.local.models.Load())[model]
	if lm == nil {
		return p
	}
	if cp := lm.copy.Load(); cp != nil {
		age := time.Since(time.Unix(0, lm.fresh.Load())).Seconds()
		p.AgeS, p.Products, p.Copied = &age, cp.Products(), age <= s.local.maxStale.Seconds()
	}
	return p
}
