// Package doctor checks a live redbandit deployment: the Redis version,
// persistence, eviction, the AOF-replay ACL hazard, the scripts and function
// library, each model, and the ACL users' rights. Each check gives one
// PASS, WARN or FAIL line.
//
// The durability checks (Durability) are the ones a restart or memory
// pressure turns into a lost model; the commands that write models run them
// before they start. They need INFO and ACL DRYRUN, which rb-trainer and
// rb-admin hold; the full Run needs rb-admin's rights (CONFIG GET, SCAN,
// FUNCTION LIST).
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
)

// Status is a check's verdict.
type Status int

// Verdicts, from best to worst.
const (
	Pass Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	return [...]string{"PASS", "WARN", "FAIL"}[s]
}

// Result is one check's outcome.
type Result struct {
	Check  string // e.g. "persistence", "model default"
	Status Status
	Detail string
}

func (r Result) String() string { return fmt.Sprintf("%s  %-16s %s", r.Status, r.Check, r.Detail) }

// Report is the results of a run, in order.
type Report []Result

// Worst returns the worst status in r (Pass if r is empty).
func (r Report) Worst() Status {
	w := Pass
	for _, res := range r {
		w = max(w, res.Status)
	}
	return w
}

// Failed returns the failed results.
func (r Report) Failed() Report {
	var out Report
	for _, res := range r {
		if res.Status == Fail {
			out = append(out, res)
		}
	}
	return out
}

// Print writes one line per result.
func (r Report) Print(w io.Writer) error {
	for _, res := range r {
		if _, err := fmt.Fprintln(w, res); err != nil {
			return err
		}
	}
	return nil
}

// ErrUnsafe reports a deployment whose durability checks failed.
var ErrUnsafe = errors.New("redis is not safe for model writes")

// Check returns nil if no durability check fails, else an error wrapping
// ErrUnsafe that lists the failures and names the fix (or the error that
// kept it from checking).
func Check(ctx context.Context, c rueidis.Client) error {
	if _, err := readInfo(ctx, c); err != nil { // unreachable, or not allowed INFO: not a verdict on durability
		return fmt.Errorf("durability check: %w", err)
	}
	failed := Durability(ctx, c).Failed()
	if len(failed) == 0 {
		return nil
	}
	var b strings.Builder
	for _, f := range failed {
		b.WriteString("\n  " + f.String())
	}
	return fmt.Errorf("%w:%s\nstart Redis with the repository's redis.conf and the users file `redbandit acl` writes (see docs/OPERATIONS.md, Durability), or pass --allow-unsafe-redis to write anyway", ErrUnsafe, b.String())
}

// Durability runs the checks whose failure loses models: the version,
// persistence, the eviction policy and the AOF-replay ACL hazard. In a
// cluster it checks every node (a replica is a primary after a failover).
func Durability(ctx context.Context, c rueidis.Client) Report {
	return eachNode(c, func(n rueidis.Client) Report { return durability(ctx, n) })
}

func durability(ctx context.Context, c rueidis.Client) Report {
	info, err := readInfo(ctx, c)
	if err != nil {
		return Report{{"redis", Fail, err.Error()}}
	}
	cfg := readConfig(ctx, c)
	return Report{
		versionCheck(info),
		persistenceCheck(info, cfg),
		evictionCheck(info),
		replayCheck(ctx, c, info),
	}
}

// Run runs every check: Durability, then the scripts and function library,
// each model, and the users' rights.
func Run(ctx context.Context, c rueidis.Client) Report {
	r := Durability(ctx, c)
	r = append(r, eachNode(c, func(n rueidis.Client) Report {
		return Report{scriptCheck(ctx, n), functionCheck(ctx, n)}
	})...)
	r = append(r, modelChecks(ctx, c, time.Now())...)
	r = append(r, eachNode(c, func(n rueidis.Client) Report { return userChecks(ctx, n) })...)
	return r
}

