package rediscache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/config"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/wiring"
)

// rush claims one campaign from workers goroutines until stop is closed, recording per phase what was
// acknowledged (a unit granted: what a user would be told) and what failed (what the claim function
// answers 503 for).
type rush struct {
	cache    *rediscache.Cache
	campaign string
	// Every other worker claims paid instead, for one of payers (credited enough for the whole run), so
	// the points debit in the user's slot goes through the failovers too.
	paid     string
	payers   []string
	phase    atomic.Int32
	mu       sync.Mutex
	acked    map[string]domain.Claim
	ackedBy  map[int32]int
	failedBy map[int32]int
}

func (r *rush) run(workers int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				phase := r.phase.Load()
				user, campaign := fmt.Sprint("u", rand.Uint64()), r.campaign
				if w%2 == 1 && len(r.payers) > 0 {
					user, campaign = r.payers[rand.IntN(len(r.payers))], r.paid
				}
				out, err := r.cache.Claim(ctx, rediscache.ClaimInput{
					UserID: user, CampaignID: campaign, RequestID: fmt.Sprint("r", w, "-", i),
					Now: time.Now(), By: domain.ByClaim,
				})
				cancel()
				r.mu.Lock()
				switch {
				case err == nil && out.Code == "" && !out.Replayed:
					r.acked[out.Claim.ID] = out.Claim
					r.ackedBy[phase]++
				case err != nil || out.Code == domain.CodeUnavailable:
					r.failedBy[phase]++
					time.Sleep(20 * time.Millisecond) // a client backing off after a 503
				default:
					r.mu.Unlock()
					panic(fmt.Sprintf("unexpected outcome %+v", out))
				}
				r.mu.Unlock()
			}
		}()
	}
	return &wg
}

func (r *rush) counts(phase int32) (acked, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ackedBy[phase], r.failedBy[phase]
}

