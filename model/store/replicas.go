package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ErrClusterReplicas reports replica URLs given with a Redis Cluster, whose
// replicas the client finds by itself.
var ErrClusterReplicas = errors.New("replica URLs are for a single primary, not a cluster")

// replicaRest is how long a replica that failed is left out of the turn.
const replicaRest = time.Second

// DialReplicas connects to the primary at url and to its read replicas
// (one URL each, as for Dial). The client sends read-only commands
// (EVALSHA_RO and EVAL_RO, FCALL_RO, HMGET, SCAN…) to the replicas in turn
// and everything else — writes, transactions, client-side caching and its
// tracking, dedicated connections — to the primary. A read a replica cannot
// answer (connection lost, or LOADING, MASTERDOWN, BUSY) goes to the
// primary instead, and that replica sits out for a second, as does one that
// let a read's deadline pass (that read fails). Each replica must
// answer at start. A read from a replica may be behind the primary by the
// replication delay. With no replicas it is Dial.
//
// rueidis's own standalone replica option picks at random and has no
// fallback: a replica that dies fails the reads sent to it.
func DialReplicas(url string, replicas []string) (rueidis.Client, error) {
	primary, err := Dial(url)
	if err != nil || len(replicas) == 0 {
		return primary, err
	}
	if primary.Mode() == rueidis.ClientModeCluster {
		primary.Close()
		return nil, ErrClusterReplicas
	}
	r := &replicated{Client: primary, replicas: make([]replica, len(replicas))}
	for i, u := range replicas {
		opt, err := rueidis.ParseURL(u)
		if err == nil {
			opt.DisableCache = true
			opt.DisableRetry = true // a failed read goes to the primary instead
			opt.ForceSingleClient = true
			r.replicas[i].Client, err = rueidis.NewClient(opt)
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		r.replicas[i].addr = opt.InitAddress[0]
	}
	return r, nil
}

type replica struct {
	rueidis.Client
	addr      string
	restUntil atomic.Int64 // Unix nanoseconds; left out of the turn until then
}

// replicated is a primary's client that sends reads to its replicas.
type replicated struct {
	rueidis.Client // the primary
	replicas       []replica
	next           atomic.Uint64
}

// pick returns the next replica in turn that is not resting, or nil.
func (r *replicated) pick() *replica {
	now := time.Now().UnixNano()
	start := r.next.Add(1)
	for i := range uint64(len(r.replicas)) {
		rep := &r.replicas[(start+i)%uint64(len(r.replicas))]
		if rep.restUntil.Load() <= now {
			return rep
		}
	}
	return nil
}

// failed reports whether a replica's reply err means the primary should
// answer instead — the replica is unreachable, still loading its data, cut
// off from its primary, or busy with a script — and then rests the
// replica. Script and argument errors are the answer. A replica that let
// the deadline pass rests too (it may hang: paused, or a network cut), but
// the read has no time left for the primary.
func (r *replicated) failed(ctx context.Context, rep *replica, err error) bool {
	if err == nil {
		return false
	}
	fallback := false
	if ctx.Err() == nil {
		re, ok := rueidis.IsRedisErr(err)
		code := ""
		if ok {
			code, _, _ = strings.Cut(re.Error(), " ")
		}
		fallback = !ok || code == "LOADING" || code == "MASTERDOWN" || code == "BUSY"
	}
	if fallback || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		rep.restUntil.Store(time.Now().Add(replicaRest).UnixNano())
	}
	return fallback
}

func (r *replicated) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if !cmd.IsReadOnly() {
		return r.Client.Do(ctx, cmd)
	}
	rep := r.pick()
	if rep == nil {
		return r.Client.Do(ctx, cmd)
	}
	cmd = cmd.Pin() // sent again to the primary if the replica fails
	res := rep.Do(ctx, cmd)
	if r.failed(ctx, rep, res.Error()) {
		return r.Client.Do(ctx, cmd)
	}
	return res
}

func (r *replicated) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	for _, cmd := range multi {
		if !cmd.IsReadOnly() {
			return r.Client.DoMulti(ctx, multi...)
		}
	}
	rep := r.pick()
	if rep == nil {
		return r.Client.DoMulti(ctx, multi...)
	}
	for i := range multi {
		multi[i] = multi[i].Pin()
	}
	res := rep.DoMulti(ctx, multi...)
	for _, one := range res {
		if r.failed(ctx, rep, one.Error()) {
			return r.Client.DoMulti(ctx, multi...)
		}
	}
	return res
}

// Nodes returns the primary and the replicas, by address.
func (r *replicated) Nodes() map[string]rueidis.Client {
	nodes := maps.Clone(r.Client.Nodes())
	for i := range r.replicas {
		nodes[r.replicas[i].addr] = r.replicas[i].Client
	}
	return nodes
}

func (r *replicated) Close() {
	for i := range r.replicas {
		if r.replicas[i].Client != nil {
			r.replicas[i].Close()
		}
	}
	r.Client.Close()
}
