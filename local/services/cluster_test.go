package services

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisClusterFailoverAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := StartRedisCluster(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, n := range c.nodes {
		pids = append(pids, n.proc.cmd.Process.Pid)
	}
	defer func() {
		c.Stop()
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("cluster node pid %d still alive after Stop", pid)
			}
		}
	}()
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters = %v, %v; want 3", masters, err)
	}
	for _, m := range masters {
		if _, err := c.ReplicaOf(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	// A dead master answers no MOVED, so the client learns of its heir only by reloading the slot map.
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 16, ClusterStateReloadInterval: 200 * time.Millisecond})
	defer client.Close()
	// Keys spread over every master.
	owners := map[string]bool{}
	for i := 0; i < 64; i++ {
		k := fmt.Sprintf("k%d", i)
		if err := client.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		m, err := c.MasterOfKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		owners[m] = true
	}
	if len(owners) != 3 {
		t.Fatalf("64 keys landed on %d masters, want 3", len(owners))
	}
	if ks, err := Keys(ctx, client, "k*"); err != nil || len(ks) != 64 {
		t.Fatalf("Keys over all masters: %d keys, %v; want 64", len(ks), err)
	}

	// A coordinated failover keeps every write.
	old, err := c.MasterOfKey(ctx, "k0")
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := c.Failover(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if now, _ := c.MasterOfKey(ctx, "k0"); now != promoted || now == old {
		t.Fatalf("after failover k0 is served by %s; want the promoted replica %s", now, promoted)
	}
	if v, err := client.Get(ctx, "k0").Int(); err != nil || v != 0 {
		t.Fatalf("k0 after failover = %d, %v", v, err)
	}

	// kill -9 of a master: its replica takes over, the cluster serves every slot again.
	victim, err := c.MasterOfKey(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	heir, err := c.KillMaster(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if now, _ := c.MasterOfKey(ctx, "k1"); now != heir {
		t.Fatalf("after kill -9 k1 is served by %s; want %s", now, heir)
	}
	if masters, _ := c.Masters(ctx); len(masters) != 3 || slices.Contains(masters, victim) {
		t.Fatalf("masters after kill = %v; want 3 without %s", masters, victim)
	}
	if err := client.Set(ctx, "k1", "after", 0).Err(); err != nil {
		t.Fatalf("write after the takeover: %v", err)
	}
	// The killed node comes back empty and rejoins as the heir's replica.
	if err := c.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if r, err := c.ReplicaOf(ctx, heir); err != nil || r != victim {
		t.Fatalf("replica of %s = %s, %v; want the restarted %s", heir, r, err, victim)
	}
	// A shard added, and k0's slot moved onto it with its key.
	added, err := c.AddShard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if masters, _ := c.Masters(ctx); len(masters) != 3 {
		t.Fatalf("an added shard serves no slot before a move; masters serving = %v", masters)
	}
	slot, err := client.ClusterKeySlot(ctx, "k0").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MoveSlot(ctx, int(slot), added); err != nil {
		t.Fatal(err)
	}
	if now, _ := c.MasterOfKey(ctx, "k0"); now != added {
		t.Fatalf("after the move k0 is served by %s; want %s", now, added)
	}
	if v, err := client.Get(ctx, "k0").Int(); err != nil || v != 0 {
		t.Fatalf("k0 after the move = %d, %v", v, err)
	}
	if _, err := c.ReplicaOf(ctx, added); err != nil {
		t.Fatal(err)
	}
	if err := FlushAll(ctx, client); err != nil {
		t.Fatal(err)
	}
	if ks, err := Keys(ctx, client, "*"); err != nil || len(ks) != 0 {
		t.Fatalf("after FlushAll: %v, %v", ks, err)
	}
}
