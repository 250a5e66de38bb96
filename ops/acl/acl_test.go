package acl_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
)

// TestLeastPrivilege starts Redis with the project's redis.conf and the
// generated ACL file, and checks what each role may and may not do, against
// the real server.
func TestLeastPrivilege(t *testing.T) {
	pw := acl.Passwords{Serve: "s3rve", Trainer: "tr4in", Admin: "adm1n"}
	path := filepath.Join(t.TempDir(), "users.acl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := acl.Write(f, pw); err != nil {
		t.Fatal(err)
	}
	f.Close()
	body, _ := os.ReadFile(path)
	for _, secret := range []string{pw.Serve, pw.Trainer, pw.Admin} {
		if strings.Contains(string(body), secret) {
			t.Fatalf("the ACL file holds a password in clear")
		}
	}
	srv := redistest.StartConfig(t, "../../redis.conf", "--aclfile", path, "--appendonly", "yes")
	ctx := context.Background()
	admin := srv.ClientAs(acl.AdminUser, pw.Admin)
	for param, want := range map[string]string{
		"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction", "busy-reply-threshold": "5000",
	} {
		got, err := admin.Do(ctx, admin.B().ConfigGet().Parameter(param).Build()).AsStrMap()
		if err != nil || got[param] != want {
			t.Errorf("redis.conf %s = %v (%v), want %s", param, got, err, want)
		}
	}
	trainer := srv.ClientAs(acl.TrainerUser, pw.Trainer)
	serve := srv.ClientAs(acl.ServeUser, pw.Serve)

	// The trainer writes a model, the admin loads the scripts, the serving
	// user scores it both ways.
	arm := linucb.NewArm(2, 1)
	if err := arm.Update([]float64{1, 0}, 1); err != nil {
		t.Fatal(err)
	}
	p, err := arm.Solve()
	if err != nil {
		t.Fatal(err)
	}
	w := store.Write{Model: "m", Features: []string{"a", "b"}, Lambda: 1, Arms: []store.ArmWrite{{ID: "x", Arm: arm, Params: p}}}
	if _, err := w.Apply(ctx, trainer); err != nil {
		t.Fatalf("trainer write: %v", err)
	}
	if err := store.Load(ctx, admin); err != nil {
		t.Fatalf("admin load: %v", err)
	}
	q := store.Query{K: 1, Alpha: 0.1, Context: []float64{1, 0}}
	for name, recommend := range map[string]func(context.Context, rueidis.Client, string, store.Query) ([]store.Item, error){
		"EVALSHA_RO": store.Recommend, "FCALL_RO": store.RecommendFCall,
	} {
		items, err := recommend(ctx, serve, "m", q)
		if err != nil || len(items) != 1 || items[0].ID != "x" {
			t.Fatalf("serve %s: %v %v", name, items, err)
		}
	}
	if _, err := store.ReadArms(ctx, trainer, "m", 2, 1, []string{"x"}); err != nil {
		t.Fatalf("trainer reads its arms: %v", err)
	}

	denied := func(who string, c rueidis.Client, args ...string) {
		t.Helper()
		err := c.Do(ctx, c.B().Arbitrary(args...).Build()).Error()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s %v: got %v, want NOPERM", who, args, err)
		}
	}
	root := store.RootKey("m")
	for _, args := range [][]string{
		{"FLUSHALL"}, {"FLUSHDB"}, {"CONFIG", "SET", "maxmemory", "1"}, {"CONFIG", "GET", "*"},
		{"KEYS", "*"}, {"EVAL", "return 1", "0"}, {"HSET", root, "f", "v"}, {"DEL", root},
		{"SCRIPT", "LOAD", "return 1"}, {"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}, {"SHUTDOWN"},
		{"GET", "other-key"}, {"CLIENT", "KILL", "ID", "1"}, {"ACL", "LIST"},
	} {
		denied("serve", serve, args...)
	}
	// The write script is refused to the serving user: scripts run with the
	// caller's permissions.
	if _, err := w.Apply(ctx, serve); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("serve runs the write script: %v, want NOPERM", err)
	}
	for _, args := range [][]string{
		{"FLUSHALL"}, {"CONFIG", "SET", "maxmemory", "1"}, {"KEYS", "*"}, {"FUNCTION", "LOAD", "REPLACE", lua.Library()},
		{"SHUTDOWN"}, {"HSET", "not-a-model", "f", "v"}, {"ACL", "LIST"},
	} {
		denied("trainer", trainer, args...)
	}
	for _, args := range [][]string{
		{"FLUSHALL"}, {"CONFIG", "SET", "maxmemory", "1"}, {"SHUTDOWN"}, {"EVAL", "return 1", "0"}, {"ACL", "SETUSER", "x", "on"},
	} {
		denied("admin", admin, args...)
	}
	// The default user is off: a client without credentials cannot even
	// connect.
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true}); err == nil {
		c.Close()
		t.Errorf("a client without credentials connected")
	}
}
