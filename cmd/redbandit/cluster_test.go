package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
)

// clusterModels returns two model names whose slots two different
// primaries of cl serve.
func clusterModels(t *testing.T, cl *redistest.Cluster) (string, string) {
	t.Helper()
	first, _ := cl.Primary(store.RootKey("m0"))
	for i := 1; ; i++ {
		name := fmt.Sprintf("m%d", i)
		if p, _ := cl.Primary(store.RootKey(name)); p != first {
			return "m0", name
		}
	}
}

// startSidecar runs `redbandit [global] sidecar --listen ADDR [flags]` in
// the background until the test ends and returns ADDR once it answers.
func startSidecar(t *testing.T, global []string, flags ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		app := newApp()
		app.Writer = io.Discard
		done <- app.RunContext(ctx, append(append([]string{"redbandit", "--log-level", "warn"}, global...),
			append([]string{"sidecar", "--listen", addr}, flags...)...))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sidecar: %v", err)
		}
	})
	for range 400 {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("sidecar on %s not ready", addr)
	return ""
}

// sidecarRecommend posts body to the sidecar and returns its items.
func sidecarRecommend(t *testing.T, addr, body string) []store.Item {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/recommend", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var got struct{ Items []store.Item }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil {
		t.Fatalf("sidecar answered %d %s", resp.StatusCode, b)
	}
	return got.Items
}

