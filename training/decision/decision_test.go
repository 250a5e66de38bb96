package decision_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/redbandit/redbandit/training/decision"
)

// TestRoundTrip: decisions and rewards decode to what was encoded, with the
// schema id in the wire header; optional fields stay absent.
func TestRoundTrip(t *testing.T) {
	c, err := decision.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	mean, bonus := 0.25, 0.5
	d := decision.Decision{EventID: "e1", Model: "m", Context: []float64{0.5, 1, -2}, Alpha: 0.1, Policy: decision.Policy,
		Items:     []decision.Item{{ProductID: "a", Position: 1, Score: 0.75, Mean: &mean, Bonus: &bonus}, {ProductID: "b", Position: 2, Score: 0.5}},
		Timestamp: 1764000000000}
	r := decision.Reward{EventID: "e1", Model: "m", ProductID: "a", Reward: 0.5, Timestamp: 1764000000001}
	for _, ids := range [][2]uint32{{decision.DecisionSchemaID, decision.RewardSchemaID}, {41, 42}} {
		c.SetIDs(ids[0], ids[1])
		b, err := c.AppendDecision(nil, &d)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0 || binary.BigEndian.Uint32(b[1:5]) != ids[0] {
			t.Fatalf("decision header % x, want 0 and id %d", b[:5], ids[0])
		}
		got, err := c.DecodeDecision(b)
		if err != nil || !reflect.DeepEqual(got, d) {
			t.Fatalf("decision round trip: %+v, %v\nwant %+v", got, err, d)
		}
		b, err = c.AppendReward(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint32(b[1:5]) != ids[1] {
			t.Fatalf("reward header % x, want id %d", b[:5], ids[1])
		}
		gr, err := c.DecodeReward(b)
		if err != nil || gr != r {
			t.Fatalf("reward round trip: %+v, %v, want %+v", gr, err, r)
		}
	}
	for _, bad := range [][]byte{nil, {1, 0, 0, 0, 2, 0}, {0, 0, 0}} {
		if _, err := c.DecodeDecision(bad); !errors.Is(err, decision.ErrUndecodable) {
			t.Errorf("decode % x: %v, want ErrUndecodable", bad, err)
		}
	}
	b, _ := c.AppendReward(nil, &decision.Reward{EventID: "e1", Model: "m", Reward: 1})
	if _, err := c.DecodeReward(b); !errors.Is(err, decision.ErrUndecodable) {
		t.Errorf("a reward without a product: %v, want ErrUndecodable", err)
	}
}
