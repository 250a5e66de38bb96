package redistest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/ops/acl"
)

// Test passwords of a Deployed server's users.
var TestPasswords = acl.Passwords{Serve: "serve-pw", Trainer: "trainer-pw", Admin: "admin-pw"}

// Operator is an extra user of a Deployed server with every right, for what
// an operator does by hand (BGSAVE, BGREWRITEAOF, REPLICAOF, ACL LIST); the
// code under test never connects as it.
const (
	Operator         = "rb-test-operator"
	OperatorPassword = "operator-pw"
)

// StartDeployed starts redis-server the way a user deploys it: with the
// config file conf (the repository's redis.conf) and, as its aclfile, the
// users file `redbandit acl` writes (acl.Write with TestPasswords) plus the
// Operator line. Persistence is conf's: AOF on, everysec, and Redis's
// default snapshot points (redis.conf sets none). args come last.
func StartDeployed(t testing.TB, conf string, args ...string) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.acl")
	var b strings.Builder
	if err := acl.Write(&b, TestPasswords); err != nil {
		t.Fatal(err)
	}
	b.WriteString("user " + Operator + " on >" + OperatorPassword + " ~* &* +@all\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{"--aclfile", path, "--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "3600 1 300 100 60 10000"}, args...)
	return StartConfig(t, conf, all...)
}

// OperatorClient returns a client authenticated as Operator.
func (s *Server) OperatorClient() rueidis.Client {
	s.t.Helper()
	return s.ClientAs(Operator, OperatorPassword)
}

// WaitPersisted waits until no BGSAVE or AOF rewrite is running or
// scheduled (c must be allowed INFO).
func WaitPersisted(ctx context.Context, t testing.TB, c rueidis.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.Do(ctx, c.B().Info().Section("persistence").Build()).ToString()
		if err != nil {
			t.Fatalf("INFO persistence: %v", err)
		}
		busy := false
		for _, f := range []string{"rdb_bgsave_in_progress:1", "aof_rewrite_in_progress:1", "aof_rewrite_scheduled:1"} {
			busy = busy || strings.Contains(info, f)
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("persistence still busy after 30s:\n%s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pause stops the server with SIGSTOP: it keeps its connections but
// answers nothing (a replica paused this way misses the primary's writes).
func (s *Server) Pause() { s.sendSignal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.sendSignal(syscall.SIGCONT) }

func (s *Server) sendSignal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// StartDeployedReplica starts a deployed server (StartDeployed) that
// replicates primary, authenticating as Operator, and waits until its link
// to the primary is up.
func StartDeployedReplica(t testing.TB, conf string, primary *Server, args ...string) *Server {
	t.Helper()
	// Redis waits 5 s by default before a diskless full sync, for more
	// replicas to join it.
	if out, err := primary.cli("CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		t.Fatalf("CONFIG SET on %s: %v\n%s", primary.Addr, err, out)
	}
	host, port, _ := net.SplitHostPort(primary.Addr)
	all := append([]string{"--replicaof", host, port, "--masteruser", Operator, "--masterauth", OperatorPassword}, args...)
	r := StartDeployed(t, conf, all...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := r.cli("INFO", "replication")
		if err == nil && strings.Contains(out, "master_link_status:up") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not linked to %s after 30s:\n%s", r.Addr, primary.Addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitReplicated waits until every replica has the primary's replication
// offset: it holds every write made before the call.
func WaitReplicated(t testing.TB, primary *Server, replicas ...*Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := primary.cli("INFO", "replication")
		want := field(p, "master_repl_offset")
		done := err == nil && want != ""
		for _, r := range replicas {
			out, err := r.cli("INFO", "replication")
			done = done && err == nil && field(out, "slave_repl_offset") == want
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not at the primary's offset %s after 30s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
