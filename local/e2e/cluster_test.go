package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The compiled functions on a Redis Cluster, configured as template.yml says (REDIS_CLUSTER_ADDRS,
// REDIS_WAIT_REPLICAS=1): a rush sells exactly the stock, a stock change reaches the cache, and when
// the shard holding the campaign comes back empty its claims fail closed until the rebuild, which
// restores the count from MySQL so nothing is sold twice.
func TestClusterStack(t *testing.T) {
	opts := stackOptions()
	opts.RedisCluster = true
	h := startStack(t, opts)
	id, _ := h.createCampaign(map[string]any{"stock": 8})

	var mu sync.Mutex
	statuses := map[int]int{}
	var winners []string
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.claim(fmt.Sprint("rusher-", i), id, "1")
			mu.Lock()
			statuses[r.Status]++
			if r.Status == 201 {
				winners = append(winners, fmt.Sprint("rusher-", i))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[201] != 8 || statuses[409]+statuses[201] != 16 {
		t.Fatalf("16 claims for 8 units answered %v; want 8 × 201 and 8 × 409 (sold out)", statuses)
	}
	db := h.db()
	eventually(t, 15*time.Second, "8 claims in MySQL", func() bool {
		return h.count(db, "SELECT COUNT(*) FROM claims WHERE campaign_id = ?", id) == 8
	})
	patched := h.must(h.do("PATCH", "/v1/campaigns/"+id, h.operator, map[string]any{"stock": 10}, "If-Match", `"1"`), 200)
	if !inSync(patched) {
		t.Fatalf("stock change did not reach the cluster in time: %s", patched.Raw)
	}

	// The campaign's shard loses its data (its master emptied; its replica follows).
	ctx := context.Background()
	master, err := h.s.Cluster.MasterOfKey(ctx, "bn:{c:"+id+"}:camp")
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: master})
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if r := h.claim("late-1", id, "1"); r.Status != 503 || r.Code() != "unavailable" {
		t.Fatalf("claim on the emptied shard: %d %s; want 503", r.Status, r.Raw)
	}
	if rebuilt := h.runTimer("cache-rebuild"); rebuilt.Body["ready"] != true {
		t.Fatalf("rebuild: %s", rebuilt.Raw)
	}
	// The rebuild restored who holds what: a winner of the rush is at the limit.
	if r := h.claim(winners[0], id, "2"); r.Code() != "limit_reached" {
		t.Fatalf("%s claimed again after the rebuild: %d %s; want limit_reached", winners[0], r.Status, r.Raw)
	}
	// 8 issued before the loss, stock now 10: exactly two more.
	for i, want := range []int{201, 201, 409} {
		if r := h.claim(fmt.Sprint("late-", i+2), id, "1"); r.Status != want {
			t.Fatalf("claim %d after the rebuild: %d %s; want %d", i, r.Status, r.Raw, want)
		}
	}
	eventually(t, 15*time.Second, "10 claims in MySQL", func() bool {
		return h.count(db, "SELECT COUNT(*) FROM claims WHERE campaign_id = ?", id) == 10
	})
}
