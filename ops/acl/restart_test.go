package acl_test

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
)

// TestRestartKeepsModel runs the deployment a user builds from the README —
// the repository's redis.conf and the users file `redbandit acl` writes —
// writes a model as rb-trainer through the write script, loses Redis
// (SIGKILL) and starts it again: the model must come back exactly (A, b, n
// of every arm as written), rb-serve must score it through FCALL_RO and,
// once rb-admin reloaded the script cache, EVALSHA_RO, and every user must
// have the same rules. Redis 7.0 (at least up to 7.4) replays the AOF as the
// default user and checks its rights at each EXEC: a default user without
// the replay rights loses every write here.
func TestRestartKeepsModel(t *testing.T) {
	for _, mode := range []string{"aof", "aof-rewrite", "aof-bgsave", "rdb"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var args []string
			if mode == "rdb" {
				args = []string{"--appendonly", "no"} // the snapshot alone
			}
			srv := redistest.StartDeployed(t, "../../redis.conf", args...)
			ctx := context.Background()
			pw := redistest.TestPasswords
			op := srv.OperatorClient()
			trainer := srv.ClientAs(acl.TrainerUser, pw.Trainer)
			admin := srv.ClientAs(acl.AdminUser, pw.Admin)
			if err := store.Load(ctx, admin); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewSource(7))
			ref := map[string]*linucb.Arm{}
			write := func(round int) {
				t.Helper()
				ids := []string{"p1", "p2", "p3", "p4", "p5"}
				stored, err := store.ReadArms(ctx, trainer, "m", 3, 1, ids)
				if err != nil {
					t.Fatal(err)
				}
				w := store.Write{Model: "m", Features: []string{"a", "b", "c"}, Lambda: 1, Events: int64(len(ids))}
				for i, id := range ids[:2+round%4] {
					arm := stored[i].Arm
					if err := arm.Update([]float64{rng.Float64(), rng.Float64(), 1}, float64(rng.Intn(2))); err != nil {
						t.Fatal(err)
					}
					p, err := arm.Solve()
					if err != nil {
						t.Fatal(err)
					}
					w.Arms = append(w.Arms, store.ArmWrite{ID: id, Version: stored[i].Version, Arm: arm, Params: p})
					ref[id] = arm
				}
				w.Events = int64(len(w.Arms))
				if _, err := w.Apply(ctx, trainer); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
			for r := 0; r < 5; r++ {
				write(r)
			}
			switch mode {
			case "aof-rewrite":
				must(t, op.Do(ctx, op.B().Bgrewriteaof().Build()).Error())
				redistest.WaitPersisted(ctx, t, op)
				write(5) // after the rewrite: in the new incremental file
				write(6)
			case "aof-bgsave", "rdb":
				must(t, op.Do(ctx, op.B().Bgsave().Build()).Error())
				redistest.WaitPersisted(ctx, t, op)
			}
			serve := srv.ClientAs(acl.ServeUser, pw.Serve)
			q := store.Query{K: 3, Alpha: 0.5, Context: []float64{0.2, 0.7, 1}}
			before, err := store.RecommendFCall(ctx, serve, "m", q)
			if err != nil || len(before) != 3 {
				t.Fatalf("recommend before: %v %v", before, err)
			}
			rules := aclList(ctx, t, op)
			time.Sleep(1100 * time.Millisecond) // appendfsync everysec
			srv.Kill()
			srv.Restart()
			if log, _ := os.ReadFile(filepath.Join(srv.Dir, "redis.log")); strings.Contains(string(log), "CRITICAL") {
				t.Errorf("the replay sent errors:\n%s", log)
			}

			op = srv.OperatorClient()
			if got := aclList(ctx, t, op); !slices.Equal(got, rules) {
				t.Errorf("ACL rules changed by the restart:\n%q\nwant\n%q", got, rules)
			}
			trainer = srv.ClientAs(acl.TrainerUser, pw.Trainer)
			ids := make([]string, 0, len(ref))
			for id := range ref {
				ids = append(ids, id)
			}
			got, err := store.ReadArms(ctx, trainer, "m", 3, 1, ids)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range got {
				w := ref[a.ID]
				if a.Version == 0 || a.Arm.N() != w.N() || !slices.Equal(a.Arm.A(), w.A()) || !slices.Equal(a.Arm.B(), w.B()) {
					t.Errorf("arm %s after the restart: version %d n %d, want n %d and A, b as written", a.ID, a.Version, a.Arm.N(), w.N())
				}
			}
			serve = srv.ClientAs(acl.ServeUser, pw.Serve)
			after, err := store.RecommendFCall(ctx, serve, "m", q)
			if err != nil || !slices.Equal(after, before) {
				t.Errorf("FCALL_RO after the restart: %v %v, want %v", after, err, before)
			}
			// The script cache is empty and rb-serve may not reload it:
			// store.Recommend falls back to the function.
			if after, err := store.Recommend(ctx, serve, "m", q); err != nil || !slices.Equal(after, before) {
				t.Errorf("store.Recommend before the scripts are reloaded: %v %v, want %v", after, err, before)
			}
			admin = srv.ClientAs(acl.AdminUser, pw.Admin)
			if err := store.Load(ctx, admin); err != nil {
				t.Fatal(err)
			}
			if after, err := store.Recommend(ctx, serve, "m", q); err != nil || !slices.Equal(after, before) {
				t.Errorf("EVALSHA_RO after the restart: %v %v, want %v", after, err, before)
			}
		})
	}
}

