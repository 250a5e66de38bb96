package linucb_test

import (
	"fmt"

	"github.com/redbandit/redbandit/model/linucb"
)

// An arm learns from two events; its score for a context is the ridge
// estimate plus an exploration bonus.
func ExampleArm() {
	arm := linucb.NewArm(2, linucb.DefaultLambda)
	_ = arm.Update([]float64{1, 0}, 1) // a click in context (1, 0)
	_ = arm.Update([]float64{0, 1}, 0) // no click in context (0, 1)
	p, err := arm.Solve()
	if err != nil {
		panic(err)
	}
	fmt.Printf("n=%d θ=[%.2f %.2f]\n", arm.N(), p.Theta[0], p.Theta[1])
	fmt.Printf("score(1,0)=%.4f\n", linucb.Score([]float64{1, 0}, p, linucb.DefaultAlpha))
	// Output:
	// n=2 θ=[0.50 0.00]
	// score(1,0)=0.5707
}

// Rank returns the best arms for a context, highest score first.
func ExampleRank() {
	params := []linucb.Params{
		{Theta: []float64{0.1}, AInv: []float64{1}},
		{Theta: []float64{0.5}, AInv: []float64{0.25}},
		{Theta: []float64{0.3}, AInv: []float64{4}},
	}
	for _, r := range linucb.Rank([]float64{1}, params, 0.1, 2) {
		fmt.Printf("arm %d: %.2f\n", r.Index, r.Score)
	}
	// Output:
	// arm 1: 0.55
	// arm 2: 0.50
}
