package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/lua"
)

// Query is one recommendation request.
type Query struct {
	K          int       // number of products, >= 1
	Alpha      float64   // exploration weight, >= 0
	Context    []float64 // x, of the model's dimension
	Candidates []string  // if not nil, score only these products
	Exclude    []string  // never return these products
	// Seed, if not 0, orders products of equal scores by their tie keys
	// for this seed (SEED, docs/FORMAT.md), as linucb.RankSeeded does:
	// 0..linucb.MaxSeed.
	Seed int64
}

// Item is one recommended product.
type Item struct {
	ID    string
	Score float64
}

// Args returns the script arguments for q: k, alpha, the context values,
// then the CANDIDATES, EXCLUDE and SEED options when set. The same arguments serve
// EVALSHA and FCALL_RO.
func (q Query) Args() []string {
	args := make([]string, 0, 2+len(q.Context)+6+len(q.Candidates)+len(q.Exclude))
	args = append(args, strconv.Itoa(q.K), FormatFloat(q.Alpha))
	for _, v := range q.Context {
		args = append(args, FormatFloat(v))
	}
	if q.Candidates != nil {
		args = append(args, "CANDIDATES", strconv.Itoa(len(q.Candidates)))
		args = append(args, q.Candidates...)
	}
	if len(q.Exclude) > 0 {
		args = append(args, "EXCLUDE", strconv.Itoa(len(q.Exclude)))
		args = append(args, q.Exclude...)
	}
	if q.Seed != 0 {
		args = append(args, "SEED", strconv.FormatInt(q.Seed, 10))
	}
	return args
}

// Recommend returns the top q.K products of model for q.Context, best first,
// with one call of recommend.lua. It is sent as EVALSHA_RO (EVAL_RO if Redis
// lost the script): the script declares no-writes, so the call runs on
// replicas too and the client may retry it after a dropped connection.
// Errors wrap ErrNoModel, ErrBadArg or ErrBadModel.
//
// A restart empties Redis's script cache, and a user that may not send new
// code (rb-serve: EVALSHA_RO but not EVAL_RO) cannot reload it: then the
// call goes to the rb_recommend function (FCALL_RO), which persists with
// the data, until an admin loads the script again.
func Recommend(ctx context.Context, c rueidis.Client, model string, q Query) ([]Item, error) {
	res := lua.RecommendRO.Exec(ctx, c, []string{RootKey(model)}, q.Args())
	if err := res.Error(); err != nil && strings.HasPrefix(err.Error(), "NOPERM") && strings.Contains(err.Error(), "'eval_ro'") {
		items, ferr := RecommendFCall(ctx, c, model, q)
		if ferr != nil {
			return nil, fmt.Errorf("recommend.lua is not loaded (Redis restarted?), this user may not send it (%v), and FCALL_RO failed too (redbandit script load loads both): %w", err, ferr)
		}
		return items, nil
	}
	return parseItems(res, model)
}

// RecommendFCall is Recommend through the Redis Function rb_recommend with
// FCALL_RO, which replicas accept. The library must be loaded (Load).
func RecommendFCall(ctx context.Context, c rueidis.Client, model string, q Query) ([]Item, error) {
	cmd := c.B().FcallRo().Function(lua.RecommendFunction).Numkeys(1).Key(RootKey(model)).Arg(q.Args()...).Build()
	return parseItems(c.Do(ctx, cmd), model)
}

func parseItems(res rueidis.RedisResult, model string) ([]Item, error) {
	vals, err := res.AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("recommend from %s: %w", RootKey(model), ScriptError(err))
	}
	if len(vals)%2 != 0 {
		return nil, fmt.Errorf("recommend from %s: odd reply of %d values", RootKey(model), len(vals))
	}
	items := make([]Item, len(vals)/2)
	for i := range items {
		score, err := strconv.ParseFloat(vals[2*i+1], 64)
		if err != nil || math.IsNaN(score) {
			return nil, fmt.Errorf("recommend from %s: score %q of %s: %v", RootKey(model), vals[2*i+1], vals[2*i], err)
		}
		items[i] = Item{ID: vals[2*i], Score: score}
	}
	return items, nil
}

