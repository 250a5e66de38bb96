package store

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/linucb"
)

// ArmParams is what scores one arm, from its arm hash: θ and A⁻¹, and the
// number of events folded into it.
type ArmParams struct {
	ID string
	// Stored is false if the arm hash has no θ: the model has never seen
	// the product, which scores as a fresh arm (PriorParams). Params is
	// then zero.
	Stored bool
	Params linucb.Params
	// Events is the arm's n (reporting only); 0 if absent or not an
	// integer.
	Events int64
}

// ArmCounts is what an arm hash records of the events folded into it, for
// reporting (LinUCB does not use it).
type ArmCounts struct {
	ID string
	// Events is the arm's n; 0 if the arm is not stored or n is not an
	// integer.
	Events int64
	// Rewards is the sum of their rewards; 0 if absent or not a number
	// (then RewardsOK is false).
	Rewards   float64
	RewardsOK bool
}

// MeanReward returns the mean reward of the arm's events, Rewards/Events,
// and whether there is one (events folded and their sum readable).
func (a ArmCounts) MeanReward() (float64, bool) {
	if a.Events <= 0 || !a.RewardsOK {
		return 0, false
	}
	return a.Rewards / float64(a.Events), true
}

// PriorParams returns the parameters of a fresh arm of dimension d, which
// is how a product the model has never seen is scored: θ = 0, A⁻¹ = I/λ.
func PriorParams(d int, lambda float64) linucb.Params {
	p := linucb.Params{Theta: make([]float64, d), AInv: make([]float64, d*d)}
	for j := 0; j < d; j++ {
		p.AInv[j*d+j] = 1 / lambda
	}
	return p
}

// ParamsCommand returns the command that reads θ and A⁻¹ of product id
// (one HMGET of its arm hash), for a caller that pipelines its own batches
// and reuses commands (Pin); DecodeParams decodes its reply. ReadParams is
// the plain way to read parameters.
func ParamsCommand(b rueidis.Builder, model, id string) rueidis.Completed {
	return b.Hmget().Key(ArmKey(model, id)).Field("theta", "ainv").Build()
}

// DecodeParams decodes the reply of a ParamsCommand into p, whose Theta and
// AInv must already have the model's sizes (d and d·d), without allocating.
// It returns false if the arm has no θ (not stored), the error of res as it
// is, and ErrBadModel if θ or A⁻¹ is not of p's size.
func DecodeParams(res rueidis.RedisResult, p *linucb.Params) (bool, error) {
	vals, err := res.ToArray()
	if err != nil {
		return false, err
	}
	return decodeParams(vals, p)
}

// decodeParams decodes θ and A⁻¹ from the first two values of an arm's
// HMGET (theta, ainv, …) into p.
func decodeParams(vals []rueidis.RedisMessage, p *linucb.Params) (bool, error) {
	if len(vals) < 2 {
		return false, fmt.Errorf("%w: %d values for θ and A⁻¹", ErrBadModel, len(vals))
	}
	if vals[0].IsNil() {
		return false, nil
	}
	th, err1 := vals[0].ToString()
	ai, err2 := vals[1].ToString()
	if err1 != nil || err2 != nil || !decodeFloatsInto(p.Theta, th) || !decodeFloatsInto(p.AInv, ai) {
		return true, fmt.Errorf("%w: θ has %d bytes and A⁻¹ %d, want %d and %d", ErrBadModel, len(th), len(ai), 8*len(p.Theta), 8*len(p.AInv))
	}
	return true, nil
}

// decodeFloatsInto decodes the little-endian doubles of s into dst; it
// reports whether s holds exactly len(dst) of them.
func decodeFloatsInto(dst []float64, s string) bool {
	if len(s) != 8*len(dst) {
		return false
	}
	for i := range dst {
		o := 8 * i
		_ = s[o+7]
		u := uint64(s[o]) | uint64(s[o+1])<<8 | uint64(s[o+2])<<16 | uint64(s[o+3])<<24 |
			uint64(s[o+4])<<32 | uint64(s[o+5])<<40 | uint64(s[o+6])<<48 | uint64(s[o+7])<<56
		dst[i] = math.Float64frombits(u)
	}
	return true
}

// ReadParams reads θ, A⁻¹ and n of the given products of a model of
// dimension d: one HMGET per product, all in one pipelined round trip. A
// product whose arm hash has no θ comes back with Stored false. A θ or A⁻¹
// of the wrong size is ErrBadModel.
func ReadParams(ctx context.Context, c rueidis.Client, model string, d int, ids []string) ([]ArmParams, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = c.B().Hmget().Key(ArmKey(model, id)).Field("theta", "ainv", "n").Build()
	}
	out := make([]ArmParams, len(ids))
	for i, res := range doReads(ctx, c, cmds) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("read arm %s: %w", ids[i], err)
		}
		a := ArmParams{ID: ids[i], Params: linucb.Params{Theta: make([]float64, d), AInv: make([]float64, d*d)}}
		if a.Stored, err = decodeParams(vals, &a.Params); err != nil {
			return nil, fmt.Errorf("arm %s of %s: %w", ids[i], model, err)
		}
		if !a.Stored {
			a.Params = linucb.Params{}
		}
		a.Events, _ = vals[2].AsInt64()
		out[i] = a
	}
	return out, nil
}

// ReadCounts reads n and rewards of the given products: one HMGET per
// product, all in one pipelined round trip. The values are for reporting,
// so a missing or malformed one reads as zero rather than failing.
func ReadCounts(ctx context.Context, c rueidis.Client, model string, ids []string) ([]ArmCounts, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = c.B().Hmget().Key(ArmKey(model, id)).Field("n", "rewards").Build()
	}
	out := make([]ArmCounts, len(ids))
	for i, res := range doReads(ctx, c, cmds) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("read arm %s: %w", ids[i], err)
		}
		a := ArmCounts{ID: ids[i]}
		a.Events, _ = vals[0].AsInt64()
		if rs, err := vals[1].ToString(); err == nil {
			if a.Rewards, err = strconv.ParseFloat(rs, 64); err == nil {
				a.RewardsOK = true
			} else {
				a.Rewards = 0
			}
		}
		out[i] = a
	}
	return out, nil
}
