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
)

// sidecarStats are the sidecar's totals for answered recommendations: the
// seconds its handler took and how many, and the same for the Redis calls
// they made.
type sidecarStats struct{ handler, handlers, redis, calls float64 }

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
	fields := map[string]*float64{handlerSum: &s.handler, handlerCount: &s.handlers, redisSum: &s.redis, redisCount: &s.calls}
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