// Load loads recommend.lua and write.lua into the script cache and the
// rb_recommend function library (FUNCTION LOAD REPLACE). Loading is
// idempotent; servers keep functions across restarts (they are persisted
// with the data) but not scripts, which Exec reloads on NOSCRIPT.
//
// Each server has its own script cache, so the scripts go to every node c
// reaches (c.Nodes(): a cluster's primaries and replicas, or a primary and
// the replicas of DialReplicas). The library goes to every node too: a
// replica refuses it (READONLY) and gets it from its primary by
// replication. At least one node must take it.
func Load(ctx context.Context, c rueidis.Client) error {
	nodes := c.Nodes()
	addrs := slices.Sorted(maps.Keys(nodes))
	loaded := false
	for _, addr := range addrs {
		n := nodes[addr]
		for _, src := range []string{lua.RecommendSource(), lua.WriteSource()} {
			if err := n.Do(ctx, n.B().ScriptLoad().Script(src).Build()).Error(); err != nil {
				return fmt.Errorf("script load on %s: %w", addr, err)
			}
		}
		err := n.Do(ctx, n.B().FunctionLoad().Replace().FunctionCode(lua.Library()).Build()).Error()
		if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), "READONLY") {
			continue
		}
		if err != nil {
			return fmt.Errorf("function load on %s: %w", addr, err)
		}
		loaded = true
	}
	if !loaded {
		return fmt.Errorf("function load: %w", ErrNoPrimary)
	}
	return nil
}

// ReloadScoringScript loads recommend.lua into the script cache of every
// node c reaches that lacks it (SCRIPT EXISTS, then SCRIPT LOAD). A server's
// script cache is empty after a restart or a failover, and clients that
// call the script by its SHA and may not send its source (EVALSHA_RO as
// rb-serve) get NOSCRIPT until someone loads it; the trainer calls this
// after each flush, so they are served again within a flush interval. It
// costs one round trip per node, two where the script was missing, and
// needs SCRIPT EXISTS and SCRIPT LOAD (rb-trainer, rb-admin).
func ReloadScoringScript(ctx context.Context, c rueidis.Client) error {
	sha := lua.RecommendSHA()
	for addr, n := range c.Nodes() {
		have, err := n.Do(ctx, n.B().ScriptExists().Sha1(sha).Build()).AsIntSlice()
		if err != nil {
			return fmt.Errorf("script exists on %s: %w", addr, err)
		}
		if len(have) == 1 && have[0] == 1 {
			continue
		}
		if err := n.Do(ctx, n.B().ScriptLoad().Script(lua.RecommendSource()).Build()).Error(); err != nil {
			return fmt.Errorf("script load on %s: %w", addr, err)
		}
	}
	return nil
}

// ErrNoPrimary reports that every node Load reached is a read-only replica.
var ErrNoPrimary = errors.New("every node is a read-only replica")

// readyModel is the model CheckLoaded scores: one that does not exist.
const readyModel = "__readyz__"

// CheckLoaded checks that Redis answers and that the scoring script
// (EVALSHA_RO; with fcall, the function rb_recommend through FCALL_RO) is
// loaded, by calling it once on a model that does not exist: a loaded
// script answers NOMODEL without reading anything else. It needs no more
// permission than Recommend. It returns nil if the script is loaded.
func CheckLoaded(ctx context.Context, c rueidis.Client, fcall bool) error {
	key := RootKey(readyModel)
	var err error
	if fcall {
		err = c.Do(ctx, c.B().FcallRo().Function(lua.RecommendFunction).Numkeys(1).Key(key).Arg("1", "0").Build()).Error()
	} else {
		err = c.Do(ctx, c.B().EvalshaRo().Sha1(lua.RecommendSHA()).Numkeys(1).Key(key).Arg("1", "0").Build()).Error()
	}
	if errors.Is(ScriptError(err), ErrNoModel) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("the scoring script answered model %s, which does not exist", readyModel)
	}
	return err
}
