package cachesync_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/cachesync"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mysqlstore"
	"github.com/benefit-issuance/benefits/shared/rediscache"
	"github.com/benefit-issuance/benefits/shared/storetest"
)

func TestMain(m *testing.M) { services.Main(m) }

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

type fixture struct {
	rdb   redis.UniversalClient
	store *mysqlstore.Store
	cache *rediscache.Cache
	sync  *cachesync.Syncer
}

func setup(t *testing.T) (*fixture, func(entity, id string, version int64) error) {
	t.Helper()
	store := storetest.MySQL(t)
	cache, rdb := storetest.ReadyRedis(t)
	f := &fixture{rdb: rdb, store: store, cache: cache, sync: cachesync.New(store, cache)}
	handle := func(entity, id string, version int64) error {
		return f.sync.Apply(context.Background(), mq.ChangeEvent{Entity: entity, ID: id, Version: version})
	}
	return f, handle
}

func campaign(id string, stock, cost int64) domain.Campaign {
	return domain.Campaign{ID: id, Name: id, Benefit: domain.Benefit{Type: domain.BenefitCoupon, Amount: 100},
		Audience: domain.Audience{Segment: domain.SegmentAll}, CostPoints: cost, Mode: domain.ModeClaim,
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), Stock: stock, PerUserLimit: 5, Status: domain.StatusActive}
}

func TestCampaignChangesApplyBehindTheFence(t *testing.T) {
	f, handle := setup(t)
	ctx := context.Background()
	if _, _, err := f.store.CreateCampaign(ctx, campaign("c", 100, 0)); err != nil {
		t.Fatal(err)
	}
	stock := int64(10)
	if _, _, err := f.store.UpdateCampaign(ctx, "c", 1, domain.CampaignPatch{Stock: &stock}); err != nil {
		t.Fatal(err)
	}
	// Events out of order and twice: the cache ends at the row's version either way.
	for _, v := range []int64{2, 1, 2} {
		if err := handle(mq.EntityCampaign, "c", v); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
	}
	if cc, _ := f.cache.Campaign(ctx, "c"); cc.Version != 2 || cc.Stock != 10 || cc.Remaining != 10 {
		t.Fatalf("cache: %+v", cc)
	}
	// An event ahead of the row (a lagging replica) is retried, never applied from an older row.
	if err := handle(mq.EntityCampaign, "c", 3); err == nil || !fault.IsRetryable(err) {
		t.Fatalf("event ahead of the row: %v, want retryable", err)
	}
	// A row that does not exist will never appear: permanent.
	if err := handle(mq.EntityCampaign, "nope", 1); err == nil || fault.IsRetryable(err) {
		t.Fatalf("unknown campaign: %v, want permanent", err)
	}
}

// A user entry evicted while a paid claim's debit is still on its way to MySQL is rebuilt with that
// debit counted, so the same points cannot be spent twice (found in review).
func TestEvictedUserIsRebuiltWithDebitsInFlight(t *testing.T) {
	f, handle := setup(t)
	ctx := context.Background()
	for _, id := range []string{"p1", "p2"} {
		if _, _, err := f.store.CreateCampaign(ctx, campaign(id, 10, 100)); err != nil {
			t.Fatal(err)
		}
		if err := handle(mq.EntityCampaign, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.store.PutUser(ctx, "u", domain.UserPut{RegisteredAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.store.CreditPoints(ctx, "u", domain.PointsCredit{Delta: 100, RequestID: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := handle(mq.EntityUser, "u", 2); err != nil {
		t.Fatal(err)
	}
	claim := func(campaignID, request string) rediscache.ClaimOutcome {
		out, err := f.cache.Claim(ctx, rediscache.ClaimInput{UserID: "u", CampaignID: campaignID, RequestID: request, Now: now, By: domain.ByClaim})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := claim("p1", "r1"); out.Code != "" {
		t.Fatalf("first paid claim: %+v", out)
	}
	// The user's entry is evicted before the ledger records the debit; the operator credits 1 point.
	if err := f.rdb.Del(ctx, "bn:{u:u}:user").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.store.CreditPoints(ctx, "u", domain.PointsCredit{Delta: 1, RequestID: "b"}); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.store.User(ctx, "u")
	if err := handle(mq.EntityUser, "u", rec.User.Version); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.cache.User(ctx, "u"); u.Balance != 1 {
		t.Fatalf("balance after the rebuild = %d, want 1 (101 credited, 100 debited in flight)", u.Balance)
	}
	if out := claim("p2", "r2"); out.Code != domain.CodeInsufficientPoints {
		t.Fatalf("second paid claim = %+v, want insufficient_points", out)
	}
}
