package mysqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/benefit-issuance/benefits/shared/domain"
)

// RecordClaims writes a wholly new batch with multi-row INSERTs; when some claims are recorded it
// writes the rest together, and one by one when even that meets a row it did not expect. Whichever
// path, each new claim counts once in issued and debited.
func TestRecordClaimsBatchPaths(t *testing.T) {
	grants := func(prefix string, from, to int, cost int64) []domain.Claim {
		var out []domain.Claim
		for i := from; i < to; i++ {
			out = append(out, grant(fmt.Sprintf("%s_%05d", prefix, i), "cmp", "u", cost, t0.Add(time.Duration(i)*time.Millisecond)))
			out[len(out)-1].UserID = "u"
			out[len(out)-1].RequestID = fmt.Sprintf("req-%s-%d", prefix, i)
		}
		return out
	}
	cases := []struct {
		name         string
		before       []domain.Claim // recorded first
		batch        []domain.Claim
		wantInserted int
		wantDups     int
		wantIssued   int64 // after both
		wantDebited  int64
		debitBefore  string // a claim whose debit entry (of 2 points) exists while the claim does not
		wantEntries  int64  // the debit entries' sum, when not wantDebited
	}{
		{name: "all new, one INSERT", batch: grants("a", 0, 10, 0), wantInserted: 10, wantIssued: 10},
		{name: "all new, more rows than one INSERT takes", batch: grants("b", 0, claimRowsPerInsert+7, 1),
			wantInserted: claimRowsPerInsert + 7, wantIssued: claimRowsPerInsert + 7, wantDebited: claimRowsPerInsert + 7},
		{name: "duplicates inside the batch", batch: append(grants("c", 0, 5, 2), grants("c", 1, 3, 2)...),
			wantInserted: 5, wantDups: 2, wantIssued: 5, wantDebited: 10},
		{name: "some recorded before: one by one", before: grants("d", 3, 6, 2), batch: grants("d", 0, 10, 2),
			wantInserted: 7, wantDups: 3, wantIssued: 10, wantDebited: 20},
		{name: "all recorded before", before: grants("e", 0, 4, 0), batch: grants("e", 0, 4, 0),
			wantDups: 4, wantIssued: 4},
		{name: "last of a long batch recorded before", before: grants("f", claimRowsPerInsert+1, claimRowsPerInsert+2, 1),
			batch: grants("f", 0, claimRowsPerInsert+2, 1), wantInserted: claimRowsPerInsert + 1, wantDups: 1,
			wantIssued: claimRowsPerInsert + 2, wantDebited: claimRowsPerInsert + 2},
		{name: "a debit recorded without its claim: one by one", batch: grants("g", 0, 3, 2), debitBefore: "g_00001",
			wantInserted: 3, wantIssued: 3, wantDebited: 4, wantEntries: 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := open(t)
			ctx := context.Background()
			if _, _, err := s.CreateCampaign(ctx, newCampaign("cmp")); err != nil {
				t.Fatal(err)
			}
			s.PutUser(ctx, "u", domain.UserPut{RegisteredAt: t0})
			if tc.debitBefore != "" {
				if _, err := s.db.Exec("INSERT INTO points_entries (user_id, kind, ref, amount) VALUES ('u', 'debit', ?, 2)", tc.debitBefore); err != nil {
					t.Fatal(err)
				}
			}
			if len(tc.before) > 0 {
				if _, err := s.RecordClaims(ctx, tc.before); err != nil {
					t.Fatal(err)
				}
			}
			res, err := s.RecordClaims(ctx, tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			if res.Inserted != tc.wantInserted || res.Duplicates != tc.wantDups {
				t.Fatalf("inserted %d duplicates %d, want %d and %d", res.Inserted, res.Duplicates, tc.wantInserted, tc.wantDups)
			}
			rec, err := s.Campaign(ctx, "cmp")
			if err != nil {
				t.Fatal(err)
			}
			user, err := s.User(ctx, "u")
			if err != nil {
				t.Fatal(err)
			}
			if rec.Issued != tc.wantIssued || user.Debited != tc.wantDebited {
				t.Fatalf("issued %d debited %d, want %d and %d", rec.Issued, user.Debited, tc.wantIssued, tc.wantDebited)
			}
			if n := count(t, s, "SELECT COUNT(*) FROM claims WHERE campaign_id = 'cmp'"); n != tc.wantIssued {
				t.Fatalf("%d claim rows, want %d", n, tc.wantIssued)
			}
			wantEntries := tc.wantDebited
			if tc.wantEntries != 0 {
				wantEntries = tc.wantEntries
			}
			if n := count(t, s, "SELECT COALESCE(SUM(amount), 0) FROM points_entries WHERE kind = 'debit'"); n != wantEntries {
				t.Fatalf("debit entries sum to %d, want %d", n, wantEntries)
			}
		})
	}
}
