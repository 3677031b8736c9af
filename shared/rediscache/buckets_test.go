package rediscache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
)

func bucketed(id string, stock, limit int64, buckets int) domain.Campaign {
	c := campaign(id, stock, limit)
	c.Buckets = buckets
	return c
}

// allocations reads each bucket's allocation and issued count.
func allocations(t *testing.T, rdb redis.UniversalClient, id string, n int) (alloc, issued []int64) {
	t.Helper()
	for b := 0; b < n; b++ {
		vals, err := rdb.HMGet(context.Background(), keysOfBucket(id, b).camp, "alloc", "issued").Result()
		if err != nil {
			t.Fatal(err)
		}
		alloc = append(alloc, toInt(vals[0]))
		issued = append(issued, toInt(vals[1]))
	}
	return alloc, issued
}

// rushClaims runs users claims (two request ids each) on workers goroutines and counts the grants.
func rushClaims(t *testing.T, c *Cache, id string, users, workers int) int64 {
	t.Helper()
	var granted atomic.Int64
	var wg sync.WaitGroup
	next := make(chan int, users)
	for u := 0; u < users; u++ {
		next <- u
	}
	close(next)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				for r := 0; r < 2; r++ {
					out, err := c.Claim(context.Background(), ClaimInput{UserID: fmt.Sprintf("u%d", u), CampaignID: id,
						RequestID: fmt.Sprintf("r%d", r), Now: now, By: domain.ByClaim})
					if err != nil {
						t.Error(err)
						return
					}
					switch out.Code {
					case "":
						granted.Add(1)
					case domain.CodeSoldOut, domain.CodeLimitReached:
					default:
						t.Errorf("unexpected code %s", out.Code)
					}
				}
			}
		}()
	}
	wg.Wait()
	return granted.Load()
}

// One campaign split into four buckets sells its stock exactly, from every bucket, with each user's
// limit held in one place.
func TestBucketedStockSellsExactlyOnce(t *testing.T) {
	c, rdb := newCache(t)
	const n = 4
	apply(t, c, bucketed("hot", 100, 1, n))
	alloc, _ := allocations(t, rdb, "hot", n)
	if sum(alloc) != 100 {
		t.Fatalf("allocations %v do not add up to the stock", alloc)
	}
	if granted := rushClaims(t, c, "hot", 1000, 64); granted != 100 {
		t.Fatalf("granted %d, want exactly 100", granted)
	}
	alloc, issued := allocations(t, rdb, "hot", n)
	if sum(alloc) > 100 || sum(issued) != 100 {
		t.Fatalf("allocations %v (sum %d) and issued %v (sum %d) after the rush", alloc, sum(alloc), issued, sum(issued))
	}
	users := map[string]bool{}
	for b := 0; b < n; b++ {
		held, err := rdb.HGetAll(context.Background(), keysOfBucket("hot", b).held).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(held) == 0 {
			t.Fatalf("bucket %d granted nothing: the claims did not spread", b)
		}
		for u, h := range held {
			if h != "1" || users[u] || domain.HomeBucket(u, n) != b {
				t.Fatalf("user %s holds %s in bucket %d (home %d, seen before %v)", u, h, b, domain.HomeBucket(u, n), users[u])
			}
			users[u] = true
		}
	}
	seen := map[string]bool{}
	for _, cl := range streamClaims(t, c, "hot") {
		if seen[cl.ID] {
			t.Fatalf("claim %s twice in the streams", cl.ID)
		}
		seen[cl.ID] = true
	}
	if len(seen) != 100 || len(users) != 100 {
		t.Fatalf("streams have %d grants, %d users hold; want 100 each", len(seen), len(users))
	}
	cc, err := c.Campaign(context.Background(), "hot")
	if err != nil || !cc.Present || cc.Issued != 100 || cc.Remaining != 0 || cc.Stock != 100 || cc.Version != 1 {
		t.Fatalf("cache view %+v, %v", cc, err)
	}
	// A retried request gets its own grant back, wherever its units came from.
	for u := range users {
		out := claim(t, c, u, "hot", "r0")
		if out.Code != "" || !out.Replayed {
			if out2 := claim(t, c, u, "hot", "r1"); out2.Code != "" || !out2.Replayed {
				t.Fatalf("retry of %s's grant: %+v / %+v", u, out, out2)
			}
		}
		break
	}
}

