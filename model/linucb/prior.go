package linucb

import (
	"fmt"
	"math"
)

// DefaultPriorEvents is the weight, in events, of a pooled prior
// (PooledPrior) by default: enough to start a new arm from its group's
// estimate, little enough that its first events outweigh it.
const DefaultPriorEvents = 2

// PooledPrior returns the starting state of a new arm from the arms of
// similar products (for example those of its category): their pooled
// evidence, scaled down to the weight of `events` events. With the K
// similar arms' evidence D_k = A_k − λI and b_k, and n̄ their mean number
// of events,
//
//	A₀ = λI + (w/K) Σ_k D_k,   b₀ = (w/K) Σ_k b_k,   w = events / n̄
//
// that is the average similar arm's evidence as if it came from `events`
// events: θ₀ = A₀⁻¹b₀ is the ridge estimate of the group's pooled events
// (shrunk harder towards 0 by λ), and A₀ makes the new arm as sure of it as
// `events` typical events would. The new arm scores from what its group
// learned instead of from 0, its bonus stays large where the group knows
// little, and its own events soon outweigh the prior. Its n and reward sum
// are 0 (the prior's pseudo-events are not events). With forgetting the
// similar arms hold less evidence than their n, and the prior weighs less
// than `events` (by the same factor).
//
// Without similar arms, or if none has an event, it is NewArm(d, λ). It
// costs O(K·d²); it panics if an arm's dimension is not d, λ is not
// positive and finite, or events is negative or not finite.
func PooledPrior(d int, lambda float64, similar []*Arm, events float64) *Arm {
	prior := NewArm(d, lambda)
	if !(events >= 0) || math.IsInf(events, 0) {
		panic(fmt.Sprintf("linucb: prior weight %v is not a non-negative number", events))
	}
	var n int64
	for _, a := range similar {
		if a.d != d {
			panic(fmt.Sprintf("linucb: prior of dimension %d from an arm of dimension %d", d, a.d))
		}
		n += a.n
	}
	if n == 0 || events == 0 {
		return prior
	}
	// (w/K) with n̄ = n/K is events/n: the sum of the arms' evidence
	// scaled by events/n.
	w := events / float64(n)
	for _, a := range similar {
		for i := 0; i < d; i++ {
			row := a.a[i*d : (i+1)*d]
			for j, v := range row {
				if i == j {
					v -= lambda
				}
				prior.a[i*d+j] += w * v
			}
			prior.b[i] += w * a.b[i]
		}
	}
	return prior
}
