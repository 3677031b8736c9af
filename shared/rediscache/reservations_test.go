package rediscache

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// The reconciler joins reservations to the stream and MySQL by claim id (shared/timer/reconcile.go):
// every bucket's are listed with their bucket, and those released since are not kept.
func TestReservationsListEveryBucketsAndKeptDropsTheReleased(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprint(n, "buckets"), func(t *testing.T) {
			c, _, _ := newReviewCache(t)
			ctx := context.Background()
			camp := bucketed("pts", 10, 1, n)
			camp.CostPoints = 10
			apply(t, c, camp)
			var want []Reservation
			for b := 0; b < n; b++ {
				u := usersHomedIn(b, n, 1, "p")[0]
				credit(t, c, u, 100, 1)
				// The claim reserves a unit and its invocation dies before the debit.
				ck := keysOfBucket("pts", b)
				if _, err := c.scripts.claim.Run(ctx, c.rdb, []string{ck.camp, ck.held, ck.claims, ck.grants, ck.pending, c.markers.of(ck.camp)},
					append(claimArgs(u, "r", "dead"), 100)...).Result(); err != nil {
					t.Fatal(err)
				}
				want = append(want, Reservation{ClaimID: domain.ClaimID(u, "r"), Bucket: b})
			}
			got, err := c.Reservations(ctx, "pts")
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("reservations %+v %v, want %+v", got, err, want)
			}
			if kept, err := c.Kept(ctx, "pts", got); err != nil || !slices.Equal(kept, want) {
				t.Fatalf("kept before the sweep %+v %v, want all %+v", kept, err, want)
			}
			// The first is granted (its debit went through); the sweep releases the others.
			u0 := usersHomedIn(0, n, 1, "p")[0]
			if _, err := c.confirm(ctx, domain.Claim{ID: domain.ClaimID(u0, "r"), CampaignID: "pts", UserID: u0}, false); err != nil {
				t.Fatal(err)
			}
			if sw, err := c.SweepPending(ctx, "pts", time.Second, now.Add(time.Minute)); err != nil || sw.Released != n-1 {
				t.Fatalf("sweep %+v %v, want %d released", sw, err, n-1)
			}
			if kept, err := c.Kept(ctx, "pts", got); err != nil || !slices.Equal(kept, want[:1]) {
				t.Fatalf("kept after one was granted and the rest released: %+v %v, want %+v", kept, err, want[:1])
			}
		})
	}
}