// eachNode runs check on c, or in a cluster on every node (servers keep
// their own configuration, script cache and users), and merges the
// reports check by check: the nodes' common result, or the worst one,
// naming its node, when they differ.
func eachNode(c rueidis.Client, check func(rueidis.Client) Report) Report {
	if c.Mode() != rueidis.ClientModeCluster {
		return check(c)
	}
	nodes := c.Nodes()
	addrs := slices.Sorted(maps.Keys(nodes))
	var names []string
	byName := map[string][]Result{}
	at := map[string][]string{}
	for _, addr := range addrs {
		for _, res := range check(nodes[addr]) {
			if _, ok := byName[res.Check]; !ok {
				names = append(names, res.Check)
			}
			byName[res.Check] = append(byName[res.Check], res)
			at[res.Check] = append(at[res.Check], addr)
		}
	}
	var out Report
	for _, name := range names {
		rs := byName[name]
		worst, same := 0, len(rs) == len(addrs)
		for i, r := range rs {
			if r.Status > rs[worst].Status {
				worst = i
			}
			same = same && r == rs[0]
		}
		if same {
			out = append(out, Result{name, rs[0].Status, fmt.Sprintf("%s (all %d nodes)", rs[0].Detail, len(addrs))})
			continue
		}
		out = append(out, Result{name, rs[worst].Status, fmt.Sprintf("node %s: %s (nodes differ; %d of %d checked)", at[name][worst], rs[worst].Detail, len(rs), len(addrs))})
	}
	return out
}

type fields map[string]string

// readInfo reads INFO's server, persistence and memory sections.
func readInfo(ctx context.Context, c rueidis.Client) (fields, error) {
	out := fields{}
	for _, sec := range []string{"server", "persistence", "memory"} {
		s, err := c.Do(ctx, c.B().Info().Section(sec).Build()).ToString()
		if err != nil {
			return nil, fmt.Errorf("INFO %s: %w", sec, err)
		}
		for _, line := range strings.Split(s, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				out[k] = v
			}
		}
	}
	return out, nil
}

// readConfig reads the persistence parameters; nil if CONFIG GET is not
// allowed (rb-trainer).
func readConfig(ctx context.Context, c rueidis.Client) fields {
	out := fields{}
	for _, p := range []string{"appendonly", "appendfsync", "save"} {
		m, err := c.Do(ctx, c.B().ConfigGet().Parameter(p).Build()).AsStrMap()
		if err != nil {
			return nil
		}
		out[p] = m[p]
	}
	return out
}

func versionCheck(info fields) Result {
	v := info["redis_version"]
	major, _ := strconv.Atoi(strings.Split(v, ".")[0])
	if major < 7 {
		return Result{"version", Fail, "Redis " + v + ": redbandit needs 7.0 or later (script flags, functions)"}
	}
	return Result{"version", Pass, "Redis " + v}
}

func persistenceCheck(info, cfg fields) Result {
	const name = "persistence"
	for _, k := range []string{"aof_last_write_status", "aof_last_bgrewrite_status", "rdb_last_bgsave_status"} {
		if s, ok := info[k]; ok && s != "ok" {
			return Result{name, Fail, fmt.Sprintf("%s is %s: Redis cannot write its files (disk full or not writable?)", k, s)}
		}
	}
	if info["aof_enabled"] == "1" {
		switch cfg["appendfsync"] {
		case "everysec", "always":
			return Result{name, Pass, "AOF on, appendfsync " + cfg["appendfsync"]}
		case "":
			return Result{name, Pass, "AOF on (appendfsync not readable by this user)"}
		default:
			return Result{name, Warn, "AOF on but appendfsync " + cfg["appendfsync"] + ": a power loss may lose more than a second of writes (redis.conf: everysec)"}
		}
	}
	switch {
	case cfg == nil:
		return Result{name, Fail, "AOF off, and this user cannot read the save points (CONFIG GET): a restart may lose every write since the last snapshot or every model (redis.conf turns AOF on)"}
	case strings.TrimSpace(cfg["save"]) == "":
		return Result{name, Fail, "AOF off and no snapshots (save \"\"): a restart loses every model (redis.conf turns AOF on)"}
	default:
		return Result{name, Warn, "AOF off, snapshots only (save " + cfg["save"] + "): a crash rolls models and stored offsets back to the last snapshot (redis.conf turns AOF on)"}
	}
}

