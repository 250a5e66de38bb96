package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/ops/acl"
)

// TestShippedRestart follows the README's production steps with the binary
// itself: `redbandit acl` writes the users file, redis-server runs the
// repository's redis.conf, rb-admin loads the scripts, rb-trainer
// bootstraps the reference history, rb-serve gets a top 5; then
// redis-server is SIGKILLed and started again: the same top 5 comes back,
// through EVALSHA_RO (the script cache is empty: the function answers) and
// FCALL_RO, and doctor passes every check once the admin reloaded the
// scripts.
func TestShippedRestart(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.acl")
	if out, err := run(t, "acl", "--out", users, "--serve-password", "s", "--trainer-password", "t", "--admin-password", "a"); err != nil {
		t.Fatalf("acl: %v\n%s", err, out)
	}
	srv := redistest.StartConfig(t, "../../redis.conf", "--aclfile", users, "--appendonly", "yes", "--save", "3600 1 300 100 60 10000")
	as := func(user, pass string, args ...string) string {
		t.Helper()
		out, err := run(t, append([]string{"--redis", "redis://" + user + ":" + pass + "@" + srv.Addr + "/0"}, args...)...)
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", user, args, err, out)
		}
		return out
	}
	if _, err := run(t, "datagen", "--out", filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	as(acl.AdminUser, "a", "script", "load")
	as(acl.TrainerUser, "t", "bootstrap", "--spec", "reference", filepath.Join(dir, "data", "training_log.csv"))
	const x = "0.3,0.5,0.7,1,0,0,0,1,0,0,1,0,0,1,0"
	top := as(acl.ServeUser, "s", "recommend", "--context", x)
	if strings.Count(top, "\n") != 5 {
		t.Fatalf("top 5 before the restart:\n%s", top)
	}
	time.Sleep(1100 * time.Millisecond) // appendfsync everysec
	srv.Kill()
	srv.Restart()
	if log, _ := os.ReadFile(filepath.Join(srv.Dir, "redis.log")); strings.Contains(string(log), "CRITICAL") {
		t.Errorf("the AOF replay sent errors:\n%s", log)
	}
	for _, flags := range [][]string{nil, {"--fcall"}} {
		if got := as(acl.ServeUser, "s", append(append([]string{"recommend"}, flags...), "--context", x)...); got != top {
			t.Errorf("recommend %v after the restart:\n%s\nwant\n%s", flags, got, top)
		}
	}
	as(acl.AdminUser, "a", "script", "load")
	if out := as(acl.AdminUser, "a", "doctor"); strings.Contains(out, "WARN") || strings.Contains(out, "FAIL") {
		t.Errorf("doctor after the restart:\n%s", out)
	}
}
