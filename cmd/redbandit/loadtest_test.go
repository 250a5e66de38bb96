package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
)

// TestLoadtestCommand runs `redbandit loadtest` in-process against a real
// redis-server on a synthetic model, for every target, and checks the JSON
// lines and the flag validation.
func TestLoadtestCommand(t *testing.T) {
	srv := redistest.Start(t)
	g := []string{"--redis", srv.URL(), "--model", "cli"}
	out, err := run(t, append(g, "loadtest", "--products", "30", "-n", "50", "-c", "2", "-P", "2", "-k", "3",
		"--compare", "ping,redis,fcall,client-side", "--json")...)
	if err != nil {
		t.Fatalf("loadtest: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d JSON lines, want 4:\n%s", len(lines), out)
	}
	for i, want := range []string{"ping", "redis", "fcall", "client-side"} {
		var obj struct {
			Target   string  `json:"target"`
			Requests int     `json:"requests"`
			Errors   int     `json:"errors"`
			RPS      float64 `json:"rps"`
			Clients  int     `json:"clients"`
			Pipeline int     `json:"pipeline"`
			K        int     `json:"k"`
			Latency  struct {
				P50, P99, Max float64
			} `json:"latency_ms"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &obj); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if obj.Target != want || obj.Requests != 50 || obj.Errors != 0 || obj.RPS <= 0 || obj.Clients != 2 ||
			obj.Pipeline != 2 || obj.K != 3 || !(0 < obj.Latency.P50 && obj.Latency.P50 <= obj.Latency.P99 && obj.Latency.P99 <= obj.Latency.Max) {
			t.Errorf("line %d: %s", i+1, lines[i])
		}
	}
	if out, err = run(t, append(g, "loadtest", "--products", "10", "-n", "20", "--target", "fcall")...); err != nil ||
		!strings.Contains(out, "====== fcall: FCALL_RO rb_recommend") || !strings.Contains(out, "20 requests in") {
		t.Fatalf("text loadtest: %v\n%s", err, out)
	}
	for args, want := range map[string]string{
		"--target http -P 2":                     "no pipeline",
		"--target redis --compare ping,redis":    "--target or --compare",
		"--json --csv":                           "--json or --csv",
		"--compare ping,nosuch":                  `unknown target "nosuch"`,
		"--products 10 --candidates 11":          "candidates 11 > products 10",
		"-c 0":                                   "--clients 0 < 1",
		"-n 10 --duration 1s":                    "not both",
		"--products 10 --dim 4 --nonzero 5":      "nonzero 5",
		"--products 10 -n 5 --target redis -k 0": "--k 0 < 1",
	} {
		if _, err := run(t, append(g, append([]string{"loadtest"}, strings.Fields(args)...)...)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("loadtest %s: %v, want an error containing %q", args, err, want)
		}
	}
}