func evictionCheck(info fields) Result {
	p := info["maxmemory_policy"]
	switch {
	case p == "noeviction":
		return Result{"maxmemory-policy", Pass, "noeviction"}
	case strings.HasPrefix(p, "volatile-"):
		return Result{"maxmemory-policy", Warn, p + ": models have no TTL so are not evicted, but use noeviction (redis.conf)"}
	default:
		return Result{"maxmemory-policy", Fail, p + ": Redis may evict model keys under memory pressure; use noeviction (redis.conf)"}
	}
}

// dryrun asks whether user may run args: nil if so, else why not.
func dryrun(ctx context.Context, c rueidis.Client, user string, args ...string) error {
	s, err := c.Do(ctx, c.B().Arbitrary("ACL", "DRYRUN", user).Args(args...).Build()).ToString()
	if err != nil {
		return err
	}
	if s != "OK" {
		return errors.New(s)
	}
	return nil
}

// replayCheck: Redis 7.0 (the source up to at least 7.4) loads the AOF as
// the default user and checks that user's rights at each EXEC, and model
// writes (script effects) are logged as MULTI/EXEC: without the rights,
// every write is refused on load and the model is lost, silently. No fixed
// version is known, so every version is checked.
func replayCheck(ctx context.Context, c rueidis.Client, info fields) Result {
	const name = "aof-replay"
	if info["aof_enabled"] != "1" {
		return Result{name, Pass, "AOF off: nothing is replayed"}
	}
	var missing []string
	for _, cmd := range acl.ReplayCommands {
		args := []string{cmd, store.RootKey("doctor")}
		switch cmd {
		case "hset", "hincrby":
			args = append(args, "f", "1")
		case "hdel":
			args = append(args, "f")
		}
		err := dryrun(ctx, c, acl.DefaultUser, args...)
		var re *rueidis.RedisError
		if errors.As(err, &re) {
			return Result{name, Warn, "cannot check the default user's rights (ACL DRYRUN: " + err.Error() + ")"}
		}
		if err != nil {
			missing = append(missing, strings.ToUpper(cmd))
		}
	}
	if len(missing) > 0 {
		return Result{name, Fail, fmt.Sprintf("Redis %s replays the AOF as the default user, which may not run %s on rb:* keys: "+
			"every model write would be refused on the next restart; regenerate users.acl with `redbandit acl` (its default user is off and holds these rights)",
			info["redis_version"], strings.Join(missing, ", "))}
	}
	return Result{name, Pass, "the default user may replay model writes (" + strings.Join(acl.ReplayCommands, " ") + " on rb:*)"}
}

func scriptCheck(ctx context.Context, c rueidis.Client) Result {
	shas := []string{lua.RecommendSHA(), lua.WriteSHA()}
	got, err := c.Do(ctx, c.B().ScriptExists().Sha1(shas...).Build()).AsIntSlice()
	if err != nil {
		return Result{"scripts", Warn, "SCRIPT EXISTS: " + err.Error()}
	}
	var missing []string
	for i, ok := range got {
		if ok == 0 {
			missing = append(missing, [...]string{"recommend.lua " + shas[0], "write.lua " + shas[1]}[i])
		}
	}
	if len(missing) > 0 {
		return Result{"scripts", Warn, "not in the script cache (emptied by each restart): " + strings.Join(missing, ", ") +
			"; clients that may EVAL reload them, rb-serve cannot: run `redbandit script load` as rb-admin or serve with FCALL_RO"}
	}
	return Result{"scripts", Pass, "recommend.lua and write.lua of this binary are loaded"}
}

