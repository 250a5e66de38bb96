package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/store"
)

// Result is the outcome of one target.
type Result struct {
	Target     string
	Requests   int64            // requests sent and answered or failed
	Errors     int64            // requests that failed or got a wrong answer
	ErrorKinds map[string]int64 // Errors by kind (see ErrorKind)
	Elapsed    time.Duration    // wall time of the measured phase
	RPS        float64          // Requests / Elapsed
	// ServerUS is Redis's own time per request (INFO commandstats, read
	// before and after the target; 0 if the user may not run INFO). For
	// ping it is PING's time; for the http target, the sidecar's script
	// calls. 1e6/ServerUS bounds the throughput one Redis can give.
	ServerUS float64
	// SidecarUS is, for the http target, the sidecar's own time per answered
	// request (its handler, from its GET /metrics before and after the
	// target; 0 if unreadable), and SidecarRedisUS the part of it spent in
	// its Redis call. SidecarUS - SidecarRedisUS is the sidecar's own work;
	// the rest of what the http target adds to the redis target is the HTTP
	// hop (client, loopback, the sidecar's network reads and writes).
	SidecarUS, SidecarRedisUS float64
	// LocalShare is, for the http-local target, the share of its requests
	// the sidecar scored from its local copy (the rest went to the script;
	// from its metrics, 0 if unreadable).
	LocalShare float64
	Latency    Histogram // latencies of the right answers
	// Lag is, open loop only, how late each batch was sent after its
	// scheduled time (client-side delay, included in Latency).
	Lag Histogram
}

// Report is the outcome of Run.
type Report struct {
	Model      string // the model tested (the synthetic model's unique name)
	Synthetic  bool   // the model was created for the run
	Products   int
	Dim        int
	Groups     int // number of one-hot groups of the model
	Candidates int // candidates per request, 0 for the whole catalogue
	Results    []Result
}

// progressEvery is the period of the live progress line.
const progressEvery = 250 * time.Millisecond

// Run load-tests cfg.Targets one after the other against cfg.RedisURL and
// writes each target's summary to cfg.Out as it completes. With
// cfg.Products > 0 it first creates a synthetic model (and deletes it at the
// end, even when ctx is cancelled, unless cfg.Keep). It loads the scoring
// script and function library (store.Load) when a script target is run.
//
// It returns the report of the targets completed, and an error if the
// configuration is invalid (ErrBadConfig), the set-up
// failed or ctx was cancelled. Failed requests and wrong answers are not
// errors of Run: they are counted in the Results.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	setup, err := dial(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	defer setup.Close()

	var cat *Catalog
	if cfg.Products > 0 {
		name, nerr := syntheticName(cfg.Model)
		if nerr != nil {
			return nil, nerr
		}
		if !cfg.Keep {
			defer func() {
				all := &Catalog{Model: name, IDs: make([]string, cfg.Products)}
				for i := range all.IDs {
					all.IDs[i] = productID(i)
				}
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
				defer cancel()
				if derr := deleteModel(cctx, setup, all); derr != nil {
					err = errors.Join(err, derr)
					return
				}
				log.Info("deleted the synthetic model", "model", name)
			}()
		}
		start := time.Now()
		log.Info("creating a synthetic model", "model", name, "products", cfg.Products, "dim", cfg.Dim)
		if cat, err = createModel(ctx, setup, name, cfg.Products, cfg.Dim, nonzeroFor(cfg, cfg.Dim), cfg.Seed); err != nil {
			return nil, err
		}
		log.Info("created the synthetic model", "model", name, "took", time.Since(start).Round(time.Millisecond), "keep", cfg.Keep)
	} else if cat, err = readCatalog(ctx, setup, cfg.Model); err != nil {
		return nil, err
	}
	if cfg.Candidates > len(cat.IDs) {
		return nil, fmt.Errorf("%w: candidates %d > the model's %d products", ErrBadConfig, cfg.Candidates, len(cat.IDs))
	}
	if cfg.Nonzero > cat.Dim {
		return nil, fmt.Errorf("%w: nonzero %d > the model's dimension %d", ErrBadConfig, cfg.Nonzero, cat.Dim)
	}
	if slices.Contains(cfg.Targets, TargetRedis) || slices.Contains(cfg.Targets, TargetFCall) {
		if err := store.Load(ctx, setup); err != nil {
			return nil, err
		}
	}
	var fetch []rueidis.Completed
	if slices.Contains(cfg.Targets, TargetClientSide) {
		fetch = make([]rueidis.Completed, len(cat.IDs))
		for i, id := range cat.IDs {
			fetch[i] = store.ParamsCommand(setup.B(), cat.Model, id).Pin()
		}
	}
	clients := make([]rueidis.Client, cfg.Clients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range clients {
		if clients[i], err = dial(cfg.RedisURL); err != nil {
			return nil, err
		}
	}
	var leanDial func(context.Context) (net.Conn, *bufio.Reader, error)
	if cfg.Client == ClientLean {
		if leanDial, err = leanRedisDialer(cfg.RedisURL); err != nil {
			return nil, err
		}
	}

	rep = &Report{Model: cat.Model, Synthetic: cfg.Products > 0, Products: len(cat.IDs), Dim: cat.Dim,
		Groups: len(cat.Groups), Candidates: cfg.Candidates}
	out := newWriter(cfg, rep)
	if err := out.begin(); err != nil {
		return rep, err
	}
	for _, name := range cfg.Targets {
		url := cfg.SidecarURL
		if name == TargetHTTPLocal {
			url = cfg.LocalURL
			// The sidecar copies a model once the script has answered for
			// it: wait for the copy before measuring.
			if err := waitLocalCopy(ctx, url, cat.Model, cat.Dim, len(cat.IDs)); err != nil {
				return rep, err
			}
		}
		p := phase{
			name: name, clients: clients, cat: cat, candidates: cfg.Candidates,
			nonzero: nonzeroFor(cfg, cat.Dim), pipeline: cfg.Pipeline, rate: cfg.Rate, progress: cfg.Progress,
			newTarget: func() target { return newTarget(name, cat, cfg.K, cfg.Alpha, fetch, url, leanDial) },
		}
		if cfg.Warmup > 0 {
			w := p
			w.label, w.duration, w.seed = name+" (warm-up)", cfg.Warmup, cfg.Seed+2<<32
			if _, err := w.run(ctx); err != nil {
				return rep, err
			}
		}
		// Every target gets the same contexts (and candidate lists), client by client.
		p.label, p.requests, p.duration, p.seed = name, int64(cfg.Requests), cfg.Duration, cfg.Seed+1<<32
		before, statsErr := serverMicros(ctx, setup)
		var side0 sidecarStats
		sideOK := false // the sidecar's metrics were read before the target
		if name == TargetHTTP || name == TargetHTTPLocal {
			s, err := sidecarMicros(ctx, url)
			side0, sideOK = s, err == nil
		}
		res, err := p.run(ctx)
		if err != nil {
			return rep, err
		}
		if after, err := serverMicros(ctx, setup); statsErr == nil && err == nil && res.Requests > 0 {
			res.ServerUS = after.since(before) / float64(res.Requests)
		}
		if sideOK {
			if side, err := sidecarMicros(ctx, url); err == nil {
				res.SidecarUS, res.SidecarRedisUS = side.perRequest(side0)
				if n := side.local + side.remote - side0.local - side0.remote; n > 0 {
					res.LocalShare = (side.local - side0.local) / n
				}
			}
		}
		rep.Results = append(rep.Results, res)
		if err := out.result(len(rep.Results) - 1); err != nil {
			return rep, err
		}
	}
	return rep, out.end()
}

