package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The sidecar's series that sidecarMicros reads (sidecar/metrics.go; the
// Prometheus text format lists labels in name order).
const (
	handlerSum   = `redbandit_sidecar_request_seconds_sum{endpoint="recommend",status="200"}`
	handlerCount = `redbandit_sidecar_request_seconds_count{endpoint="recommend",status="200"}`
	redisSum     = `redbandit_sidecar_redis_seconds_sum{op="recommend"}`
	redisCount   = `redbandit_sidecar_redis_seconds_count{op="recommend"}`
	scoredLocal  = `redbandit_sidecar_scored_total{path="local"}`
	scoredRedis  = `redbandit_sidecar_scored_total{path="redis"}`
)

// sidecarStats are the sidecar's totals for answered recommendations: the
// seconds its handler took and how many, and the same for the Redis calls
// they made.
// local and remote count the recommendations scored from a local copy and
// by the script.
type sidecarStats struct{ handler, handlers, redis, calls, local, remote float64 }

// perRequest returns the mean handler time and the mean Redis call time
// in µs between s0 and s (0, 0 if no request was answered in between).
func (s sidecarStats) perRequest(s0 sidecarStats) (handlerUS, redisUS float64) {
	n, m := s.handlers-s0.handlers, s.calls-s0.calls
	if n <= 0 || m <= 0 {
		return 0, 0
	}
	return (s.handler - s0.handler) / n * 1e6, (s.redis - s0.redis) / m * 1e6
}

// sidecarMicros reads the sidecar's GET /metrics at base.
func sidecarMicros(ctx context.Context, base string) (sidecarStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/metrics", nil)
	if err != nil {
		return sidecarStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sidecarStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sidecarStats{}, fmt.Errorf("sidecar metrics: %s", resp.Status)
	}
	var s sidecarStats
	fields := map[string]*float64{handlerSum: &s.handler, handlerCount: &s.handlers, redisSum: &s.redis, redisCount: &s.calls,
		scoredLocal: &s.local, scoredRedis: &s.remote}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if dst := fields[name]; ok && dst != nil {
			if *dst, err = strconv.ParseFloat(value, 64); err != nil {
				return sidecarStats{}, fmt.Errorf("sidecar metrics: %s: %w", name, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return sidecarStats{}, fmt.Errorf("sidecar metrics: %w", err)
	}
	return s, nil
}

// waitLocalCopy asks the sidecar at base (run with --scoring local) for one
// recommendation from model, so that it copies the model, then waits up to
// two minutes until its metrics show a copy of all products.
func waitLocalCopy(ctx context.Context, base, model string, dim, products int) error {
	base = strings.TrimSuffix(base, "/")
	body := `{"model":` + strconv.Quote(model) + `,"context":[` + strings.TrimSuffix(strings.Repeat("0,", dim), ",") + `]}`
	resp, err := http.Post(base+"/v1/recommend", "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("http-local: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("http-local: the sidecar at %s answered %s", base, resp.Status)
	}
	want := `redbandit_sidecar_local_products{model=` + strconv.Quote(model) + `} ` + strconv.Itoa(products)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("http-local: %w", err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			if sc.Text() == want {
				found = true
			}
		}
		resp.Body.Close()
		if found {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("http-local: the sidecar at %s has no local copy of %s after 2 minutes: is it run with --scoring local and a --local-max-products of at least %d?", base, model, products)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
