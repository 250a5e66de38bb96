package redistest

import (
	"context"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Cluster is a Redis Cluster of three primaries, each with one replica,
// deployed as StartDeployed deploys one server (the users file and conf),
// with cluster-node-timeout 1000 ms so that a killed primary's replica is
// promoted within a few seconds.
type Cluster struct {
	Nodes []*Server // every node; which are primaries changes with failovers

	t testing.TB
}

// StartCluster starts six deployed redis-server processes in cluster mode
// on free loopback ports (the cluster bus on a port of its own), joins them
// with `redis-cli --cluster create --cluster-replicas 1` and waits until
// every node sees the cluster ok and every replica is in sync. They stop
// when the test ends. Replicas authenticate to their primary as Operator.
func StartCluster(t testing.TB, conf string) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not found in PATH: %v", err)
	}
	c := &Cluster{t: t}
	for range 6 {
		c.Nodes = append(c.Nodes, StartDeployed(t, conf,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(freePort(t)), "--cluster-node-timeout", "1000",
			"--masteruser", Operator, "--masterauth", OperatorPassword,
			"--repl-diskless-sync-delay", "0")) // Redis's 5 s wait for more replicas
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes", "--user", Operator, "--pass", OperatorPassword)
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	c.warm()
	return c
}

// warm writes a key to each primary and waits until CLUSTER SLOTS lists
// every replica: Redis leaves out a replica that has replicated nothing yet,
// so clients would not see it (and the nodes a client reaches would change
// with the first writes).
func (c *Cluster) warm() {
	c.t.Helper()
	cl := c.Client(Operator, OperatorPassword)
	ctx := context.Background()
	for lo := 0; lo < 16384; lo += 16384 / 3 {
		for i := 0; ; i++ {
			key := "redistest:warm:{" + strconv.Itoa(i) + "}"
			if s := Slot(key); s >= lo && s < lo+16384/3 {
				if err := cl.Do(ctx, cl.B().Set().Key(key).Value("1").Build()).Error(); err != nil {
					c.t.Fatalf("warm the cluster: %v", err)
				}
				break
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.Nodes[0].cli("CLUSTER", "SLOTS")
		if err == nil && strings.Count(out, "127.0.0.1") == 6 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("CLUSTER SLOTS does not list the six nodes after 30s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL returns the cluster's URL for user (every node's address: the first
// as the host, the others as addr parameters, unescaped as the README
// writes them; rueidis.ParseURL reads the form); "" connects without a
// user.
func (c *Cluster) URL(user, password string) string {
	u := url.URL{Scheme: "redis", Host: c.Nodes[0].Addr}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	var q []string
	for _, n := range c.Nodes[1:] {
		q = append(q, "addr="+n.Addr)
	}
	u.RawQuery = strings.Join(q, "&")
	return u.String()
}

// Client returns a cluster client authenticated as user, closed when the
// test ends.
func (c *Cluster) Client(user, password string) rueidis.Client {
	c.t.Helper()
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr)
	}
	cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true,
		Username: user, Password: password})
	if err != nil {
		c.t.Fatalf("connect to the cluster: %v", err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// node is one line of CLUSTER NODES.
type node struct {
	addr, id, primaryID string
	primary, failed     bool
	slots               [][2]int
}

// topology reads CLUSTER NODES from the first node that answers.
func (c *Cluster) topology() ([]node, error) {
	var lastErr error
	for _, s := range c.Nodes {
		out, err := s.cli("CLUSTER", "NODES")
		if err != nil {
			lastErr = err
			continue
		}
		var nodes []node
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			n := node{id: f[0], addr: strings.Split(f[1], "@")[0], primaryID: f[3],
				primary: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil {
					n.slots = append(n.slots, [2]int{a, b})
				}
			}
			nodes = append(nodes, n)
		}
		return nodes, nil
	}
	return nil, lastErr
}

// cli runs redis-cli against s as Operator.
func (s *Server) cli(args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(s.Addr)
	all := append([]string{"-h", host, "-p", port, "--user", Operator, "--pass", OperatorPassword, "--no-auth-warning"}, args...)
	out, err := exec.Command("redis-cli", all...).CombinedOutput()
	return string(out), err
}

func (c *Cluster) server(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	c.t.Fatalf("no node %s in the cluster", addr)
	return nil
}

// Slot returns the hash slot of key (CRC16 of its hash tag, as Redis
// computes it).
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM, the cluster's key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Primary returns the node serving key's slot, and its replicas.
func (c *Cluster) Primary(key string) (primary *Server, replicas []*Server) {
	c.t.Helper()
	nodes, err := c.topology()
	if err != nil {
		c.t.Fatalf("CLUSTER NODES: %v", err)
	}
	slot := Slot(key)
	for _, n := range nodes {
		if !n.primary || n.failed {
			continue
		}
		for _, r := range n.slots {
			if r[0] <= slot && slot <= r[1] {
				for _, m := range nodes {
					if m.primaryID == n.id && !m.failed {
						replicas = append(replicas, c.server(m.addr))
					}
				}
				return c.server(n.addr), replicas
			}
		}
	}
	c.t.Fatalf("no primary serves slot %d", slot)
	return nil, nil
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// every replica's link to its primary is up and its offset equals the
// primary's (nothing in flight).
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := c.healthy()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster is not healthy after 30s: %s", why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy() (bool, string) {
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		out, err := s.cli("CLUSTER", "INFO")
		if err != nil || !strings.Contains(out, "cluster_state:ok") {
			return false, s.Addr + ": " + out
		}
		out, err = s.cli("INFO", "replication")
		if err != nil {
			return false, s.Addr + ": " + out
		}
		if strings.Contains(out, "role:slave") && !strings.Contains(out, "master_link_status:up") {
			return false, s.Addr + " replica link down"
		}
		if strings.Contains(out, "role:master") {
			// Each running replica's offset must equal the primary's.
			off := field(out, "master_repl_offset")
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") && !strings.Contains(line, "offset="+off+",") {
					return false, s.Addr + " replica behind: " + line
				}
			}
		}
	}
	return true, ""
}

func field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// WaitPromoted waits until a node other than old serves key's slot as its
// primary, and returns it.
func (c *Cluster) WaitPromoted(ctx context.Context, key string, old *Server) *Server {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, err := c.topology()
		if err == nil {
			slot := Slot(key)
			for _, n := range nodes {
				if !n.primary || n.failed || n.addr == old.Addr {
					continue
				}
				for _, r := range n.slots {
					if r[0] <= slot && slot <= r[1] {
						return c.server(n.addr)
					}
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.t.Fatalf("no replica promoted for slot of %s within 30s (%v)", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
