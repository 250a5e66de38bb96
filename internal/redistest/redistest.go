// Package redistest starts real redis-server processes for tests, each on a
// free loopback port in its own temporary directory, the way httptest starts
// HTTP servers. There is no mock: tests talk to the real server.
package redistest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Server is one redis-server process owned by a test. Its methods may be
// called from several goroutines (a test may kill the server from a hook).
type Server struct {
	Addr string // host:port on 127.0.0.1
	Dir  string // working directory (AOF and RDB files live here)

	t    testing.TB
	conf string // config file given to redis-server first, if any
	args []string

	mu   sync.Mutex // guards cmd and done, and serialises Kill, Stop and Restart
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server with the given extra arguments (e.g.
// "--appendonly", "yes") and stops it when the test ends. Persistence is off
// unless the arguments turn it on. The test fails if redis-server is not
// installed: `make test` installs it.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartConfig(t, "", args...)
}

// StartConfig is Start with a redis.conf file, read first; the port, bind
// address, directory and log file are overridden for the test, and so are
// persistence settings unless args set them again.
func StartConfig(t testing.TB, conf string, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found in PATH (run `make test`, which installs it): %v", err)
	}
	s := &Server{Dir: t.TempDir(), t: t, conf: conf, args: args}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	s.mu.Lock()
	s.start()
	s.mu.Unlock()
	t.Cleanup(s.Stop)
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start starts redis-server; s.mu is held.
func (s *Server) start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args, []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}...)
	args = append(args, s.args...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			_, _ = conn.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := conn.Read(buf)
			conn.Close()
			// With the default user off (an ACL file), PING answers NOAUTH:
			// the server is up all the same.
			if reply := string(buf[:n]); reply == "+PONG\r\n" || strings.HasPrefix(reply, "-NOAUTH") {
				return
			}
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			s.t.Fatalf("redis-server exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not ready after 10s", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a rueidis client for the server, closed when the test ends.
func (s *Server) Client() rueidis.Client {
	s.t.Helper()
	return s.ClientAs("", "")
}

// ClientAs returns a rueidis client authenticated as an ACL user.
func (s *Server) ClientAs(user, password string) rueidis.Client {
	s.t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true,
		Username: user, Password: password})
	if err != nil {
		s.t.Fatalf("connect to redis on %s: %v", s.Addr, err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signal(syscall.SIGKILL)
}

// Stop stops the server with SIGTERM (it writes its AOF/RDB if enabled).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signal(syscall.SIGTERM)
}

// signal stops the server with sig; s.mu is held.
func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart starts the server again on the same port and directory, after
// Stop or Kill (calling it on a running server stops it first).
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signal(syscall.SIGTERM)
	s.start()
}