func functionCheck(ctx context.Context, c rueidis.Client) Result {
	const name = "function"
	libs, err := c.Do(ctx, c.B().FunctionList().Libraryname(lua.LibraryName).Withcode().Build()).ToArray()
	if err != nil {
		return Result{name, Warn, "FUNCTION LIST: " + err.Error()}
	}
	for _, l := range libs {
		m, err := l.AsMap()
		if err != nil {
			continue
		}
		nm, cm := m["library_name"], m["library_code"]
		if n, _ := nm.ToString(); n != lua.LibraryName {
			continue
		}
		if code, _ := cm.ToString(); code != lua.Library() {
			return Result{name, Fail, "library " + lua.LibraryName + " differs from this binary's: run `redbandit script load` as rb-admin"}
		}
		return Result{name, Pass, "library " + lua.LibraryName + " (" + lua.RecommendFunction + ") matches this binary"}
	}
	return Result{name, Fail, "library " + lua.LibraryName + " not loaded (FCALL_RO fails): run `redbandit script load` as rb-admin"}
}

func modelChecks(ctx context.Context, c rueidis.Client, now time.Time) Report {
	names, err := store.ListModels(ctx, c)
	if err != nil {
		return Report{{"models", Warn, err.Error()}}
	}
	if len(names) == 0 {
		return Report{{"models", Warn, "no model stored yet (redbandit bootstrap or the trainer creates one)"}}
	}
	var out Report
	for _, n := range names {
		check := "model " + n
		m, err := store.ReadMeta(ctx, c, n)
		if err != nil {
			out = append(out, Result{check, Fail, err.Error()})
			continue
		}
		size := "size unknown"
		if b, err := c.Do(ctx, c.B().MemoryUsage().Key(store.RootKey(n)).Build()).AsInt64(); err == nil {
			size = fmt.Sprintf("root %.1f KB", float64(b)/1024)
		}
		last := "never written"
		if m.UpdatedMS > 0 {
			t := time.UnixMilli(m.UpdatedMS).UTC()
			last = "last write " + t.Format(time.RFC3339) + " (" + now.Sub(t).Round(time.Second).String() + " ago)"
		}
		detail := fmt.Sprintf("format %d, d %d, %d products, %d events, %s, %s", m.Format, m.Dim, m.Arms, m.Events, size, last)
		status := Pass
		if m.Format < store.FormatVersion {
			status = Warn
			detail += fmt.Sprintf("; format %d is migrated to %d by the next write", m.Format, store.FormatVersion)
		}
		out = append(out, Result{check, status, detail})
	}
	return out
}

// userChecks reports the connecting user, then compares each user's rights
// with its role (acl.Probes) by ACL DRYRUN.
func userChecks(ctx context.Context, c rueidis.Client) Report {
	me, err := c.Do(ctx, c.B().AclWhoami().Build()).ToString()
	if err != nil {
		return Report{{"connection", Warn, "ACL WHOAMI: " + err.Error()}}
	}
	out := Report{{"connection", Pass, "connected as " + me}}
	if me != acl.AdminUser {
		out[0] = Result{"connection", Warn, "connected as " + me + ": run doctor as " + acl.AdminUser + " (some checks need its rights)"}
	}
	probes := acl.Probes()
	for _, u := range []string{acl.ServeUser, acl.TrainerUser, acl.AdminUser, acl.DefaultUser} {
		out = append(out, userCheck(ctx, c, u, probes[u]))
	}
	return out
}

func userCheck(ctx context.Context, c rueidis.Client, user string, probes []acl.Probe) Result {
	check := "user " + user
	var wrong []string
	for _, p := range probes {
		err := dryrun(ctx, c, user, p.Args...)
		var re *rueidis.RedisError
		if errors.As(err, &re) {
			if strings.Contains(err.Error(), "not found") {
				return Result{check, Fail, "no such user: the users file is not `redbandit acl`'s"}
			}
			return Result{check, Warn, "cannot check (ACL DRYRUN: " + err.Error() + ")"}
		}
		if allowed := err == nil; allowed != p.Allowed {
			verb := "may not"
			if allowed {
				verb = "may"
			}
			wrong = append(wrong, verb+" "+strings.Join(p.Args, " "))
		}
	}
	if len(wrong) > 0 {
		return Result{check, Fail, "rights differ from the role's (regenerate users.acl with `redbandit acl`): " + strings.Join(wrong, "; ")}
	}
	return Result{check, Pass, fmt.Sprintf("rights match the role (%d probes)", len(probes))}
}