// TestClusterCommands runs every command of the binary against a Redis
// Cluster of three primaries with a replica each, as the shipped users
// (rb-admin, rb-trainer, rb-serve) through the cluster URL form, with two
// models whose slots different primaries serve: script load, bootstrap,
// recommend (EVALSHA and FCALL_RO), model, the trainer, the sidecar,
// loadtest and doctor. Answers are checked against hand computations.
func TestClusterCommands(t *testing.T) {
	cl := redistest.StartCluster(t, "../../redis.conf")
	pw := redistest.TestPasswords
	admin, trainerURL, serve := cl.URL(acl.AdminUser, pw.Admin), cl.URL(acl.TrainerUser, pw.Trainer), cl.URL(acl.ServeUser, pw.Serve)
	m1, m2 := clusterModels(t, cl)
	dir := t.TempDir()

	if out, err := run(t, "--redis", admin, "script", "load"); err != nil {
		t.Fatalf("script load: %v\n%s", err, out)
	}
	// m1 as in TestCommandLine; m2 the same events for products c and d.
	// For context (1,0) the first scores 0.5 + 0.1·√0.5, the second 0.1.
	pa, _ := mustArm(t, [][]float64{{1, 0}}, []float64{1})
	top := store.FormatFloat(linucb.Score([]float64{1, 0}, pa, 0.1))
	want := map[string]string{m1: "1\ta\t" + top + "\n2\tb\t0.1\n", m2: "1\tc\t" + top + "\n2\td\t0.1\n"}
	for m, ids := range map[string][2]string{m1: {"a", "b"}, m2: {"c", "d"}} {
		csv := filepath.Join(dir, m+".csv")
		if err := os.WriteFile(csv, []byte("event_id,f1,f2,product_id,response\n1,1,0,"+ids[0]+",1\n2,0,1,"+ids[1]+",0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := run(t, "--redis", trainerURL, "--model", m, "bootstrap", csv); err != nil || !strings.Contains(out, "folded 2 events") {
			t.Fatalf("bootstrap %s: %v\n%s", m, err, out)
		}
	}
	for _, m := range []string{m1, m2} {
		for _, extra := range [][]string{nil, {"--fcall"}} {
			out, err := run(t, append([]string{"--redis", serve, "--model", m, "recommend", "--context", "1,0"}, extra...)...)
			if err != nil || out != want[m] {
				t.Errorf("recommend %s %v: %v\ngot  %q\nwant %q", m, extra, err, out, want[m])
			}
		}
		if out, err := run(t, "--redis", serve, "--model", m, "model"); err != nil || !strings.Contains(out, "products  2") || !strings.Contains(out, "events    2") {
			t.Errorf("model %s: %v\n%s", m, err, out)
		}
	}

	// A cluster's client finds its replicas itself.
	if _, err := run(t, "--redis", serve, "--redis-replicas", cl.Nodes[3].URL(), "--model", m1, "recommend", "--context", "1,0"); !errors.Is(err, store.ErrClusterReplicas) {
		t.Errorf("--redis-replicas with a cluster: %v, want ErrClusterReplicas", err)
	}

	t.Run("sidecar", func(t *testing.T) {
		for _, flags := range [][]string{nil, {"--fcall"}} {
			addr := startSidecar(t, []string{"--redis", serve, "--model", m1}, flags...)
			for m, ids := range map[string][2]string{m1: {"a", "b"}, m2: {"c", "d"}} {
				got := sidecarRecommend(t, addr, `{"model": "`+m+`", "context": [1, 0]}`)
				if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] || store.FormatFloat(got[0].Score) != top || got[1].Score != 0.1 {
					t.Errorf("sidecar %v, model %s: %+v", flags, m, got)
				}
			}
		}
	})

	t.Run("trainer", func(t *testing.T) {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer kc.Close()
		brokers := strings.Join(kc.ListenAddrs(), ",")
		// 300 events for m2's product c, each in context (0,1), reward 1:
		// c ends with n 301, A = diag(2, 301), b = (1, 300).
		var buf bytes.Buffer
		buf.WriteString("event_id,f1,f2,product_id,response\n")
		for i := range 300 {
			fmt.Fprintf(&buf, "s%d,0,1,c,1\n", i)
		}
		stream := filepath.Join(dir, "stream.csv")
		if err := os.WriteFile(stream, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := run(t, "produce", "--brokers", brokers, "--csv", stream, "--partitions", "3"); err != nil {
			t.Fatalf("produce: %v\n%s", err, out)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			app := newApp()
			app.Writer = io.Discard
			done <- app.RunContext(ctx, []string{"redbandit", "--redis", trainerURL, "--model", m2, "--log-level", "warn",
				"trainer", "--brokers", brokers, "--flush-interval", "50ms"})
		}()
		client := cl.Client(acl.AdminUser, pw.Admin)
		deadline := time.Now().Add(30 * time.Second)
		for {
			m, err := store.ReadMeta(ctx, client, m2)
			if err == nil && m.Events == 302 {
				break
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("model %s after 30s: %+v %v (trainer: %v)", m2, m, err, <-done)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		arms, err := store.ReadArms(context.Background(), client, m2, 2, 1, []string{"c"})
		if err != nil {
			t.Fatal(err)
		}
		if a := arms[0].Arm; a.N() != 301 || a.A()[0] != 2 || a.A()[3] != 301 || a.B()[0] != 1 || a.B()[1] != 300 {
			t.Fatalf("arm c: n %d A %v b %v", a.N(), a.A(), a.B())
		}
	})

	t.Run("loadtest", func(t *testing.T) {
		op := cl.URL(redistest.Operator, redistest.OperatorPassword) // creates and deletes its synthetic model
		out, err := run(t, "--redis", op, "--model", "lt", "loadtest", "--products", "30", "-n", "50", "-c", "2", "-k", "3",
			"--compare", "ping,redis,fcall,client-side", "--json")
		if err != nil {
			t.Fatalf("loadtest: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("%d JSON lines, want 4:\n%s", len(lines), out)
		}
		for i, line := range lines {
			var obj struct {
				Requests, Errors int
			}
			if err := json.Unmarshal([]byte(line), &obj); err != nil || obj.Requests != 50 || obj.Errors != 0 {
				t.Errorf("line %d: %v %s", i+1, err, line)
			}
		}
	})

	t.Run("doctor", func(t *testing.T) {
		out, err := run(t, "--redis", admin, "doctor")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if err != nil || len(lines) != 13 {
			t.Fatalf("doctor: %v, %d lines:\n%s", err, len(lines), out)
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, "PASS  ") || (!strings.HasPrefix(l, "PASS  model ") && !strings.HasSuffix(l, "(all 6 nodes)")) {
				t.Errorf("not a PASS on all six nodes: %s", l)
			}
		}
		if !strings.Contains(out, "model "+m1) || !strings.Contains(out, "model "+m2) {
			t.Errorf("doctor does not list both models:\n%s", out)
		}
	})

	// Last, as it fails a primary over: with m1's primary stopped, the
	// one-shot readers give up after --timeout instead of waiting for the
	// failover (rueidis retries a read through it, for a minute and more).
	t.Run("timeout", func(t *testing.T) {
		primary, _ := cl.Primary(store.RootKey(m1))
		primary.Pause()
		defer func() {
			primary.Resume()
			cl.WaitHealthy()
		}()
		// All at once, each with half a second: the replica cannot take
		// over before the node timeout (1 s) and its election delay.
		calls := [][]string{
			{"recommend", "--context", "1,0", "--timeout", "500ms"},
			{"recommend", "--context", "1,0", "--fcall", "--timeout", "500ms"},
			{"model", "--timeout", "500ms"},
		}
		start := time.Now()
		type result struct {
			args []string
			err  error
		}
		done := make(chan result, len(calls))
		for _, args := range calls {
			go func() {
				_, err := run(t, append([]string{"--redis", serve, "--model", m1}, args...)...)
				done <- result{args, err}
			}()
		}
		for range calls {
			select {
			case r := <-done:
				if took := time.Since(start); !errors.Is(r.err, context.DeadlineExceeded) || took > 4*time.Second {
					t.Errorf("%v: %v after %v, want a deadline error within 4s", r.args, r.err, took.Round(time.Millisecond))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no answer after 20s")
			}
		}
	})
}
