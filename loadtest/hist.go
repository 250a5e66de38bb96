package loadtest

import (
	"math"
	"math/bits"
	"time"
)

// Histogram precision: values below 2·subCount are counted exactly; above,
// every power of two is split into subCount buckets of equal width, so a
// bucket's width is at most 1/subCount of the values in it.
const (
	subBits  = 7
	subCount = 1 << subBits // 128: relative bucket width ≤ 1/128 ≈ 0.78%
	nBuckets = (64 - subBits) * subCount
)

// RelativePrecision bounds the error of Histogram.Quantile: for a true
// nearest-rank quantile t (in nanoseconds) the reported value r satisfies
// t ≤ r ≤ t + t·RelativePrecision.
const RelativePrecision = 1.0 / subCount

// Histogram counts durations (in nanoseconds) in log-linear buckets, the
// layout of an HDR histogram with two significant decimal digits. The exact
// minimum, maximum and sum are kept besides the buckets. The zero value is
// empty and ready to use; a Histogram is not safe for concurrent use (give
// each goroutine its own and Merge them).
type Histogram struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      float64
}

// bucketOf returns the bucket index of v ≥ 0: with e = max(0, len(v)−8) and
// m = v>>e (in [128, 256) when e > 0), index = 128·e + m.
func bucketOf(v int64) int {
	u := uint64(v)
	e := bits.Len64(u) - (subBits + 1)
	if e < 0 {
		e = 0
	}
	return e<<subBits + int(u>>e)
}

// bucketRange returns the smallest and largest value counted in bucket i.
func bucketRange(i int) (lo, hi int64) {
	e := i>>subBits - 1
	if e < 0 {
		e = 0
	}
	m := int64(i - e<<subBits)
	lo = m << e
	return lo, lo + (int64(1) << e) - 1
}

// Record counts one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, nBuckets)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, nBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded duration (exact), 0 if empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest recorded duration (exact), 0 if empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the recorded durations (exact up to float64
// rounding), 0 if empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the nearest-rank q-quantile (0 < q ≤ 1): the smallest
// recorded value v such that at least ⌈q·n⌉ values are ≤ v, rounded up to
// the top of its bucket and clamped to [Min, Max]. The error is bounded by
// RelativePrecision. It returns 0 if the histogram is empty; q ≤ 0 gives
// Min.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 || math.IsNaN(q) {
		return h.Min()
	}
	if rank > h.n {
		rank = h.n
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			_, hi := bucketRange(i)
			return time.Duration(max(h.min, min(hi, h.max)))
		}
	}
	return h.Max()
}
