package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
)

// calls returns how many times s ran each command, from INFO commandstats.
func calls(t *testing.T, s *redistest.Server) map[string]int {
	t.Helper()
	c := s.OperatorClient()
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatalf("INFO commandstats on %s: %v", s.Addr, err)
	}
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`cmdstat_([a-z_|]+):calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// TestReplicas serves a model from two replicas of the shipped deployment
// (--redis-replicas): `script load` loads them too, `recommend` and the
// sidecar (EVALSHA_RO and FCALL_RO) answer what the primary answers (and
// the hand computation) while the primary is paused (SIGSTOP), and INFO
// commandstats shows each replica ran the scoring and the primary none.
// A paused replica fails the one read sent to it (the sidecar's
// --timeout) and then sits out; with a replica killed the sidecar keeps
// answering: reads it would have taken go to the primary.
func TestReplicas(t *testing.T) {
	const conf = "../../redis.conf"
	pw := redistest.TestPasswords
	primary := redistest.StartDeployed(t, conf)
	r1 := redistest.StartDeployedReplica(t, conf, primary)
	r2 := redistest.StartDeployedReplica(t, conf, primary)
	url := func(s *redistest.Server, user, pass string) string {
		return "redis://" + user + ":" + pass + "@" + s.Addr + "/0"
	}
	replicas := func(user, pass string) string { return url(r1, user, pass) + "," + url(r2, user, pass) }
	csv := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(csv, []byte("event_id,f1,f2,product_id,response\n1,1,0,a,1\n2,0,1,b,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "--redis", url(primary, acl.TrainerUser, pw.Trainer), "bootstrap", csv); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	if out, err := run(t, "--redis", url(primary, acl.AdminUser, pw.Admin), "--redis-replicas", replicas(acl.AdminUser, pw.Admin), "script", "load"); err != nil {
		t.Fatalf("script load: %v\n%s", err, out)
	}
	redistest.WaitReplicated(t, primary, r1, r2)
	for _, s := range []*redistest.Server{primary, r1, r2} {
		if got := calls(t, s)["script|load"]; got != 2 {
			t.Errorf("%s ran SCRIPT LOAD %d times, want 2 (recommend.lua and write.lua)", s.Addr, got)
		}
	}

	pa, _ := mustArm(t, [][]float64{{1, 0}}, []float64{1})
	want := "1\ta\t" + store.FormatFloat(linucb.Score([]float64{1, 0}, pa, 0.1)) + "\n2\tb\t0.1\n"
	serve := []string{"--redis", url(primary, acl.ServeUser, pw.Serve)}
	withReplicas := append(serve, "--redis-replicas", replicas(acl.ServeUser, pw.Serve))
	for _, g := range [][]string{serve, withReplicas} {
		if out, err := run(t, append(g, "recommend", "--context", "1,0")...); err != nil || out != want {
			t.Fatalf("recommend %v: %v\ngot  %q\nwant %q", g, err, out, want)
		}
	}

	for _, tc := range []struct {
		flags []string
		cmd   string
	}{{nil, "evalsha_ro"}, {[]string{"--fcall"}, "fcall_ro"}} {
		addr := startSidecar(t, withReplicas, tc.flags...)
		before := []map[string]int{calls(t, primary), calls(t, r1), calls(t, r2)}
		primary.Pause()
		const n = 20
		for range n {
			got := sidecarRecommend(t, addr, `{"context": [1, 0]}`)
			if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" || "1\ta\t"+store.FormatFloat(got[0].Score)+"\n2\tb\t"+store.FormatFloat(got[1].Score)+"\n" != want {
				t.Fatalf("sidecar %v with the primary paused: %+v, want %q", tc.flags, got, want)
			}
		}
		primary.Resume()
		after := []map[string]int{calls(t, primary), calls(t, r1), calls(t, r2)}
		d := []int{after[0][tc.cmd] - before[0][tc.cmd], after[1][tc.cmd] - before[1][tc.cmd], after[2][tc.cmd] - before[2][tc.cmd]}
		t.Logf("sidecar %v: %s calls on primary, replica 1, replica 2: %v", tc.flags, tc.cmd, d)
		// In turn: n/2 each, give or take the dashboard's sampling reads
		// (every second), which take turns too.
		if d[0] != 0 || d[1] < n/4 || d[2] < n/4 || d[1]+d[2] != n {
			t.Errorf("sidecar %v: %s calls on primary, replica 1, replica 2: %v, want 0 and about %d each", tc.flags, tc.cmd, d, n/2)
		}
	}

	// A replica hangs: the read sent to it times out, and it sits out
	// while the other replica serves.
	addr := startSidecar(t, withReplicas, "--timeout", "300ms")
	r2.Pause()
	failures := 0
	for range 10 {
		resp, err := http.Post("http://"+addr+"/v1/recommend", "application/json", strings.NewReader(`{"context": [1, 0]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failures++
		}
	}
	r2.Resume()
	if failures > 1 { // 0 if a sampling read met the paused replica first
		t.Errorf("with a replica paused, %d of 10 requests failed, want at most 1 (then it rests)", failures)
	}
	time.Sleep(1100 * time.Millisecond) // its rest is over

	// A replica dies: its share of the reads goes to the primary.
	r1.Kill()
	reads := func() int { c := calls(t, primary); return c["evalsha_ro"] + c["hmget"] }
	before := reads()
	for range 20 {
		if got := sidecarRecommend(t, addr, `{"context": [1, 0]}`); len(got) != 2 || got[0].ID != "a" {
			t.Fatalf("sidecar with a replica killed: %+v", got)
		}
	}
	// The first read for the dead replica (a request, or a sampling read)
	// goes to the primary, and the replica rests.
	if d := reads() - before; d < 1 || d > 12 {
		t.Errorf("with a replica killed the primary served %d reads, want 1 to about 10 (the dead replica's turns, until it rests)", d)
	}
}
