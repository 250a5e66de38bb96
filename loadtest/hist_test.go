package loadtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nearestRank is the reference: the nearest-rank q-quantile of sorted.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func TestBucketLayout(t *testing.T) {
	// Every bucket's range maps back to it, ranges tile [0, 2^63) without
	// gaps, and each bucket is at most 1/128 of its smallest value wide.
	var next int64
	for i := 0; i < nBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d] maps to %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if w := hi - lo + 1; lo >= 2*subCount && float64(w) > float64(lo)/subCount {
			t.Fatalf("bucket %d = [%d, %d] is %d wide, more than lo/%d", i, lo, hi, w, subCount)
		}
		if hi == math.MaxInt64 {
			if i != nBuckets-1 {
				t.Fatalf("bucket %d ends at MaxInt64 but there are %d buckets", i, nBuckets)
			}
			return
		}
		next = hi + 1
	}
	t.Fatalf("buckets end at %d, before MaxInt64", next)
}

// TestQuantilesAgainstSortedSlice compares the histogram's percentiles with
// the exact nearest-rank percentiles of the same seeded samples: the
// reported value r and the true t satisfy t ≤ r ≤ t·(1 + 1/128).
func TestQuantilesAgainstSortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	dists := map[string]func() time.Duration{
		"lognormal":     func() time.Duration { return time.Duration(300e3 * math.Exp(0.8*rng.NormFloat64())) },
		"uniform-small": func() time.Duration { return time.Duration(rng.IntN(1000)) },
		"bimodal": func() time.Duration {
			if rng.IntN(100) == 0 {
				return time.Duration(50e6 + rng.IntN(10e6))
			}
			return time.Duration(40e3 + rng.IntN(20e3))
		},
		"heavy-tail": func() time.Duration { return time.Duration(1e4 / math.Pow(1-rng.Float64(), 1.5)) },
	}
	for name, draw := range dists {
		for _, n := range []int{1, 7, 1000, 100_000} {
			// Two histograms merged must equal one fed everything.
			var h1, h2 Histogram
			samples := make([]time.Duration, n)
			for i := range samples {
				samples[i] = draw()
				if i%2 == 0 {
					h1.Record(samples[i])
				} else {
					h2.Record(samples[i])
				}
			}
			var h Histogram
			h.Merge(&h1)
			h.Merge(&h2)
			slices.Sort(samples)
			if h.Count() != uint64(n) || h.Min() != samples[0] || h.Max() != samples[n-1] {
				t.Fatalf("%s n=%d: count %d min %v max %v, want %d %v %v", name, n, h.Count(), h.Min(), h.Max(), n, samples[0], samples[n-1])
			}
			var sum float64
			for _, s := range samples {
				sum += float64(s)
			}
			if mean := sum / float64(n); math.Abs(float64(h.Mean())-mean) > 1+1e-9*mean {
				t.Fatalf("%s n=%d: mean %v, want %v", name, n, h.Mean(), time.Duration(mean))
			}
			for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
				got, want := h.Quantile(q), nearestRank(samples, q)
				if got < want || float64(got-want) > float64(want)*RelativePrecision {
					t.Errorf("%s n=%d q=%v: %v, exact %v (allowed [%v, %v])", name, n, q, got, want,
						want, want+time.Duration(float64(want)*RelativePrecision))
				}
			}
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatal("empty histogram is not all zero")
	}
	h.Merge(&Histogram{})
	h.Record(-5)
	h.Record(time.Duration(math.MaxInt64))
	if h.Min() != 0 || h.Max() != time.Duration(math.MaxInt64) || h.Quantile(1) != h.Max() || h.Quantile(0.5) != 0 {
		t.Fatalf("extremes: min %v max %v p50 %v p100 %v", h.Min(), h.Max(), h.Quantile(0.5), h.Quantile(1))
	}
	if h.Quantile(0) != 0 || h.Quantile(math.NaN()) != 0 {
		t.Fatal("q <= 0 must give the minimum")
	}
}
