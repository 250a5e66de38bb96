package loadtest

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentiles are a Result's latency summary.
type Percentiles struct {
	Min, P50, P90, P99, P999, Max, Mean time.Duration
}

// Percentiles returns the latency summary of r's right answers.
func (r *Result) Percentiles() Percentiles {
	h := &r.Latency
	return Percentiles{Min: h.Min(), P50: h.Quantile(0.50), P90: h.Quantile(0.90), P99: h.Quantile(0.99),
		P999: h.Quantile(0.999), Max: h.Max(), Mean: h.Mean()}
}

// describe says what a target sends.
func describe(target string) string {
	switch target {
	case TargetRedis:
		return "EVALSHA_RO recommend.lua"
	case TargetFCall:
		return "FCALL_RO rb_recommend"
	case TargetClientSide:
		return "pipelined HMGET theta ainv of every scored arm, scored in Go"
	case TargetPing:
		return "PING"
	}
	return target
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio returns a/b, or 0 if b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// writer writes the report in cfg.Format, target by target.
type writer struct {
	cfg Config
	rep *Report
	csv *csv.Writer
}

func newWriter(cfg Config, rep *Report) *writer { return &writer{cfg: cfg, rep: rep} }

var csvHeader = []string{"target", "requests", "errors", "seconds", "rps",
	"min_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms",
	"rps_ratio", "p50_ratio", "p99_ratio", "error_kinds", "server_us", "sidecar_us", "sidecar_redis_us"}

func (w *writer) begin() error {
	if w.cfg.Format != FormatCSV {
		return nil
	}
	w.csv = csv.NewWriter(w.cfg.Out)
	w.csv.Write(csvHeader)
	w.csv.Flush()
	return w.csv.Error()
}

func (w *writer) loop() string {
	s := "closed loop"
	if w.cfg.Rate > 0 {
		s = fmt.Sprintf("open loop at %g requests/s", w.cfg.Rate)
	}
	return s
}

func kindsString(kinds map[string]int64, sep, eq string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, k+eq+strconv.FormatInt(kinds[k], 10))
	}
	return strings.Join(parts, sep)
}

