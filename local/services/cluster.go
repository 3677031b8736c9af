package services

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a private Redis Cluster of three masters, each with one replica, from Debian's
// redis-server, formed with `redis-cli --cluster create` as an operator would.
type RedisCluster struct {
	dir   string
	owned bool
	bin   string
	cli   string
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	port int
	proc *process
}

func (n *clusterNode) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// clusterNodeTimeout is how long a master may be unreachable before its replica takes over. Short, so
// a kill -9 fails over in seconds in tests; production clusters keep the default 15 s.
const clusterNodeTimeout = 2 * time.Second

// StartRedisCluster starts six redis-servers on free ports (no persistence: a restarted node comes back
// empty, as a lost cache does), forms the cluster and waits until every slot is served and every
// replica is in sync with its master.
func StartRedisCluster(ctx context.Context, o Options) (*RedisCluster, error) {
	owned, err := o.prepare("benefits-redis-cluster-")
	if err != nil {
		return nil, err
	}
	bin, err := findOrInstall(o.Log, "redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	cli, err := findOrInstall(o.Log, "redis-tools", "redis-cli")
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{dir: o.Dir, owned: owned, bin: bin, cli: cli}
	for i := 0; i < 6; i++ {
		n, err := c.startNewNode(ctx)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.mu.Lock()
		c.nodes = append(c.nodes, n)
		c.mu.Unlock()
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %w: %s", err, tail2(out))
	}
	if err := c.WaitHealthy(ctx, 60*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// clusterPort is a free port whose cluster bus port (port+10000) is free too.
func clusterPort() (int, error) {
	for range 50 {
		port, err := FreePort()
		if err != nil {
			return 0, err
		}
		if port+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair (port, port+10000) for a cluster node")
}

// startNewNode starts a node on a fresh port. Another process may take the port or its bus port
// between the check and the start (other suites share the machine), so a node that cannot listen
// is tried again on other ports.
func (c *RedisCluster) startNewNode(ctx context.Context) (*clusterNode, error) {
	var err error
	for range 3 {
		var port int
		if port, err = clusterPort(); err != nil {
			return nil, err
		}
		n := &clusterNode{port: port}
		if err = c.startNode(ctx, n); err == nil {
			return n, nil
		}
		if n.proc != nil {
			n.proc.stop(time.Second)
		}
		_ = os.RemoveAll(c.nodeDir(n))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// nodeDir is a node's own folder: a replica writes the RDB it receives from its master to its working
// directory, and a node started in a folder holding another's dump.rdb would load those keys (and,
// in cluster mode, claim their slots).
func (c *RedisCluster) nodeDir(n *clusterNode) string {
	return filepath.Join(c.dir, strconv.Itoa(n.port))
}

func (c *RedisCluster) startNode(ctx context.Context, n *clusterNode) error {
	dir := c.nodeDir(n)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logFile := filepath.Join(dir, "redis.log")
	var err error
	n.proc, err = startProcess(logFile, c.bin, "--port", strconv.Itoa(n.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
		"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", n.port),
		"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout/time.Millisecond)),
		// A replica whose master died takes over however long ago it last heard from it: these nodes
		// share one machine, and a slow test must not leave slots without a master.
		"--cluster-replica-validity-factor", "0")
	if err != nil {
		return err
	}
	return waitRedis(ctx, n.addr(), n.proc, logFile, "redis cluster node")
}

// Addrs are the seed addresses of every node, for go-redis's ClusterClient.
func (c *RedisCluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr()
	}
	return out
}

// nodeView is one line of CLUSTER NODES as seen from a live node.
type nodeView struct {
	id, addr, masterID string
	master, failed     bool
	connected          bool
	slots              int
}

func (c *RedisCluster) view(ctx context.Context, addr string) ([]nodeView, error) {
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	s, err := client.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []nodeView
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		v := nodeView{id: f[0], addr: strings.SplitN(f[1], "@", 2)[0], masterID: f[3], connected: f[7] == "connected"}
		flags := "," + f[2] + ","
		v.master = strings.Contains(flags, ",master,")
		v.failed = strings.Contains(flags, ",fail,") || strings.Contains(flags, ",fail?,") || strings.Contains(flags, ",noaddr,")
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, found := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if found {
				b, _ = strconv.Atoi(hi)
			}
			v.slots += b - a + 1
		}
		out = append(out, v)
	}
	return out, nil
}

func (c *RedisCluster) live() []*clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*clusterNode
	for _, n := range c.nodes {
		if n.proc != nil && !n.proc.exited() {
			out = append(out, n)
		}
	}
	return out
}

// healthy says why the cluster is not yet fit for use, or "" when it is: every live node says
// cluster_state:ok and sees all 16384 slots on non-failed masters, and every live replica's link to
// its master is up (so a CLUSTER FAILOVER can complete).
func (c *RedisCluster) healthy(ctx context.Context) string {
	for _, n := range c.live() {
		client := redis.NewClient(&redis.Options{Addr: n.addr(), MaxRetries: -1})
		info, err := client.ClusterInfo(ctx).Result()
		if err != nil {
			client.Close()
			return fmt.Sprintf("%s: %v", n.addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			client.Close()
			return n.addr() + ": cluster_state is not ok"
		}
		repl, err := client.Info(ctx, "replication").Result()
		client.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.addr(), err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return n.addr() + ": replica not in sync"
		}
		views, err := c.view(ctx, n.addr())
		if err != nil {
			return fmt.Sprintf("%s: %v", n.addr(), err)
		}
		slots := 0
		for _, v := range views {
			if v.master && !v.failed {
				slots += v.slots
			}
		}
		if slots != 16384 {
			return fmt.Sprintf("%s sees %d of 16384 slots served", n.addr(), slots)
		}
	}
	return ""
}

// WaitHealthy waits until every live node agrees the cluster is ok with all slots covered.
func (c *RedisCluster) WaitHealthy(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		why := c.healthy(ctx)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis cluster not healthy after %s: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Masters lists the addresses of the masters serving slots, as a live node sees them.
func (c *RedisCluster) Masters(ctx context.Context) ([]string, error) {
	views, err := c.anyView(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range views {
		if v.master && !v.failed && v.slots > 0 {
			out = append(out, v.addr)
		}
	}
	return out, nil
}

func (c *RedisCluster) anyView(ctx context.Context) ([]nodeView, error) {
	var errs []error
	for _, n := range c.live() {
		v, err := c.view(ctx, n.addr())
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no live cluster node answers: %w", errors.Join(errs...))
}

// ReplicaOf is the address of a live replica of the master at masterAddr.
func (c *RedisCluster) ReplicaOf(ctx context.Context, masterAddr string) (string, error) {
	views, err := c.anyView(ctx)
	if err != nil {
		return "", err
	}
	id := ""
	for _, v := range views {
		if v.addr == masterAddr {
			id = v.id
		}
	}
	for _, v := range views {
		if id != "" && v.masterID == id && !v.failed {
			return v.addr, nil
		}
	}
	return "", fmt.Errorf("no live replica of %s", masterAddr)
}

// MasterOfKey is the address of the master serving key's slot.
func (c *RedisCluster) MasterOfKey(ctx context.Context, key string) (string, error) {
	masters, err := c.MastersOfKeys(ctx, key)
	if err != nil {
		return "", err
	}
	return masters[0], nil
}

// MastersOfKeys are the addresses of the masters serving each key's slot, from one view of the
// cluster.
func (c *RedisCluster) MastersOfKeys(ctx context.Context, keys ...string) ([]string, error) {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer client.Close()
	slots, err := client.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	masters := make([]string, len(keys))
	for i, key := range keys {
		slot, err := client.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return nil, err
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				masters[i] = s.Nodes[0].Addr
				break
			}
		}
		if masters[i] == "" {
			return nil, fmt.Errorf("slot %d of %q is not served", slot, key)
		}
	}
	return masters, nil
}

// Failover runs CLUSTER FAILOVER on a replica of the master at masterAddr, the coordinated handover an
// operator does before maintenance (no write is lost), and waits until the replica is master and the
// cluster healthy. It returns the new master's address.
func (c *RedisCluster) Failover(ctx context.Context, masterAddr string) (string, error) {
	replica, err := c.ReplicaOf(ctx, masterAddr)
	if err != nil {
		return "", err
	}
	client := redis.NewClient(&redis.Options{Addr: replica})
	defer client.Close()
	if err := client.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		return "", fmt.Errorf("CLUSTER FAILOVER on %s: %w", replica, err)
	}
	return replica, c.waitMaster(ctx, replica, 30*time.Second)
}

// KillMaster sends SIGKILL to the master at masterAddr (no shutdown, no last replication: writes it
// acknowledged but had not yet sent to its replica are lost) and waits until its replica has been
// elected in its place. The killed node stays down until RestartNode. It returns the new master.
func (c *RedisCluster) KillMaster(ctx context.Context, masterAddr string) (string, error) {
	replica, err := c.ReplicaOf(ctx, masterAddr)
	if err != nil {
		return "", err
	}
	n := c.node(masterAddr)
	if n == nil || n.proc == nil || n.proc.exited() {
		return "", fmt.Errorf("%s is not a live node of this cluster", masterAddr)
	}
	_ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-n.proc.done
	return replica, c.waitMaster(ctx, replica, 60*time.Second)
}

// KillNode sends SIGKILL to the node at addr and returns once it is dead, without waiting for the
// cluster to react (see WaitMaster).
func (c *RedisCluster) KillNode(addr string) error {
	n := c.node(addr)
	if n == nil || n.proc == nil || n.proc.exited() {
		return fmt.Errorf("%s is not a live node of this cluster", addr)
	}
	_ = syscall.Kill(-n.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-n.proc.done
	return nil
}

// PauseNode stops the node at addr (SIGSTOP) as a stalled host would: it neither answers nor
// replicates until ResumeNode. A paused replica falls behind its master.
func (c *RedisCluster) PauseNode(addr string) error { return c.signal(addr, syscall.SIGSTOP) }

// ResumeNode continues a paused node (SIGCONT).
func (c *RedisCluster) ResumeNode(addr string) error { return c.signal(addr, syscall.SIGCONT) }

func (c *RedisCluster) signal(addr string, sig syscall.Signal) error {
	n := c.node(addr)
	if n == nil || n.proc == nil || n.proc.exited() {
		return fmt.Errorf("%s is not a live node of this cluster", addr)
	}
	return syscall.Kill(n.proc.cmd.Process.Pid, sig)
}

// WaitMaster waits until addr serves slots as a master in every live node's view and the cluster is
// healthy.
func (c *RedisCluster) WaitMaster(ctx context.Context, addr string, within time.Duration) error {
	return c.waitMaster(ctx, addr, within)
}

// RestartNode starts a killed node again on its port. It comes back empty (no persistence) and, from
// its nodes.conf, rejoins as a replica of whoever took over its slots.
func (c *RedisCluster) RestartNode(ctx context.Context, addr string) error {
	n := c.node(addr)
	if n == nil {
		return fmt.Errorf("%s is not a node of this cluster", addr)
	}
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("%s is running", addr)
	}
	// A killed node's memory is gone; an RDB it received as a replica must not bring it back.
	if err := os.Remove(filepath.Join(c.nodeDir(n), "dump.rdb")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := c.startNode(ctx, n); err != nil {
		return err
	}
	return c.WaitHealthy(ctx, 60*time.Second)
}

// Heal restarts every node that was killed (each rejoins empty, as a replica of whoever took over its
// slots) and waits until the cluster is healthy: every slot served, every replica in sync.
func (c *RedisCluster) Heal(ctx context.Context, within time.Duration) error {
	c.mu.Lock()
	var dead []*clusterNode
	for _, n := range c.nodes {
		if n.proc != nil && n.proc.exited() {
			dead = append(dead, n)
		}
	}
	c.mu.Unlock()
	for _, n := range dead {
		if err := os.Remove(filepath.Join(c.nodeDir(n), "dump.rdb")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := c.startNode(ctx, n); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx, within)
}

func (c *RedisCluster) node(addr string) *clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// waitMaster waits until addr is a master that serves slots, in the view of every live node, and the
// cluster is healthy again.
func (c *RedisCluster) waitMaster(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ok := true
		for _, n := range c.live() {
			views, err := c.view(ctx, n.addr())
			if err != nil {
				ok = false
				break
			}
			promoted := false
			for _, v := range views {
				if v.addr == addr && v.master && v.slots > 0 {
					promoted = true
				}
			}
			ok = ok && promoted
		}
		if ok && c.healthy(ctx) == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not take over within %s: %s", addr, within, c.healthy(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddShard grows the cluster by a master with one replica, as an operator adds capacity: two new
// nodes joined with `redis-cli --cluster add-node` (the second as the first's replica). The new master
// serves no slot until MoveSlot gives it some. It returns the new master's address.
func (c *RedisCluster) AddShard(ctx context.Context) (string, error) {
	seed := c.live()[0].addr()
	// One node at a time: a started node that has not joined yet would count as a member that does not
	// know the others.
	master, err := c.addNode(ctx, seed)
	if err != nil {
		return "", err
	}
	id, err := c.nodeID(ctx, master)
	if err != nil {
		return "", err
	}
	// add-node of a replica needs its master known to every node first.
	if err := c.waitKnown(ctx, id, 30*time.Second); err != nil {
		return "", err
	}
	replica, err := c.addNode(ctx, seed, "--cluster-slave", "--cluster-master-id", id)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r, err := c.ReplicaOf(ctx, master); err == nil && r == replica && c.healthy(ctx) == "" {
			return master, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("new shard %s/%s not healthy: %s", master, replica, c.healthy(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addNode starts a node on a free port and joins it through seed with redis-cli --cluster add-node.
func (c *RedisCluster) addNode(ctx context.Context, seed string, flags ...string) (string, error) {
	n, err := c.startNewNode(ctx)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	args := append([]string{"--cluster", "add-node", n.addr(), seed}, flags...)
	if out, err := exec.CommandContext(ctx, c.cli, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("redis-cli %v: %w: %s", args, err, tail2(out))
	}
	return n.addr(), nil
}

func (c *RedisCluster) nodeID(ctx context.Context, addr string) (string, error) {
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	return client.Do(ctx, "CLUSTER", "MYID").Text()
}

func (c *RedisCluster) waitKnown(ctx context.Context, id string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		known := true
		for _, n := range c.live() {
			views, err := c.view(ctx, n.addr())
			found := false
			for _, v := range views {
				found = found || v.id == id
			}
			known = known && err == nil && found
		}
		if known {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("node %s not known to every node within %s", id, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MoveSlot migrates one hash slot, keys and all, to the master at to, by the procedure Redis Cluster
// documents for resharding (SETSLOT IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE on every
// master). While it runs, commands on the slot meet ASK redirects, and multi-key commands whose keys
// are split between the two nodes meet TRYAGAIN.
func (c *RedisCluster) MoveSlot(ctx context.Context, slot int, to string) error {
	views, err := c.anyView(ctx)
	if err != nil {
		return err
	}
	slots, err := func() ([]redis.ClusterSlot, error) {
		client := redis.NewClient(&redis.Options{Addr: to})
		defer client.Close()
		return client.ClusterSlots(ctx).Result()
	}()
	if err != nil {
		return err
	}
	from := ""
	for _, s := range slots {
		if s.Start <= slot && slot <= s.End && len(s.Nodes) > 0 {
			from = s.Nodes[0].Addr
		}
	}
	if from == "" || from == to {
		return fmt.Errorf("slot %d: served by %q, cannot move it to %s", slot, from, to)
	}
	fromID, err := c.nodeID(ctx, from)
	if err != nil {
		return err
	}
	toID, err := c.nodeID(ctx, to)
	if err != nil {
		return err
	}
	src := redis.NewClient(&redis.Options{Addr: from})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: to})
	defer dst.Close()
	if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err(); err != nil {
		return fmt.Errorf("SETSLOT IMPORTING: %w", err)
	}
	if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err(); err != nil {
		return fmt.Errorf("SETSLOT MIGRATING: %w", err)
	}
	host, port, _ := strings.Cut(to, ":")
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 10).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("MIGRATE: %w", err)
		}
	}
	// The new owner first, then the old, then everyone else, as redis-cli does.
	order := []string{to, from}
	for _, v := range views {
		if v.master && !v.failed && v.addr != to && v.addr != from {
			order = append(order, v.addr)
		}
	}
	for _, a := range order {
		client := redis.NewClient(&redis.Options{Addr: a})
		err := client.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID).Err()
		client.Close()
		if err != nil {
			return fmt.Errorf("SETSLOT NODE on %s: %w", a, err)
		}
	}
	return c.WaitHealthy(ctx, 30*time.Second)
}

// Stop kills every node and removes the folder if this package made it.
func (c *RedisCluster) Stop() {
	c.mu.Lock()
	nodes := append([]*clusterNode(nil), c.nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.proc == nil {
			continue
		}
		if !n.proc.exited() {
			_ = syscall.Kill(n.proc.cmd.Process.Pid, syscall.SIGCONT) // a paused node cannot act on SIGTERM
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.proc.stop(5 * time.Second)
		}()
	}
	wg.Wait()
	if c.owned {
		_ = os.RemoveAll(c.dir)
	}
}

// FlushAll empties every master of c: FLUSHALL on a cluster client reaches one node only, so it must
// go to each master in turn (replicas follow their masters).
func FlushAll(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.FlushDB(ctx).Err()
		})
	}
	return c.FlushDB(ctx).Err()
}

// Keys lists the keys matching pattern on every master (KEYS on a cluster client asks one node).
func Keys(ctx context.Context, c redis.UniversalClient, pattern string) ([]string, error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return c.Keys(ctx, pattern).Result()
	}
	var mu sync.Mutex
	var out []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		ks, err := m.Keys(ctx, pattern).Result()
		mu.Lock()
		out = append(out, ks...)
		mu.Unlock()
		return err
	})
	return out, err
}
