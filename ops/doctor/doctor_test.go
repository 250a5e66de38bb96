package doctor_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
	"github.com/redbandit/redbandit/ops/doctor"
)

const conf = "../../redis.conf"

// writeModel writes a one-product model "m" as c (rb-trainer).
func writeModel(t *testing.T, c rueidis.Client) {
	t.Helper()
	arm := linucb.NewArm(2, 1)
	if err := arm.Update([]float64{1, 0}, 1); err != nil {
		t.Fatal(err)
	}
	p, err := arm.Solve()
	if err != nil {
		t.Fatal(err)
	}
	w := store.Write{Model: "m", Features: []string{"a", "b"}, Lambda: 1, Events: 1, Arms: []store.ArmWrite{{ID: "x", Arm: arm, Params: p}}}
	if _, err := w.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// statuses maps each check to its status.
func statuses(r doctor.Report) map[string]doctor.Status {
	m := map[string]doctor.Status{}
	for _, res := range r {
		m[res.Check] = res.Status
	}
	return m
}

// TestGoodDeployment: the shipped redis.conf, the users file of `redbandit
// acl`, the scripts loaded and a model written: every check passes, as
// rb-admin; rb-trainer runs the durability checks and they pass.
func TestGoodDeployment(t *testing.T) {
	srv := redistest.StartDeployed(t, conf)
	ctx := context.Background()
	pw := redistest.TestPasswords
	admin := srv.ClientAs(acl.AdminUser, pw.Admin)
	if err := store.Load(ctx, admin); err != nil {
		t.Fatal(err)
	}
	writeModel(t, srv.ClientAs(acl.TrainerUser, pw.Trainer))
	r := doctor.Run(ctx, admin)
	var b strings.Builder
	_ = r.Print(&b)
	t.Logf("doctor:\n%s", b.String())
	want := []string{"version", "persistence", "maxmemory-policy", "aof-replay", "scripts", "function", "model m", "connection",
		"user rb-serve", "user rb-trainer", "user rb-admin", "user default"}
	got := statuses(r)
	if len(r) != len(want) {
		t.Errorf("%d checks, want %d", len(r), len(want))
	}
	for _, c := range want {
		if s, ok := got[c]; !ok || s != doctor.Pass {
			t.Errorf("check %q: %v (present %v), want PASS", c, s, ok)
		}
	}
	for _, line := range []string{"format 3, d 2, 1 products, 1 events", "AOF on, appendfsync everysec"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("the report lacks %q", line)
		}
	}
	trainer := srv.ClientAs(acl.TrainerUser, pw.Trainer)
	if err := doctor.Check(ctx, trainer); err != nil {
		t.Errorf("durability check as rb-trainer: %v", err)
	}
	if r := doctor.Durability(ctx, trainer); r.Worst() != doctor.Pass {
		t.Errorf("durability as rb-trainer: %v", r)
	}
}

// TestBareServer: a redis-server without configuration (nothing persisted,
// no users): persistence fails, so Check refuses; no library, no users.
func TestBareServer(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client()
	got := statuses(doctor.Run(ctx, c))
	for check, want := range map[string]doctor.Status{
		"persistence": doctor.Fail, "aof-replay": doctor.Pass, "maxmemory-policy": doctor.Pass, "function": doctor.Fail,
		"scripts": doctor.Warn, "models": doctor.Warn, "connection": doctor.Warn,
		"user rb-serve": doctor.Fail, "user rb-admin": doctor.Fail, "user default": doctor.Fail,
	} {
		if got[check] != want {
			t.Errorf("%s: %v, want %v", check, got[check], want)
		}
	}
	err := doctor.Check(ctx, c)
	if !errors.Is(err, doctor.ErrUnsafe) || !strings.Contains(err.Error(), "--allow-unsafe-redis") || !strings.Contains(err.Error(), "persistence") {
		t.Errorf("Check: %v, want ErrUnsafe naming persistence and the fix", err)
	}
}

// TestUnsafeDeployments breaks the shipped deployment one way at a time and
// checks that the right check, and only it, turns.
func TestUnsafeDeployments(t *testing.T) {
	ctx := context.Background()
	pw := redistest.TestPasswords
	for _, tc := range []struct {
		name   string
		args   []string
		op     [][]string // run as the operator
		check  string
		status doctor.Status
		also   string // a second check that fails
	}{
		{name: "default user without replay rights", op: [][]string{{"ACL", "SETUSER", "default", "resetkeys", "-@all"}}, check: "aof-replay", status: doctor.Fail,
			also: "user default"},
		{name: "eviction", args: []string{"--maxmemory-policy", "allkeys-lru"}, check: "maxmemory-policy", status: doctor.Fail},
		{name: "volatile eviction", args: []string{"--maxmemory-policy", "volatile-lru"}, check: "maxmemory-policy", status: doctor.Warn},
		{name: "no persistence", args: []string{"--appendonly", "no", "--save", ""}, check: "persistence", status: doctor.Fail},
		{name: "snapshots only", args: []string{"--appendonly", "no"}, check: "persistence", status: doctor.Warn},
		{name: "fsync no", args: []string{"--appendfsync", "no"}, check: "persistence", status: doctor.Warn},
		{name: "stale library", op: [][]string{{"FUNCTION", "LOAD", "REPLACE", "#!lua name=" + lua.LibraryName + "\nredis.register_function('" + lua.RecommendFunction + "', function() return 1 end)"}}, check: "function", status: doctor.Fail},
		{name: "serve may list keys", op: [][]string{{"ACL", "SETUSER", acl.ServeUser, "+keys"}}, check: "user rb-serve", status: doctor.Fail},
		{name: "trainer may not write", op: [][]string{{"ACL", "SETUSER", acl.TrainerUser, "-hset"}}, check: "user rb-trainer", status: doctor.Fail},
		{name: "default user may read", op: [][]string{{"ACL", "SETUSER", "default", "+hget"}}, check: "user default", status: doctor.Fail},
		{name: "damaged model", op: [][]string{{"HSET", store.RootKey("m"), "format", "99"}}, check: "model m", status: doctor.Fail},
		{name: "missing user", op: [][]string{{"ACL", "DELUSER", acl.TrainerUser}}, check: "user rb-trainer", status: doctor.Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartDeployed(t, conf, tc.args...)
			admin := srv.ClientAs(acl.AdminUser, pw.Admin)
			if err := store.Load(ctx, admin); err != nil {
				t.Fatal(err)
			}
			writeModel(t, srv.ClientAs(acl.TrainerUser, pw.Trainer))
			op := srv.OperatorClient()
			for _, args := range tc.op {
				if err := op.Do(ctx, op.B().Arbitrary(args...).Build()).Error(); err != nil {
					t.Fatal(err)
				}
			}
			r := doctor.Run(ctx, admin)
			for _, res := range r {
				want := doctor.Pass
				switch res.Check {
				case tc.check:
					want = tc.status
				case tc.also:
					want = doctor.Fail
				}
				if res.Status != want {
					t.Errorf("%v, want %v", res, want)
				}
			}
			if _, ok := statuses(r)[tc.check]; !ok {
				t.Errorf("no %s check", tc.check)
			}
			durability := map[string]bool{"version": true, "persistence": true, "maxmemory-policy": true, "aof-replay": true}
			err := doctor.Check(ctx, admin)
			if unsafe := durability[tc.check] && tc.status == doctor.Fail; unsafe != errors.Is(err, doctor.ErrUnsafe) {
				t.Errorf("Check: %v (durability failure: %v)", err, unsafe)
			}
		})
	}
}