// A stock lowered from 100,000 to 10 mid-rush on a campaign of four buckets: once the change is
// applied nothing more is issued (more than 10 were), however the units were spread.
func TestBucketedStockLoweredMidRushIssuesNothingMore(t *testing.T) {
	c, rdb := newCache(t)
	const n = 4
	camp := bucketed("big", 100000, 1, n)
	apply(t, c, camp)
	var wg sync.WaitGroup
	var stop atomic.Bool
	var next atomic.Int64
	var unavailable atomic.Int64
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				u := next.Add(1)
				out, err := c.Claim(context.Background(), ClaimInput{UserID: fmt.Sprintf("u%d", u), CampaignID: "big",
					RequestID: "r", Now: now, By: domain.ByClaim})
				if err != nil {
					t.Error(err)
					return
				}
				if out.Code == domain.CodeUnavailable {
					unavailable.Add(1)
				}
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	camp.Stock, camp.Version = 10, 2
	if res := apply(t, c, camp); !res.Applied {
		t.Fatalf("the change was not applied: %+v", res)
	}
	atChange, _ := c.Campaign(context.Background(), "big")
	time.Sleep(150 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	after, _ := c.Campaign(context.Background(), "big")
	if atChange.Issued < 10 {
		t.Fatalf("only %d issued before the change; the test proves nothing", atChange.Issued)
	}
	if after.Issued != atChange.Issued || after.Remaining != 0 || after.Version != 2 || after.Stock != 10 {
		t.Fatalf("after lowering to 10: %+v, issued when applied %d", after, atChange.Issued)
	}
	alloc, issued := allocations(t, rdb, "big", n)
	if sum(alloc) != sum(issued) {
		t.Fatalf("allocations %v beyond issued %v after the stock fell below it", alloc, issued)
	}
	if n := len(streamClaims(t, c, "big")); int64(n) != after.Issued {
		t.Fatalf("streams hold %d grants, issued %d", n, after.Issued)
	}
	if out := claim(t, c, "late", "big", "r"); out.Code != domain.CodeSoldOut {
		t.Fatalf("a claim after the change: %+v", out)
	}
	// Raised again, the stock is shared out anew and sells exactly what was added.
	camp.Stock, camp.Version = after.Issued+5, 3
	apply(t, c, camp)
	got := 0
	for u := 0; u < 200; u++ {
		if out := claim(t, c, fmt.Sprintf("again%d", u), "big", "r"); out.Code == "" {
			got++
		}
	}
	if got != 5 {
		t.Fatalf("raised by 5, granted %d", got)
	}
}

// A loan cut short between its two steps strands units (undersold, never oversold) until the sweep
// completes it, once; a loan from before a stock change is dropped on arrival.
func TestLoansCutShortAndLoansFromAnOlderGeneration(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	const n = 2
	camp := bucketed("loan", 8, 5, n)
	apply(t, c, camp)
	from := keysOfBucket("loan", 1)
	lent, err := c.scripts.lend.Run(ctx, rdb, []string{from.camp, from.loansOut, c.markers.of(from.camp)}, "L1", 0, now.UnixMilli(), n).Result()
	if err != nil {
		t.Fatal(err)
	}
	if units := lent.([]any)[0].(int64); units != 2 { // 4 spare / 2 buckets
		t.Fatalf("lent %d units, want 2", units)
	}
	// The claim that lent died here: 2 units belong to no bucket.
	alloc, _ := allocations(t, rdb, "loan", n)
	if sum(alloc) != 6 {
		t.Fatalf("allocations %v after a loan cut short, want 6 in all", alloc)
	}
	if _, err := c.SweepPending(ctx, "loan", time.Minute, now); err != nil {
		t.Fatal(err)
	}
	if alloc, _ := allocations(t, rdb, "loan", n); sum(alloc) != 6 {
		t.Fatalf("a young loan was completed by the sweep: %v", alloc)
	}
	for i := 0; i < 2; i++ { // twice: the second sweep must not apply it again
		if _, err := c.SweepPending(ctx, "loan", time.Minute, now.Add(loanSettleAfter+time.Second)); err != nil {
			t.Fatal(err)
		}
		if alloc, _ := allocations(t, rdb, "loan", n); sum(alloc) != 8 || alloc[0] != 6 {
			t.Fatalf("sweep %d: allocations %v, want [6 2]", i+1, alloc)
		}
	}
	if left, _ := rdb.HLen(ctx, from.loansOut).Result(); left != 0 {
		t.Fatalf("the lender still records %d loans after the sweep", left)
	}

	// A loan lent before a change and received after it is dropped: the change's seal counted the
	// units as unsold and shared them out again.
	lent, err = c.scripts.lend.Run(ctx, rdb, []string{from.camp, from.loansOut, c.markers.of(from.camp)}, "L2", 0, now.UnixMilli(), n).Result()
	if err != nil {
		t.Fatal(err)
	}
	units, gen := lent.([]any)[0].(int64), lent.([]any)[1].(string)
	camp.Version = 2
	apply(t, c, camp)
	to := keysOfBucket("loan", 0)
	applied, err := c.scripts.receive.Run(ctx, rdb, []string{to.camp, to.loansIn}, "L2", units, gen, 1, now.UnixMilli()).Int()
	if err != nil || applied != 0 {
		t.Fatalf("a loan from generation %s received after a change: applied %d, %v", gen, applied, err)
	}
	if alloc, _ := allocations(t, rdb, "loan", n); sum(alloc) != 8 {
		t.Fatalf("allocations %v after the change, want 8 in all", alloc)
	}
}

// Bucket by bucket, claims borrow until the whole stock is sold, even when every user's home is one
// bucket; then the bucket answers sold_out.
func TestADryBucketBorrowsTheRest(t *testing.T) {
	c, rdb := newCache(t)
	const n = 4
	apply(t, c, bucketed("lean", 20, 100, n))
	// One user claims everything: all from the home bucket, borrowed from the other three.
	var user string
	for i := 0; ; i++ {
		if user = fmt.Sprintf("solo%d", i); domain.HomeBucket(user, n) == 2 {
			break
		}
	}
	for r := 0; r < 20; r++ {
		if out := claim(t, c, user, "lean", fmt.Sprintf("r%d", r)); out.Code != "" {
			t.Fatalf("claim %d of 20: %+v", r+1, out)
		}
	}
	if out := claim(t, c, user, "lean", "r20"); out.Code != domain.CodeSoldOut {
		t.Fatalf("claim 21 of a stock of 20: %+v", out)
	}
	alloc, issued := allocations(t, rdb, "lean", n)
	if issued[2] != 20 || sum(alloc) != 20 || alloc[2] != 20 {
		t.Fatalf("allocations %v, issued %v", alloc, issued)
	}
}

// After a cache loss the claims restored from MySQL go to their users' home buckets, and the
// buckets open with the rest of the stock.
func TestRestoredBucketsCountTheirUsers(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	const n = 3
	camp := bucketed("back", 30, 1, n)
	var prior []domain.Claim
	for u := 0; u < 12; u++ {
		user := fmt.Sprintf("p%d", u)
		prior = append(prior, domain.Claim{ID: domain.ClaimID(user, "r"), CampaignID: "back", UserID: user, RequestID: "r",
			Benefit: camp.Benefit, GrantedAt: now})
	}
	if err := c.RestoreClaims(ctx, camp, prior); err != nil {
		t.Fatal(err)
	}
	if res, err := c.RepairCampaign(ctx, camp, int64(len(prior)), 0); err != nil || !res.Applied {
		t.Fatalf("repair: %+v %v", res, err)
	}
	alloc, issued := allocations(t, rdb, "back", n)
	if sum(issued) != 12 || sum(alloc) != 30 {
		t.Fatalf("restored allocations %v, issued %v", alloc, issued)
	}
	for _, p := range prior {
		if out := claim(t, c, p.UserID, "back", "r"); out.Code != "" || !out.Replayed || out.Claim.ID != p.ID {
			t.Fatalf("retry of a restored claim: %+v", out)
		}
		if out := claim(t, c, p.UserID, "back", "again"); out.Code != domain.CodeLimitReached {
			t.Fatalf("a restored user at their limit: %+v", out)
		}
	}
	got := 0
	for u := 0; u < 100; u++ {
		if out := claim(t, c, fmt.Sprintf("new%d", u), "back", "r"); out.Code == "" {
			got++
		}
	}
	if got != 18 {
		t.Fatalf("granted %d after the restore, want the 18 left", got)
	}
}

// The streams of a campaign's buckets are read one after another, and a trim reaches one stream only.
func TestGrantStreamsOfBuckets(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	const n = 3
	apply(t, c, bucketed("st", 30, 1, n))
	for u := 0; u < 30; u++ {
		claim(t, c, fmt.Sprintf("s%d", u), "st", "r")
	}
	var all []StreamGrant
	after := ""
	for {
		batch, err := c.ReadGrants(ctx, "st", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		all = append(all, batch...)
		after = batch[len(batch)-1].StreamID
	}
	if len(all) != 30 {
		t.Fatalf("read %d grants, want 30", len(all))
	}
	perStream := map[int]int{}
	var last StreamGrant
	for _, g := range all {
		if g.Stream != domain.HomeBucket(g.Claim.UserID, n) {
			t.Fatalf("grant of %s read from stream %d, home %d", g.Claim.UserID, g.Stream, domain.HomeBucket(g.Claim.UserID, n))
		}
		perStream[g.Stream]++
		if g.Stream == 1 {
			last = g
		}
	}
	if len(perStream) != n {
		t.Fatalf("grants in streams %v", perStream)
	}
	if err := c.TrimGrants(ctx, "st", last.StreamID); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < n; b++ {
		l, _ := rdb.XLen(ctx, keysOfBucket("st", b).grants).Result()
		want := int64(perStream[b])
		if b == 1 {
			want = 0
		}
		if l != want {
			t.Fatalf("stream %d holds %d after trimming stream 1, want %d", b, l, want)
		}
	}
}

func sum(xs []int64) (s int64) {
	for _, x := range xs {
		s += x
	}
	return s
}