// commandStats are the usec totals of INFO commandstats: of every command
// but INFO, CONFIG and the readiness probes, and of the script commands.
type commandStats struct{ all, scripts float64 }

// since is the Redis time spent between s0 and s. Commands a script calls
// count both on their own and inside the script's time, so when scripts ran
// only the script commands count.
func (s commandStats) since(s0 commandStats) float64 {
	if d := s.scripts - s0.scripts; d > 0 {
		return d
	}
	return s.all - s0.all
}

// serverMicros reads INFO commandstats (the user needs +info; without it
// the Redis time is not reported); of a cluster, every node's, summed.
func serverMicros(ctx context.Context, c rueidis.Client) (commandStats, error) {
	if c.Mode() != rueidis.ClientModeCluster {
		return nodeMicros(ctx, c)
	}
	var st commandStats
	for addr, n := range c.Nodes() {
		ns, err := nodeMicros(ctx, n)
		if err != nil {
			return commandStats{}, fmt.Errorf("%s: %w", addr, err)
		}
		st.all += ns.all
		st.scripts += ns.scripts
	}
	return st, nil
}

// nodeMicros reads one server's INFO commandstats.
func nodeMicros(ctx context.Context, c rueidis.Client) (commandStats, error) {
	info, err := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		return commandStats{}, err
	}
	var st commandStats
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" || strings.HasPrefix(name, "config") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				st.all += f
				if strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "fcall") {
					st.scripts += f
				}
			}
		}
	}
	return st, nil
}

func nonzeroFor(cfg Config, d int) int {
	if cfg.Nonzero > 0 {
		return cfg.Nonzero
	}
	return min(DefaultNonzero, d)
}

// dial connects one client with one connection, without client-side
// caching.
func dial(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.DisableCache = true
	opt.PipelineMultiplex = -1 // one connection per client, like redis-benchmark -c
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	return c, nil
}

// phase is one run of one target by all clients.
type phase struct {
	name, label string
	clients     []rueidis.Client // one per worker; a worker may ignore it
	newTarget   func() target    // called once per worker
	cat         *Catalog
	candidates  int
	nonzero     int
	pipeline    int
	rate        float64       // > 0: open loop
	requests    int64         // stop after this many (if > 0) ...
	duration    time.Duration // ... or after this long
	seed        uint64
	progress    io.Writer
}

