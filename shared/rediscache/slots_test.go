package rediscache

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
)

func TestKeySlotIsRedisClusters(t *testing.T) {
	// CRC-16/XMODEM's check value, and slots Redis's own documentation shows for CLUSTER KEYSLOT.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16 check value %#x, want 0x31c3", got)
	}
	for key, want := range map[string]uint16{"somekey": 11058, "foo{hash_tag}": 2515, "{hash_tag}bar": 2515} {
		if got := keySlot(key); got != want {
			t.Errorf("slot of %q = %d, want %d", key, got, want)
		}
	}
	if keySlot("foo{}{bar}") != crc16("foo{}{bar}")%numSlots {
		t.Error("an empty hash tag must hash the whole key")
	}
	m := newSlotMarkers()
	seen := map[string]bool{}
	for s, k := range m {
		if keySlot(k) != uint16(s) || seen[k] {
			t.Fatalf("marker %q of slot %d hashes to %d (or repeats)", k, s, keySlot(k))
		}
		seen[k] = true
	}
}

func TestOneSlotGuardRefusesCrossSlotCommands(t *testing.T) {
	same := redis.NewCmd(context.Background(), "evalsha", "x", 2, keysOfCampaign("a").camp, keysOfCampaign("a").held, "arg")
	if err := checkSlots(same); err != nil {
		t.Fatalf("one campaign's keys: %v", err)
	}
	cross := redis.NewCmd(context.Background(), "evalsha", "x", 2, keysOfCampaign("a").camp, keysOfUser("a").user)
	if err := checkSlots(cross); err == nil {
		t.Fatal("a script over a campaign's and a user's keys must be refused")
	}
	if err := checkSlots(redis.NewCmd(context.Background(), "exists", "bn:{c:a}:camp", "bn:{c:b}:camp")); err == nil {
		t.Fatal("EXISTS over two campaigns must be refused")
	}
}

func TestKeySlotAgreesWithTheServer(t *testing.T) {
	_, rdb := newCache(t)
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Skip("CLUSTER KEYSLOT needs a cluster (BENEFITS_TEST_REDIS_MODE=cluster)")
	}
	ctx := context.Background()
	m := newSlotMarkers()
	keys := []string{keysOfCampaign("c1").camp, keysOfUser("u1").user, m[0], m[numSlots-1], m[5000]}
	for _, k := range keys {
		got, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if uint16(got) != keySlot(k) {
			t.Fatalf("server puts %q in slot %d, we compute %d", k, got, keySlot(k))
		}
	}
}

// twoCampaignsInOtherSlots returns campaign ids a and b and a user id, all three in different slots.
func twoCampaignsInOtherSlots(pick func(a, b, u string) bool) (string, string, string) {
	for i := 0; ; i++ {
		a, b, u := fmt.Sprint("ca", i), fmt.Sprint("cb", i), fmt.Sprint("u", i)
		if pick(a, b, u) {
			return a, b, u
		}
	}
}

// A shard that lost its data takes exactly its slots out of service: a claim touching one of them
// answers 503, the others go on, and the cache as a whole is not ready until a rebuild marks it.
func TestLostSlotFailsClosedAlone(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	a, b, u := twoCampaignsInOtherSlots(func(a, b, u string) bool {
		sa, sb, su := keySlot(keysOfCampaign(a).camp), keySlot(keysOfCampaign(b).camp), keySlot(keysOfUser(u).user)
		return sa != sb && sa != su && sb != su
	})
	apply(t, c, campaign(a, 10, 5))
	apply(t, c, campaign(b, 10, 5))
	if out := claim(t, c, u, a, "r1"); out.Code != "" {
		t.Fatalf("before the loss: %+v", out)
	}
	// The loss of a's slot: its marker goes with its data.
	if err := rdb.Del(ctx, c.markers.of(keysOfCampaign(a).camp)).Err(); err != nil {
		t.Fatal(err)
	}
	if ready, err := c.Ready(ctx); err != nil || ready {
		t.Fatalf("ready = %v, %v with one slot lost", ready, err)
	}
	if n, err := c.MissingSlots(ctx); err != nil || n != 1 {
		t.Fatalf("missing slots = %d, %v; want 1", n, err)
	}
	if out := claim(t, c, u, a, "r2"); out.Code != domain.CodeUnavailable {
		t.Fatalf("claim in the lost slot: %+v, want unavailable", out)
	}
	if out := claim(t, c, u, b, "r3"); out.Code != "" {
		t.Fatalf("claim in a live slot: %+v, want granted", out)
	}
	// A request bound to the lost campaign is not answered "never recorded" from the empty slot.
	if out := claim(t, c, u, b, "r1"); out.Code != domain.CodeUnavailable {
		t.Fatalf("retry of a request recorded in the lost slot: %+v, want unavailable", out)
	}
	// The user's own slot lost: every claim of that user fails closed.
	if err := c.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, c.markers.of(keysOfUser(u).user)).Err(); err != nil {
		t.Fatal(err)
	}
	if out := claim(t, c, u, b, "r4"); out.Code != domain.CodeUnavailable {
		t.Fatalf("claim of a user whose slot is lost: %+v, want unavailable", out)
	}
	if err := c.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	if ready, err := c.Ready(ctx); err != nil || !ready {
		t.Fatalf("after MarkReady: %v, %v", ready, err)
	}
	if err := c.ClearReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.MissingSlots(ctx); n != numSlots {
		t.Fatalf("after ClearReady %d slots missing, want all", n)
	}
}

