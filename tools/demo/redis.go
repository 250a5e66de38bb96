// The demo's own redis-server and the environment line it hands a newcomer.

package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
	"github.com/redbandit/redbandit/tools/scenario"
)

// EnvLine returns the shell line that points the README's examples at a
// demo run: an export of REDBANDIT_REDIS (the serving user's URL, with its
// password), REDBANDIT_MODEL (the demo's model) and REDBANDIT_SIDECAR_URL.
func EnvLine(redisAddr, servePassword, sidecarURL string) string {
	u := url.URL{Scheme: "redis", User: url.UserPassword(acl.ServeUser, servePassword), Host: redisAddr, Path: "/0"}
	return fmt.Sprintf("export REDBANDIT_REDIS=%s REDBANDIT_MODEL=%s REDBANDIT_SIDECAR_URL=%s", u.String(), model, sidecarURL)
}

// writeEnv writes the line to path, readable by its owner only (the URL
// holds a password).
func writeEnv(path, line string) error {
	text := "# redbandit demo: the serving user's Redis URL, the model and the sidecar (removed when the demo stops)\n" + line + "\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// registerCatalogue writes a prior arm (A = λI, b = 0) for every product
// the model does not have yet.
func registerCatalogue(ctx context.Context, c rueidis.Client, cat []scenario.Product) error {
	return registerProducts(ctx, c, cat, nil)
}

// registerProducts writes an arm for every product of cat the model does
// not have yet: prior's state for it, or A = λI, b = 0 if prior is nil.
func registerProducts(ctx context.Context, c rueidis.Client, cat []scenario.Product, prior func(scenario.Product) (*linucb.Arm, error)) error {
	sp := spec.Reference()
	ids := make([]string, len(cat))
	for i, p := range cat {
		ids[i] = p.ID
	}
	stored, err := store.ReadArms(ctx, c, model, sp.Dim(), linucb.DefaultLambda, ids)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	w := store.Write{Model: model, Features: sp.Names(), Groups: sp.Groups(), Lambda: linucb.DefaultLambda}
	for i, a := range stored {
		if a.Version != 0 {
			continue
		}
		if prior != nil {
			if a.Arm, err = prior(cat[i]); err != nil {
				return err
			}
		}
		p, err := a.Arm.Solve()
		if err != nil {
			return fmt.Errorf("demo: prior arm %s: %w", a.ID, err)
		}
		w.Arms = append(w.Arms, store.ArmWrite{ID: a.ID, Arm: a.Arm, Params: p})
	}
	if _, err := w.Apply(ctx, c); err != nil {
		return fmt.Errorf("demo: register the catalogue: %w", err)
	}
	return nil
}

func secret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func emptyLog(path string) error {
	header := "event_id"
	for _, f := range spec.Reference().Names() {
		header += "," + f
	}
	return os.WriteFile(path, []byte(header+",product_id,response\n"), 0o644)
}

// redisProc is the demo's redis-server.
type redisProc struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts redis-server on a free loopback port in dir, with conf
// (or flags equivalent to the project's redis.conf) and an ACL file of the
// three users.
func startRedis(ctx context.Context, dir, conf string, pw acl.Passwords) (*redisProc, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("demo: redis-server is not installed (make demo installs it): %w", err)
	}
	aclPath := filepath.Join(dir, "users.acl")
	f, err := os.OpenFile(aclPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := acl.Write(f, pw); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var args []string
	if conf != "" {
		args = append(args, conf)
	} else {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")
	}
	args = append(args, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--aclfile", aclPath,
		"--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: start redis-server: %w", err)
	}
	p := &redisProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("demo: redis-server exited:\n%s", log)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("demo: redis-server did not listen within 10s")
		}
	}
}

func (p *redisProc) client(user, password string) (rueidis.Client, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.addr}, Username: user, Password: password, DisableCache: true})
	if err != nil {
		return nil, fmt.Errorf("demo: connect to redis as %s: %w", user, err)
	}
	return c, nil
}

func (p *redisProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