// TestReplayRights checks the default user's rights against the roles, on
// the real server: each write command a role holds (Redis's own command
// flags say which) is a replay command, and the replay commands are exactly
// those of the default user (ACL DRYRUN), on rb:* keys only; and nobody can
// log in as it.
func TestReplayRights(t *testing.T) {
	srv := redistest.StartDeployed(t, "../../redis.conf")
	ctx := context.Background()
	op := srv.OperatorClient()
	for _, rule := range acl.Rules() {
		for _, f := range strings.Fields(rule) {
			if !strings.HasPrefix(f, "+") || strings.Contains(f, "|") || strings.HasPrefix(f, "+@") {
				continue
			}
			name := f[1:]
			info, err := op.Do(ctx, op.B().CommandInfo().CommandName(name).Build()).ToArray()
			if err != nil || len(info) != 1 {
				t.Fatalf("COMMAND INFO %s: %v", name, err)
			}
			desc, _ := info[0].ToArray()
			flags, _ := desc[2].AsStrSlice()
			if slices.Contains(flags, "write") && !slices.Contains(acl.ReplayCommands, name) {
				t.Errorf("%s is a write command of a role but not a replay command of the default user", name)
			}
		}
	}
	// DRYRUN answers OK, or a text saying why not.
	dry := func(args ...string) error {
		s, err := op.Do(ctx, op.B().Arbitrary("ACL", "DRYRUN", "default").Args(args...).Build()).ToString()
		if err == nil && s != "OK" {
			err = errors.New(s)
		}
		return err
	}
	for _, cmd := range acl.ReplayCommands {
		args := []string{cmd, "rb:{m}"} // del, unlink
		switch cmd {
		case "hset", "hincrby":
			args = append(args, "f", "1")
		case "hdel":
			args = append(args, "f")
		}
		if err := dry(args...); err != nil {
			t.Errorf("default user %v: %v, want allowed", args, err)
		}
		args[1] = "other"
		if err := dry(args...); err == nil {
			t.Errorf("default user %v allowed outside rb:*", args)
		}
	}
	for _, args := range [][]string{{"hget", "rb:{m}", "f"}, {"set", "rb:x", "1"}, {"flushall"}, {"eval", "return 1", "0"}, {"config", "get", "*"}} {
		if err := dry(args...); err == nil {
			t.Errorf("default user may run %v", args)
		}
	}
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true,
		Username: "default", Password: ""}); err == nil {
		c.Close()
		t.Errorf("connected as the default user")
	}
}

// aclList returns ACL LIST with each user's rules sorted (Redis lists a
// user's commands in no fixed order).
func aclList(ctx context.Context, t *testing.T, c rueidis.Client) []string {
	t.Helper()
	l, err := c.Do(ctx, c.B().AclList().Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range l {
		f := strings.Fields(line)
		slices.Sort(f[2:])
		l[i] = strings.Join(f, " ")
	}
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
