package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
	"github.com/redbandit/redbandit/ops/doctor"
)

// TestDurabilityGate: bootstrap and trainer refuse a Redis that persists
// nothing, naming the fix, and write nothing; --allow-unsafe-redis lets
// bootstrap through.
func TestDurabilityGate(t *testing.T) {
	srv := redistest.Start(t)
	csv := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(csv, []byte("event_id,f1,f2,product_id,response\n1,1,0,a,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis", srv.URL(), "--model", "gate"}
	for _, args := range [][]string{{"bootstrap", csv}, {"trainer", "--brokers", "127.0.0.1:1"}} {
		_, err := run(t, append(g, args...)...)
		if !errors.Is(err, doctor.ErrUnsafe) || !strings.Contains(err.Error(), "--allow-unsafe-redis") || !strings.Contains(err.Error(), "redis.conf") {
			t.Errorf("%s on a bare Redis: %v, want a refusal naming the fix", args[0], err)
		}
	}
	if _, err := store.ReadMeta(context.Background(), srv.Client(), "gate"); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("a refused bootstrap wrote the model: %v", err)
	}
	if out, err := run(t, append(g, "bootstrap", "--allow-unsafe-redis", csv)...); err != nil || !strings.Contains(out, "folded 1 events") {
		t.Fatalf("bootstrap --allow-unsafe-redis: %v\n%s", err, out)
	}
}

// TestDoctorCommand: on the shipped deployment, after `script load` and a
// bootstrap, every line is a PASS and the exit status is 0; on a bare Redis
// the command fails and prints the FAIL lines.
func TestDoctorCommand(t *testing.T) {
	srv := redistest.StartDeployed(t, "../../redis.conf")
	pw := redistest.TestPasswords
	url := func(user, pass string) string { return "redis://" + user + ":" + pass + "@" + srv.Addr + "/0" }
	csv := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(csv, []byte("event_id,f1,f2,product_id,response\n1,1,0,a,1\n2,0,1,b,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "--redis", url(acl.AdminUser, pw.Admin), "script", "load"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "--redis", url(acl.TrainerUser, pw.Trainer), "bootstrap", csv); err != nil {
		t.Fatalf("bootstrap as rb-trainer on the shipped deployment: %v", err)
	}
	out, err := run(t, "--redis", url(acl.AdminUser, pw.Admin), "doctor")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 12 {
		t.Fatalf("doctor: %v, %d lines:\n%s", err, len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "PASS  ") {
			t.Errorf("not a PASS: %s", l)
		}
	}
	if !strings.Contains(out, "model default") || !strings.Contains(out, "2 products, 2 events") {
		t.Errorf("no line for the bootstrapped model:\n%s", out)
	}

	bare := redistest.Start(t)
	out, err = run(t, "--redis", bare.URL(), "doctor")
	if err == nil || !strings.Contains(out, "FAIL  persistence") {
		t.Errorf("doctor on a bare Redis: %v\n%s", err, out)
	}
}