// On a real cluster: one master emptied (a shard restarted without its data) leaves the others'
// campaigns claimable and its own failing closed.
func TestOneMasterEmptiedOnACluster(t *testing.T) {
	c, rdb := newCache(t)
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Skip("needs a cluster (BENEFITS_TEST_REDIS_MODE=cluster)")
	}
	ctx := context.Background()
	addrOf := func(key string) string {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}
	a, b, u := twoCampaignsInOtherSlots(func(a, b, u string) bool {
		ma, mb, mu := addrOf(keysOfCampaign(a).camp), addrOf(keysOfCampaign(b).camp), addrOf(keysOfUser(u).user)
		return ma != mb && ma != mu
	})
	apply(t, c, campaign(a, 10, 5))
	apply(t, c, campaign(b, 10, 5))
	master, err := cc.MasterForKey(ctx, keysOfCampaign(a).camp)
	if err != nil {
		t.Fatal(err)
	}
	if err := master.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.MissingSlots(ctx); err != nil || n < numSlots/6 || n > numSlots/2 {
		t.Fatalf("missing slots after one of three masters emptied: %d, %v", n, err)
	}
	if out := claim(t, c, u, a, "r1"); out.Code != domain.CodeUnavailable {
		t.Fatalf("claim on the emptied master: %+v, want unavailable", out)
	}
	if out := claim(t, c, u, b, "r2"); out.Code != "" {
		t.Fatalf("claim on a live master: %+v, want granted", out)
	}
}

// After a loss, nothing but the rebuild may create entries in the lost slots: a change event applied
// from MySQL's counts (which lag the grants and debits in flight) would let a campaign oversell or
// points be spent twice once the slot opens again, and the rebuild's own write at the same version
// would then be fenced out.
func TestOnlyTheRebuildWritesALostSlot(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	apply(t, c, campaign("gone", 10, 1))
	credit(t, c, "ug", 100, 1)
	if err := services.FlushAll(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	camp := campaign("gone", 10, 1)
	camp.Version = 2
	if res, err := c.ApplyCampaign(ctx, camp, 3); err != nil || res.Applied || !res.NotReady() {
		t.Fatalf("fenced campaign write into a lost slot: %+v %v; want refused as not ready", res, err)
	}
	if res, err := c.ApplyUser(ctx, UserState{ID: "ug", Credits: 100, Debits: 10, Version: 2, RegisteredAt: now}); err != nil || res.Applied || !res.NotReady() {
		t.Fatalf("fenced user write into a lost slot: %+v %v; want refused as not ready", res, err)
	}
	if cc, _ := c.Campaign(ctx, "gone"); cc.Present {
		t.Fatalf("a refused write left an entry: %+v", cc)
	}
	// The rebuild's writes go through, and once the slots are marked ready the fence applies again.
	if res, err := c.RepairCampaign(ctx, camp, 5, 0); err != nil || !res.Applied {
		t.Fatalf("rebuild campaign: %+v %v", res, err)
	}
	if res, err := c.ApplyUser(ctx, UserState{ID: "ug", Credits: 100, Debits: 40, Version: 2, RegisteredAt: now, Restore: true}); err != nil || !res.Applied {
		t.Fatalf("rebuild user: %+v %v", res, err)
	}
	if err := c.MarkReady(ctx); err != nil {
		t.Fatal(err)
	}
	if cu, _ := c.User(ctx, "ug"); cu.Balance != 60 {
		t.Fatalf("balance after rebuild %d, want 60", cu.Balance)
	}
	camp.Version = 3
	if res, err := c.ApplyCampaign(ctx, camp, 0); err != nil || !res.Applied {
		t.Fatalf("fenced write after the rebuild: %+v %v", res, err)
	}
	if cc, _ := c.Campaign(ctx, "gone"); cc.Issued != 5 || cc.Remaining != 5 {
		t.Fatalf("after rebuild and a change: %+v; issued must stay at the rebuild's floor", cc)
	}
}
