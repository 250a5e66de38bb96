package linucb

import (
	"math/rand/v2"
	"testing"
)

// TestPooledPrior checks the prior against hand-computed values and two
// properties: the prior from K copies of one arm with `events` equal to
// its n is that arm (n and rewards aside), and no similar arm (or none
// with an event) gives the fresh arm.
func TestPooledPrior(t *testing.T) {
	const lambda = 2
	// Arm 1: events x = (1, 0) r = 1 and x = (1, 1) r = 0: D = [[2,1],[1,1]], b = (1, 0).
	// Arm 2: event x = (0, 2) r = 1: D = [[0,0],[0,4]], b = (0, 2).
	a1, a2 := NewArm(2, lambda), NewArm(2, lambda)
	_ = a1.Update([]float64{1, 0}, 1)
	_ = a1.Update([]float64{1, 1}, 0)
	_ = a2.Update([]float64{0, 2}, 1)
	// n = 3, events 1.5: w = 0.5; A₀ = 2I + 0.5·[[2,1],[1,5]], b₀ = 0.5·(1, 2).
	p := PooledPrior(2, lambda, []*Arm{a1, a2}, 1.5)
	wantA, wantB := []float64{3, 0.5, 0.5, 4.5}, []float64{0.5, 1}
	for i, v := range wantA {
		if p.A()[i] != v {
			t.Fatalf("A₀ = %v, want %v", p.A(), wantA)
		}
	}
	for i, v := range wantB {
		if p.B()[i] != v {
			t.Fatalf("b₀ = %v, want %v", p.B(), wantB)
		}
	}
	if p.N() != 0 || p.Rewards() != 0 {
		t.Fatalf("prior n %d rewards %v, want 0", p.N(), p.Rewards())
	}

	rng := rand.New(rand.NewPCG(3, 4))
	arm := NewArm(15, 1)
	for _, x := range shopContexts(40) {
		_ = arm.Update(x, float64(rng.IntN(2)))
	}
	same := PooledPrior(15, 1, []*Arm{arm, arm, arm}, float64(arm.N()))
	for i, v := range arm.A() {
		if !relClose(same.A()[i], v, 1e-14) {
			t.Fatalf("prior from copies: A[%d] = %v, want %v", i, same.A()[i], v)
		}
	}
	for i, v := range arm.B() {
		if !relClose(same.B()[i], v, 1e-14) {
			t.Fatalf("prior from copies: b[%d] = %v, want %v", i, same.B()[i], v)
		}
	}
	for _, arms := range [][]*Arm{nil, {NewArm(15, 1)}} {
		fresh := PooledPrior(15, 1, arms, 2)
		for i, v := range NewArm(15, 1).A() {
			if fresh.A()[i] != v {
				t.Fatalf("prior without evidence: A = %v", fresh.A())
			}
		}
	}
}