// tally is one worker's counts, merged at the end of the phase.
type tally struct {
	hist     Histogram
	lag      Histogram
	kinds    map[string]int64
	requests int64
	errors   int64
}

// run runs the phase: one goroutine per client, all stopped before it
// returns. It returns ctx's error if ctx is cancelled.
func (p *phase) run(ctx context.Context) (Result, error) {
	var (
		next    atomic.Int64 // index of the next request to claim
		done    atomic.Int64 // requests completed, for the progress line
		failed  atomic.Int64
		wg      sync.WaitGroup
		tallies = make([]tally, len(p.clients))
		start   = time.Now()
		end     time.Time
	)
	if p.duration > 0 {
		end = start.Add(p.duration)
	}
	var interval float64 // seconds between batch starts, open loop
	if p.rate > 0 {
		interval = float64(p.pipeline) / p.rate
	}
	stopProgress := p.startProgress(start, &done, &failed)
	for w := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work(ctx, w, start, end, interval, &next, &done, &failed, &tallies[w])
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	res := Result{Target: p.name, ErrorKinds: map[string]int64{}, Elapsed: elapsed}
	for i := range tallies {
		t := &tallies[i]
		res.Requests += t.requests
		res.Errors += t.errors
		for k, v := range t.kinds {
			res.ErrorKinds[k] += v
		}
		res.Latency.Merge(&t.hist)
		res.Lag.Merge(&t.lag)
	}
	res.RPS = float64(res.Requests) / elapsed.Seconds()
	return res, nil
}

// work is one client's loop: claim the next batch, wait for its scheduled
// time (open loop), send it, count the outcomes.
func (p *phase) work(ctx context.Context, w int, start, end time.Time, interval float64,
	next, done, failed *atomic.Int64, t *tally) {
	tgt := p.newTarget()
	defer closeTarget(tgt)
	rng := mrand.New(mrand.NewPCG(p.seed, uint64(w)+1))
	gen := newContextGen(p.cat.Dim, p.cat.Groups, p.nonzero)
	batch := make([]*request, p.pipeline)
	for i := range batch {
		batch[i] = &request{x: make([]float64, p.cat.Dim)}
		if p.candidates > 0 {
			batch[i].cands = make([]int, p.candidates)
			batch[i].names = make([]string, p.candidates)
		}
	}
	var perm []int // for drawing distinct candidates
	if p.candidates > 0 {
		perm = make([]int, len(p.cat.IDs))
		for i := range perm {
			perm[i] = i
		}
	}
	errs := make([]error, p.pipeline)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	t.kinds = map[string]int64{}
	P := int64(p.pipeline)
	for {
		i := next.Add(P) - P
		size := P
		if p.requests > 0 {
			if i >= p.requests {
				return
			}
			size = min(P, p.requests-i)
		}
		sent := time.Now()
		if interval > 0 {
			sent = start.Add(time.Duration(float64(i/P) * interval * float64(time.Second)))
			if !end.IsZero() && !sent.Before(end) {
				return
			}
			if d := time.Until(sent); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		} else if !end.IsZero() && !sent.Before(end) {
			return
		}
		reqs := batch[:size]
		for _, r := range reqs {
			gen.fill(rng, r.x)
			if p.candidates > 0 {
				for j := range r.cands { // partial Fisher–Yates
					k := j + rng.IntN(len(perm)-j)
					perm[j], perm[k] = perm[k], perm[j]
					r.cands[j] = perm[j]
					r.names[j] = p.cat.IDs[perm[j]]
				}
			}
		}
		if interval == 0 {
			sent = time.Now()
		} else {
			t.lag.Record(time.Since(sent))
		}
		tgt.do(ctx, p.clients[w], reqs, errs)
		lat := time.Since(sent)
		if ctx.Err() != nil {
			return
		}
		for _, err := range errs[:size] {
			if err != nil {
				t.errors++
				t.kinds[ErrorKind(err)]++
				failed.Add(1)
			} else {
				t.hist.Record(lat)
			}
		}
		t.requests += size
		done.Add(size)
	}
}

// startProgress starts the goroutine that rewrites the progress line, if
// there is a progress writer, and returns the function that stops it and
// clears the line.
func (p *phase) startProgress(start time.Time, done, failed *atomic.Int64) (stop func()) {
	if p.progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-quit:
				fmt.Fprintf(p.progress, "\r%80s\r", "")
				return
			case now := <-tick.C:
				n := done.Load()
				rate := float64(n-last) / now.Sub(lastT).Seconds()
				last, lastT = n, now
				fmt.Fprintf(p.progress, "\r%s: %d requests, %.1f requests/s now, %d errors, %.1f s     ",
					p.label, n, rate, failed.Load(), now.Sub(start).Seconds())
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}