// result writes Results[i].
func (w *writer) result(i int) error {
	r := &w.rep.Results[i]
	first := &w.rep.Results[0]
	p, p0 := r.Percentiles(), first.Percentiles()
	out := w.cfg.Out
	switch w.cfg.Format {
	case FormatJSON:
		type lat struct {
			Min  float64 `json:"min"`
			P50  float64 `json:"p50"`
			P90  float64 `json:"p90"`
			P99  float64 `json:"p99"`
			P999 float64 `json:"p999"`
			Max  float64 `json:"max"`
			Mean float64 `json:"mean"`
		}
		type vs struct {
			Target string  `json:"target"`
			RPS    float64 `json:"rps"`
			P50    float64 `json:"p50"`
			P99    float64 `json:"p99"`
		}
		obj := struct {
			Target     string           `json:"target"`
			Requests   int64            `json:"requests"`
			Errors     int64            `json:"errors"`
			ErrorKinds map[string]int64 `json:"error_kinds"`
			Seconds    float64          `json:"seconds"`
			RPS        float64          `json:"rps"`
			ServerUS   float64          `json:"server_us"`
			SidecarUS  float64          `json:"sidecar_us,omitempty"`
			SideRedis  float64          `json:"sidecar_redis_us,omitempty"`
			LocalShare float64          `json:"local_share,omitempty"`
			LatencyMS  lat              `json:"latency_ms"`
			Clients    int              `json:"clients"`
			Pipeline   int              `json:"pipeline"`
			Rate       float64          `json:"rate"`
			Model      string           `json:"model"`
			Products   int              `json:"products"`
			Dim        int              `json:"dim"`
			K          int              `json:"k"`
			Candidates int              `json:"candidates"`
			VS         *vs              `json:"vs,omitempty"`
		}{
			Target: r.Target, Requests: r.Requests, Errors: r.Errors, ErrorKinds: r.ErrorKinds,
			Seconds: r.Elapsed.Seconds(), RPS: r.RPS, ServerUS: r.ServerUS, SidecarUS: r.SidecarUS, SideRedis: r.SidecarRedisUS, LocalShare: r.LocalShare,
			LatencyMS: lat{ms(p.Min), ms(p.P50), ms(p.P90), ms(p.P99), ms(p.P999), ms(p.Max), ms(p.Mean)},
			Clients:   w.cfg.Clients, Pipeline: w.cfg.Pipeline, Rate: w.cfg.Rate,
			Model: w.rep.Model, Products: w.rep.Products, Dim: w.rep.Dim, K: w.cfg.K, Candidates: w.rep.Candidates,
		}
		if len(w.cfg.Targets) > 1 {
			obj.VS = &vs{Target: first.Target, RPS: ratio(r.RPS, first.RPS),
				P50: ratio(float64(p.P50), float64(p0.P50)), P99: ratio(float64(p.P99), float64(p0.P99))}
		}
		return json.NewEncoder(out).Encode(obj)
	case FormatCSV:
		f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
		w.csv.Write([]string{r.Target, strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.Errors, 10),
			f(r.Elapsed.Seconds()), f(r.RPS),
			f(ms(p.Min)), f(ms(p.P50)), f(ms(p.P90)), f(ms(p.P99)), f(ms(p.P999)), f(ms(p.Max)), f(ms(p.Mean)),
			f(ratio(r.RPS, first.RPS)), f(ratio(float64(p.P50), float64(p0.P50))), f(ratio(float64(p.P99), float64(p0.P99))),
			kindsString(r.ErrorKinds, ";", "="), f(r.ServerUS), f(r.SidecarUS), f(r.SidecarRedisUS)})
		w.csv.Flush()
		return w.csv.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "====== %s: %s ======\n", r.Target, describe(r.Target))
	fmt.Fprintf(&b, "  %d requests in %.3f seconds, %d errors\n", r.Requests, r.Elapsed.Seconds(), r.Errors)
	if r.Errors > 0 {
		fmt.Fprintf(&b, "  errors by kind: %s\n", kindsString(r.ErrorKinds, ", ", " "))
	}
	scope := "whole catalogue"
	if w.rep.Candidates > 0 {
		scope = fmt.Sprintf("%d candidates per request", w.rep.Candidates)
	}
	groups := "no one-hot groups"
	if w.rep.Groups > 0 {
		groups = fmt.Sprintf("%d one-hot groups", w.rep.Groups)
	}
	fmt.Fprintf(&b, "  %d %s, pipeline %d, %s\n", w.cfg.Clients, plural(w.cfg.Clients, "client", "clients"), w.cfg.Pipeline, w.loop())
	fmt.Fprintf(&b, "  model %s: %d products, d=%d, %s; k=%d, alpha=%g, %s\n",
		w.rep.Model, w.rep.Products, w.rep.Dim, groups, w.cfg.K, w.cfg.Alpha, scope)
	fmt.Fprintf(&b, "  throughput summary: %.2f requests per second\n", r.RPS)
	if r.ServerUS > 0 {
		fmt.Fprintf(&b, "  redis time: %.1f µs per request (INFO commandstats)\n", r.ServerUS)
	}
	if r.SidecarUS > 0 {
		fmt.Fprintf(&b, "  sidecar time: %.1f µs per request, %.1f µs of it in its Redis call (its /metrics)\n", r.SidecarUS, r.SidecarRedisUS)
	}
	if r.Target == TargetHTTPLocal {
		fmt.Fprintf(&b, "  scored from the sidecar's local copy: %.1f%% of requests (its /metrics)\n", 100*r.LocalShare)
	}
	fmt.Fprintf(&b, "  latency summary (msec), %d right answers:\n", r.Latency.Count())
	fmt.Fprintf(&b, "  %10s %10s %10s %10s %10s %10s %10s\n", "min", "p50", "p90", "p99", "p99.9", "max", "avg")
	fmt.Fprintf(&b, "  %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f\n",
		ms(p.Min), ms(p.P50), ms(p.P90), ms(p.P99), ms(p.P999), ms(p.Max), ms(p.Mean))
	if r.Lag.Count() > 0 {
		fmt.Fprintf(&b, "  open-loop send lag (msec, client-side, included above): p50 %.3f, p99 %.3f, max %.3f\n",
			ms(r.Lag.Quantile(0.5)), ms(r.Lag.Quantile(0.99)), ms(r.Lag.Max()))
	}
	b.WriteString("\n")
	_, err := io.WriteString(out, b.String())
	return err
}

// end writes the comparison table (text, more than one target).
func (w *writer) end() error {
	if w.cfg.Format != FormatText || len(w.rep.Results) < 2 {
		return nil
	}
	first := &w.rep.Results[0]
	p0 := first.Percentiles()
	var b strings.Builder
	fmt.Fprintf(&b, "====== compare: ratio to %s ======\n", first.Target)
	fmt.Fprintf(&b, "  %-12s %12s %10s %10s %8s %10s %10s %10s\n", "target", "requests/s", "p50 ms", "p99 ms", "errors", "x rps", "x p50", "x p99")
	for i := range w.rep.Results {
		r := &w.rep.Results[i]
		p := r.Percentiles()
		fmt.Fprintf(&b, "  %-12s %12.1f %10.3f %10.3f %8d %10.3f %10.3f %10.3f\n", r.Target, r.RPS, ms(p.P50), ms(p.P99), r.Errors,
			ratio(r.RPS, first.RPS), ratio(float64(p.P50), float64(p0.P50)), ratio(float64(p.P99), float64(p0.P99)))
	}
	_, err := io.WriteString(w.cfg.Out, b.String())
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