// A master fails over while claims are in flight: first a coordinated CLUSTER FAILOVER, then a kill -9
// of the master that took over; then a shard is added and the campaign's slot moved onto it. Claims on the moving slots fail (503) and none is acknowledged that
// the cluster then forgets: with ReplicaAcks 1 a claim is acknowledged only once its slot's replica
// holds it, so the replica a kill -9 promotes counts every acknowledged unit (never sells it again),
// and a master left without a replica acknowledges nothing until one is back.
func TestFailoverMidRush(t *testing.T) {
	if testing.Short() || !services.Env(t).Cluster() {
		t.Skip("needs BENEFITS_TEST_REDIS_MODE=cluster (starts a private cluster of its own)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := services.StartRedisCluster(ctx, services.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	rdb := wiring.RedisClient(config.Config{RedisCluster: cl.Addrs()}) // exactly as the functions connect
	defer rdb.Close()
	cache := rediscache.NewWith(rdb, rediscache.Options{ReplicaAcks: 1, ReplicaAckTimeout: 200 * time.Millisecond})
	if err := cache.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	const id = "rush"
	now := time.Now()
	camp := domain.Campaign{ID: id, Name: "rush", Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
		Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim,
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), Stock: domain.MaxStock, PerUserLimit: 1,
		Status: domain.StatusActive, Version: 1}
	if res, err := cache.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
		t.Fatalf("apply: %+v %v", res, err)
	}
	campKey := "bn:{c:" + id + "}:camp"
	const paidID, credits = "rush-paid", 1_000_000
	paid := camp
	paid.ID, paid.CostPoints, paid.PerUserLimit = paidID, 1, domain.MaxPerUserLimit
	if res, err := cache.ApplyCampaign(ctx, paid, 0); err != nil || !res.Applied {
		t.Fatalf("apply paid: %+v %v", res, err)
	}
	var payers []string
	for i := 0; i < 300; i++ {
		u := fmt.Sprint("payer-", i)
		if _, err := cache.ApplyUser(ctx, rediscache.UserState{ID: u, RegisteredAt: now.Add(-time.Hour), Credits: credits, Version: 1}); err != nil {
			t.Fatal(err)
		}
		payers = append(payers, u)
	}

	r := &rush{cache: cache, campaign: id, paid: paidID, payers: payers,
		acked: map[string]domain.Claim{}, ackedBy: map[int32]int{}, failedBy: map[int32]int{}}
	stop := make(chan struct{})
	wg := r.run(8, stop)
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()
	const (
		before = iota
		coordinated
		killed
		noReplica
		restored
		resharding
		resharded
	)
	time.Sleep(time.Second)
	master, err := cl.MasterOfKey(ctx, campKey)
	if err != nil {
		t.Fatal(err)
	}
	r.phase.Store(coordinated)
	heir, err := cl.Failover(ctx, master)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	r.phase.Store(killed)
	if _, err := cl.KillMaster(ctx, heir); err != nil {
		t.Fatal(err)
	}
	r.phase.Store(noReplica)
	time.Sleep(time.Second)
	r.phase.Store(restored)
	if err := cl.RestartNode(ctx, heir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	// A shard added, and the campaign's slot moved onto it, claims still running.
	added, err := cl.AddShard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.phase.Store(resharding)
	slot, err := rdb.ClusterKeySlot(ctx, campKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.MoveSlot(ctx, int(slot), added); err != nil {
		t.Fatal(err)
	}
	r.phase.Store(resharded)
	time.Sleep(time.Second)
	halt()
	if m, _ := cl.MasterOfKey(ctx, campKey); m != added {
		t.Fatalf("the campaign is served by %s after the move, want %s", m, added)
	}
	if ready, err := cache.Ready(ctx); err != nil || !ready {
		t.Fatalf("after the move the cache is ready = %v, %v: the slot's marker must move with it", ready, err)
	}

	for p, name := range []string{"before", "coordinated failover", "kill -9 until the replica took over", "new master without a replica", "replica back", "slot moving to an added shard", "slot moved"} {
		a, f := r.counts(int32(p))
		t.Logf("%-36s acknowledged %5d  failed (503) %5d", name, a, f)
	}
	if a, _ := r.counts(before); a == 0 {
		t.Fatal("no claim acknowledged before the failover: the rush did not run")
	}
	if a, _ := r.counts(coordinated); a == 0 {
		t.Fatal("no claim acknowledged across the coordinated failover")
	}
	if _, f := r.counts(killed); f == 0 {
		t.Fatal("no claim failed while the killed master's slots had no master")
	}
	if a, f := r.counts(noReplica); f == 0 || a > 0 {
		// Claims begun while the replica was being elected may still land; a second of claims on a
		// master whose acknowledged writes would die with it must all fail.
		t.Fatalf("master without a replica: %d acknowledged, %d failed; want none acknowledged", a, f)
	}
	if a, _ := r.counts(restored); a == 0 {
		t.Fatal("no claim acknowledged once the replica was back")
	}
	if a, _ := r.counts(resharded); a == 0 {
		t.Fatal("no claim acknowledged once the campaign's slot had moved to the added shard")
	}

	// Every acknowledged unit is counted and recorded by the cluster as it is now, in both campaigns.
	ackedOf := map[string]int{}
	paidAcked := map[string]int64{} // payer → acknowledged paid claims
	for _, cl := range r.acked {
		ackedOf[cl.CampaignID]++
		if cl.CampaignID == paidID {
			paidAcked[cl.UserID]++
		}
	}
	if ackedOf[paidID] == 0 || ackedOf[id] == 0 {
		t.Fatalf("acknowledged per campaign %v: both must have run", ackedOf)
	}
	streamed := map[string]bool{}
	recordedOf := map[string]map[string]bool{} // payer → their claim ids recorded in the paid campaign
	for _, cid := range []string{id, paidID} {
		cc, err := cache.Campaign(ctx, cid)
		if err != nil {
			t.Fatal(err)
		}
		records, err := rdb.HGetAll(ctx, "bn:{c:"+cid+"}:claims").Result()
		if err != nil {
			t.Fatal(err)
		}
		if cc.Issued != int64(len(records)) || cc.Issued < int64(ackedOf[cid]) || cc.Remaining != camp.Stock-cc.Issued {
			t.Fatalf("%s: issued %d, remaining %d, %d claim records, %d acknowledged: the stock count must cover every acknowledged unit",
				cid, cc.Issued, cc.Remaining, len(records), ackedOf[cid])
		}
		for claimID, raw := range records {
			var rec struct {
				UserID string `json:"user_id"`
			}
			if err := json.Unmarshal([]byte(raw), &rec); err != nil {
				t.Fatal(err)
			}
			if recordedOf[rec.UserID] == nil {
				recordedOf[rec.UserID] = map[string]bool{}
			}
			recordedOf[rec.UserID][claimID] = true
		}
		after := "0"
		for {
			batch, err := cache.ReadGrants(ctx, cid, after, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) == 0 {
				break
			}
			for _, g := range batch {
				streamed[g.Claim.ID] = true
			}
			after = batch[len(batch)-1].StreamID
		}
	}
	lost := 0
	for claimID, cl := range r.acked {
		if !recordedOf[cl.UserID][claimID] || !streamed[claimID] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged claims are gone from the cluster's records or grant streams", lost, len(r.acked))
	}
	// Points: every acknowledged paid claim's debit survived, and nothing was debited without a claim.
	for _, u := range payers {
		cu, err := cache.User(ctx, u)
		if err != nil || !cu.Present {
			t.Fatalf("payer %s: %+v %v", u, cu, err)
		}
		debited := credits - cu.Balance
		if debited < paidAcked[u] || debited > int64(len(recordedOf[u])) {
			t.Fatalf("payer %s: %d points debited, %d paid claims acknowledged, %d recorded: an acknowledged debit was lost or one was made without a claim",
				u, debited, paidAcked[u], len(recordedOf[u]))
		}
	}
}

// Replication is asynchronous, and this shows what that costs and what REDIS_WAIT_REPLICAS buys. A
// campaign's replica stalls (SIGSTOP, a host that hangs) while claims go on, then its master is
// killed and the stalled replica, resumed, is promoted without the writes it never received. Without
// WAIT the master acknowledged those claims, and the cluster forgets them: their units would be sold
// again. With WAIT 1 nothing is acknowledged while the replica is stalled, so nothing acknowledged is
// lost.
func TestUnreplicatedWritesDieWithTheirMaster(t *testing.T) {
	if testing.Short() || !services.Env(t).Cluster() {
		t.Skip("needs BENEFITS_TEST_REDIS_MODE=cluster (starts a private cluster of its own)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := services.StartRedisCluster(ctx, services.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	rdb := wiring.RedisClient(config.Config{RedisCluster: cl.Addrs()})
	defer rdb.Close()
	if err := rediscache.New(rdb).MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	const (
		normal = iota
		stalled
		after
	)
	scenario := func(id string, cache *rediscache.Cache) (stalledAcked, lost int) {
		now := time.Now()
		camp := domain.Campaign{ID: id, Name: id, Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 500},
			Audience: domain.Audience{Segment: domain.SegmentAll}, Mode: domain.ModeClaim,
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), Stock: domain.MaxStock, PerUserLimit: 1,
			Status: domain.StatusActive, Version: 1}
		if res, err := cache.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
			t.Fatalf("apply %s: %+v %v", id, res, err)
		}
		master, err := cl.MasterOfKey(ctx, "bn:{c:"+id+"}:camp")
		if err != nil {
			t.Fatal(err)
		}
		replica, err := cl.ReplicaOf(ctx, master)
		if err != nil {
			t.Fatal(err)
		}
		r := &rush{cache: cache, campaign: id, acked: map[string]domain.Claim{}, ackedBy: map[int32]int{}, failedBy: map[int32]int{}}
		stop := make(chan struct{})
		wg := r.run(8, stop)
		time.Sleep(300 * time.Millisecond)
		if err := cl.PauseNode(replica); err != nil {
			t.Fatal(err)
		}
		r.phase.Store(stalled)
		time.Sleep(time.Second)
		if err := cl.KillNode(master); err != nil {
			t.Fatal(err)
		}
		if err := cl.ResumeNode(replica); err != nil {
			t.Fatal(err)
		}
		r.phase.Store(after)
		if err := cl.WaitMaster(ctx, replica, time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		if err := cl.RestartNode(ctx, master); err != nil {
			t.Fatal(err)
		}
		records, err := rdb.HGetAll(ctx, "bn:{c:"+id+"}:claims").Result()
		if err != nil {
			t.Fatal(err)
		}
		for claimID := range r.acked {
			if _, ok := records[claimID]; !ok {
				lost++
			}
		}
		for p, name := range []string{"normal", "replica stalled", "master killed, replica promoted"} {
			a, f := r.counts(int32(p))
			t.Logf("%s: %-32s acknowledged %5d  failed (503) %5d", id, name, a, f)
		}
		if a, _ := r.counts(normal); a == 0 {
			t.Fatalf("%s: no claim acknowledged before the stall: the rush did not run", id)
		}
		stalledAcked, _ = r.counts(stalled)
		t.Logf("%s: %d of %d acknowledged claims lost with the master", id, lost, len(r.acked))
		return stalledAcked, lost
	}

	if acked, lost := scenario("no-wait", rediscache.New(rdb)); acked == 0 || lost == 0 {
		t.Fatalf("without WAIT: %d claims acknowledged while the replica stalled, %d lost; the hazard this guards against did not show", acked, lost)
	}
	waiting := rediscache.NewWith(rdb, rediscache.Options{ReplicaAcks: 1, ReplicaAckTimeout: 100 * time.Millisecond})
	if acked, lost := scenario("wait-1", waiting); acked != 0 || lost != 0 {
		t.Fatalf("with WAIT 1: %d claims acknowledged while the replica stalled, %d acknowledged claims lost; want none", acked, lost)
	}
}
