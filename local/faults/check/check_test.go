package check

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func rule(version, stock, limit int64, status string) *Rule {
	return &Rule{Version: version, Mode: "claim", Stock: stock, PerUserLimit: limit, Status: status,
		StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour)}
}

func bucketed(r *Rule, n int) *Rule {
	r.Buckets = n
	return r
}

func paid(version, stock int64) *Rule {
	r := rule(version, stock, 1, "active")
	r.CostPoints = 30
	return r
}

func claimID(user, req string) string { return "c-" + user + "-" + req }

// homeBucket puts user uN in bucket N mod n.
func homeBucket(user string, n int) int { return int(user[len(user)-1]-'0') % n }

func create(r *Rule) Op {
	return Op{Kind: OpPatch, Campaign: "A", Call: at(0), Return: at(1), Status: 201, Outcome: Applied, Rule: r, InSync: true}
}

func claim(client, call, ret int, user, req string, out Outcome, code string) Op {
	op := Op{Client: client, Kind: OpClaim, Campaign: "A", User: user, Request: req, Call: at(call), Return: at(ret), Outcome: out, Code: code}
	switch out {
	case Granted:
		op.Status, op.ClaimID = 201, claimID(user, req)
	case Replayed:
		op.Status, op.ClaimID = 200, claimID(user, req)
	case Refused:
		op.Status = 409
	case Unknown:
		op.Status = 503
	}
	return op
}

func patch(call, ret int, r *Rule, inSync bool) Op {
	return Op{Kind: OpPatch, Campaign: "A", Call: at(call), Return: at(ret), Status: 200, Outcome: Applied, Rule: r, InSync: inSync}
}

func row(id, user, req string, cost int64) ClaimRow {
	return ClaimRow{ID: id, Campaign: "A", User: user, Request: req, CostPoints: cost, GrantedAt: at(5)}
}

// consistent builds the snapshot that an honest system leaves for a history: every granted claim
// recorded, the cache equal to MySQL.
func consistent(final *Rule, claims ...ClaimRow) Snapshot {
	s := Snapshot{Campaigns: map[string]CampaignRow{"A": {ID: "A", Rule: *final, Issued: int64(len(claims))}},
		Claims: claims, Users: map[string]UserRow{}, Cache: map[string]CacheRow{}}
	s.Cache["A"] = CacheRow{Present: true, Version: final.Version, Issued: int64(len(claims)), Remaining: max(0, final.Stock-int64(len(claims)))}
	return s
}

func TestCheck(t *testing.T) {
	r1 := rule(1, 2, 1, "active")
	cases := []struct {
		name string
		h    []Op
		s    func() Snapshot
		want string // the invariant that must be reported; "" for none
		// losses are the run's cache losses, as the injector saw them.
		losses []Span
	}{
		{
			name: "honest run with a replay and a sold-out",
			h: []Op{create(r1),
				claim(1, 10, 20, "u1", "r1", Granted, ""), claim(2, 10, 20, "u2", "r1", Granted, ""),
				claim(1, 30, 40, "u1", "r1", Replayed, ""), claim(3, 30, 40, "u3", "r1", Refused, "sold_out")},
			s: func() Snapshot {
				return consistent(r1, row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: "",
		},
		{
			name: "acknowledged claim missing from MySQL",
			h:    []Op{create(r1), claim(1, 10, 20, "u1", "r1", Granted, "")},
			s:    func() Snapshot { s := consistent(r1); return s },
			want: AckRecorded,
		},
		{
			name: "a replay told a different claim",
			h: []Op{create(r1), claim(1, 10, 20, "u1", "r1", Granted, ""),
				func() Op { o := claim(1, 30, 40, "u1", "r1", Replayed, ""); o.ClaimID = "other"; return o }()},
			s:    func() Snapshot { return consistent(r1, row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want: SameAnswer,
		},
		{
			name: "a retry answered 201 after a 200",
			h: []Op{create(r1), claim(1, 10, 20, "u1", "r1", Unknown, ""), claim(1, 30, 40, "u1", "r1", Replayed, ""),
				claim(1, 50, 60, "u1", "r1", Granted, "")},
			s:    func() Snapshot { return consistent(r1, row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want: SameAnswer,
		},
		{
			name: "a claim nobody asked for",
			h:    []Op{create(r1)},
			s:    func() Snapshot { return consistent(r1, row("ghost", "u9", "r9", 0)) },
			want: PhantomClaim,
		},
		{
			name: "more claims than stock ever allowed",
			h: []Op{create(rule(1, 1, 5, "active")),
				claim(1, 10, 20, "u1", "r1", Granted, ""), claim(2, 10, 20, "u2", "r1", Unknown, "")},
			s: func() Snapshot {
				return consistent(rule(1, 1, 5, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: StockBound,
		},
		{
			name: "a user over the per-user limit",
			h:    []Op{create(r1), claim(1, 10, 20, "u1", "r1", Unknown, ""), claim(1, 30, 40, "u1", "r2", Unknown, "")},
			s: func() Snapshot {
				return consistent(r1, row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u1", "r2"), "u1", "r2", 0))
			},
			want: UserLimit,
		},
		{
			name: "granted outside the window",
			h:    []Op{create(r1), claim(1, 10, 20, "u1", "r1", Granted, "")},
			s: func() Snapshot {
				c := row(claimID("u1", "r1"), "u1", "r1", 0)
				c.GrantedAt = r1.EndsAt.Add(time.Second)
				return consistent(r1, c)
			},
			want: Window,
		},
		{
			name: "cache behind MySQL",
			h:    []Op{create(r1), patch(10, 20, rule(2, 5, 1, "active"), false)},
			s: func() Snapshot {
				s := consistent(rule(2, 5, 1, "active"))
				s.Cache["A"] = CacheRow{Present: true, Version: 1, Remaining: 2}
				return s
			},
			want: CacheEqualsDB,
		},
		{
			name: "cache lost the campaign",
			h:    []Op{create(r1)},
			s:    func() Snapshot { s := consistent(r1); delete(s.Cache, "A"); return s },
			want: CacheEqualsDB,
		},
		{
			name: "sold out while stock was left (not linearizable)",
			h: []Op{create(r1), claim(1, 10, 20, "u1", "r1", Granted, ""),
				claim(2, 30, 40, "u2", "r1", Refused, "sold_out")},
			s:    func() Snapshot { return consistent(r1, row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want: Linearizable,
		},
		{
			name: "granted after the stock was lowered and applied (not linearizable)",
			h: []Op{create(rule(1, 100, 5, "active")), claim(1, 10, 20, "u1", "r1", Granted, ""),
				patch(30, 40, rule(2, 1, 5, "active"), true), claim(2, 50, 60, "u2", "r1", Granted, "")},
			s: func() Snapshot {
				return consistent(rule(2, 1, 5, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "granted while paused (not linearizable)",
			h: []Op{create(rule(1, 100, 5, "active")), patch(10, 20, rule(2, 100, 5, "paused"), true),
				claim(2, 30, 40, "u2", "r1", Granted, "")},
			s: func() Snapshot {
				return consistent(rule(2, 100, 5, "paused"), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "a stock lowered without in_sync may still be applied late",
			h: []Op{create(rule(1, 100, 5, "active")), patch(10, 20, rule(2, 1, 5, "active"), false),
				claim(1, 30, 40, "u1", "r1", Granted, ""), claim(2, 50, 60, "u2", "r1", Granted, ""),
				claim(3, 70, 80, "u3", "r1", Refused, "sold_out")},
			s: func() Snapshot {
				return consistent(rule(2, 1, 5, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: "",
		},
		{
			name: "limit_reached though the user held nothing (not linearizable)",
			h:    []Op{create(r1), claim(1, 10, 20, "u1", "r1", Refused, "limit_reached")},
			s:    func() Snapshot { return consistent(r1) },
			want: Linearizable,
		},
		{
			name: "a paid campaign's sold_out during another claim's reservation is excused",
			h: []Op{create(paid(1, 1)), claim(1, 10, 30, "u1", "r1", Refused, "insufficient_points"),
				claim(2, 20, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			s:    func() Snapshot { return consistent(paid(1, 1), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want: "",
		},
		{
			name: "a paid campaign's sold_out with no reservation in flight is not",
			h: []Op{create(paid(1, 1)), claim(1, 10, 15, "u1", "r1", Refused, "insufficient_points"),
				claim(2, 20, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			s:    func() Snapshot { return consistent(paid(1, 1), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want: Linearizable,
		},
		{
			name: "a bucketed campaign's sold_out while units sat in another bucket is excused",
			h: []Op{create(bucketed(rule(1, 2, 1, "active"), 4)), claim(1, 10, 20, "u1", "r1", Refused, "sold_out"),
				claim(2, 30, 40, "u2", "r1", Granted, "")},
			s: func() Snapshot {
				return consistent(bucketed(rule(1, 2, 1, "active"), 4), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: "",
		},
		{
			name: "the same sold_out on a campaign of one bucket is not",
			h: []Op{create(rule(1, 2, 1, "active")), claim(1, 10, 20, "u1", "r1", Refused, "sold_out"),
				claim(2, 30, 40, "u2", "r1", Granted, "")},
			s:    func() Snapshot { return consistent(rule(1, 2, 1, "active"), row(claimID("u2", "r1"), "u2", "r1", 0)) },
			want: Linearizable,
		},
		{
			name: "a bucketed campaign granting beyond its stock is still caught",
			h: []Op{create(bucketed(rule(1, 1, 1, "active"), 4)), claim(1, 10, 20, "u1", "r1", Granted, ""),
				claim(2, 30, 40, "u2", "r1", Granted, "")},
			s: func() Snapshot {
				return consistent(bucketed(rule(1, 1, 1, "active"), 4), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: StockBound,
		},
		{
			name: "a sold_out while a claim lost with the cache held the last unit is explained",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   "",
		},
		{
			name: "the same answers with no cache loss are not linearizable",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			s:    func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want: Linearizable,
		},
		{
			name: "a cache loss that ended before the lost claim began explains nothing",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(2), To: at(8)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   Linearizable,
		},
		{
			name: "a sold_out after the loss took the lost claim's unit back is not",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 40, 45, "u2", "r1", Refused, "sold_out")},
			losses: []Span{{From: at(26), To: at(35)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active")) },
			want:   Linearizable,
		},
		{
			name: "a limit_reached while the user's lost claim held the limit is explained",
			h: []Op{create(rule(1, 5, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(1, 22, 25, "u1", "r2", Refused, "limit_reached"), claim(1, 40, 50, "u1", "r3", Granted, "")},
			losses: []Span{{From: at(26), To: at(35)}},
			s:      func() Snapshot { return consistent(rule(1, 5, 1, "active"), row(claimID("u1", "r3"), "u1", "r3", 0)) },
			want:   "",
		},
		{
			name: "a loss of another campaign's data explains nothing",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35), Buckets: map[string][]int{"B": {0}}}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   Linearizable,
		},
		{
			name: "a loss naming the campaign explains it",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 50, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35), Buckets: map[string][]int{"B": {0}, "A": {0}}}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   "",
		},
		{
			name: "a grant kept in Redis alone until a much later loss explains the refusals before it",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 100, 110, "u2", "r1", Refused, "sold_out"), claim(3, 500, 510, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(400), To: at(410)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   "",
		},
		{
			name: "a grant before the loss began is not explained by the lost claim's unit",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 21, 22, "u2", "r1", Refused, "sold_out"), claim(3, 23, 24, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   Linearizable,
		},
		{
			name: "a unit still held after the first of two losses comes back only at the second",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 27, 29, "u2", "r1", Refused, "sold_out"), claim(3, 40, 45, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(22), To: at(25)}, {From: at(60), To: at(70)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   Linearizable,
		},
		{
			name: "a retry answered 201 after its first attempt was lost with the cache",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(1, 40, 50, "u1", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want:   "",
		},
		{
			name: "several lost attempts of one request hold one unit",
			h: []Op{create(rule(1, 2, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""), claim(1, 21, 24, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Granted, ""), claim(3, 23, 25, "u3", "r1", Refused, "sold_out"),
				claim(4, 40, 50, "u4", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35)}},
			s: func() Snapshot {
				return consistent(rule(1, 2, 1, "active"), row(claimID("u2", "r1"), "u2", "r1", 0), row(claimID("u4", "r1"), "u4", "r1", 0))
			},
			want: "",
		},
		{
			name: "a loss never frees a unit a client was told about",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 100, "u1", "r1", Unknown, ""),
				claim(2, 20, 30, "u1", "r1", Granted, ""), claim(3, 60, 70, "u2", "r1", Granted, "")},
			losses: []Span{{From: at(40), To: at(50)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u2", "r1"), "u2", "r1", 0)) },
			want:   Linearizable,
		},
		{
			name: "a 200 makes a possibly lost grant durable: no loss frees its unit",
			// The second lost attempt, still running after the loss, could re-make the grant, so the
			// loss may take the first attempt's back: unless the 200 made it durable.
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(3, 21, 50, "u1", "r1", Unknown, ""), claim(1, 22, 24, "u1", "r1", Replayed, ""),
				claim(2, 40, 45, "u2", "r1", Granted, "")},
			losses: []Span{{From: at(26), To: at(35)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want:   Linearizable,
		},
		{
			name: "a loss before the last may spare the grant (a master kill keeps what its replica had)",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 40, 45, "u2", "r1", Refused, "sold_out"), claim(3, 80, 85, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(35), To: at(36)}, {From: at(60), To: at(70)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   "",
		},
		{
			name: "a grant made between two losses, listed out of order, is taken back by the second",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 30, "u1", "r1", Unknown, ""),
				claim(2, 20, 22, "u2", "r1", Refused, "sold_out"), claim(3, 60, 65, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(50), To: at(55)}, {From: at(12), To: at(14)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   "",
		},
		{
			name: "a grant taken back by the first of two losses frees its unit then",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 21, 22, "u2", "r1", Refused, "sold_out"), claim(3, 35, 40, "u3", "r1", Granted, "")},
			losses: []Span{{From: at(25), To: at(30)}, {From: at(60), To: at(70)}},
			s:      func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0)) },
			want:   "",
		},
		{
			name: "a retry granted and recorded after its first attempt was lost with the cache",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 45, "u3", "r1", Granted, ""),
				patch(46, 48, rule(2, 2, 1, "active"), true), claim(1, 50, 60, "u1", "r1", Unknown, "")},
			losses: []Span{{From: at(30), To: at(35)}},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u3", "r1"), "u3", "r1", 0), row(claimID("u1", "r1"), "u1", "r1", 0))
			},
			want: "",
		},
		{
			name: "a recorded grant that no other attempt could have made again is not taken back",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 22, 25, "u2", "r1", Refused, "sold_out"), claim(3, 40, 45, "u3", "r1", Granted, ""),
				patch(50, 55, rule(2, 2, 1, "active"), true)},
			losses: []Span{{From: at(26), To: at(35)}},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u3", "r1"), "u3", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "a request recorded on another campaign is no grant on this one",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 5000, 5010, "u2", "r1", Refused, "sold_out")},
			s: func() Snapshot {
				s := consistent(rule(1, 1, 1, "active"))
				c := row(claimID("u1", "r1"), "u1", "r1", 0)
				c.Campaign = "B"
				s.Claims = append(s.Claims, c)
				return s
			},
			want: Linearizable,
		},
		{
			name: "a loss of another bucket explains nothing of the user's home bucket",
			h: []Op{create(bucketed(rule(1, 8, 1, "active"), 4)), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(1, 22, 25, "u1", "r2", Refused, "limit_reached")},
			losses: []Span{{From: at(26), To: at(35), Buckets: map[string][]int{"A": {0, 2, 3}}}},
			s:      func() Snapshot { return consistent(bucketed(rule(1, 8, 1, "active"), 4)) },
			want:   Linearizable,
		},
		{
			name: "a loss of the user's home bucket explains it",
			h: []Op{create(bucketed(rule(1, 8, 1, "active"), 4)), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(1, 22, 25, "u1", "r2", Refused, "limit_reached")},
			losses: []Span{{From: at(26), To: at(35), Buckets: map[string][]int{"A": {1}}}},
			s:      func() Snapshot { return consistent(bucketed(rule(1, 8, 1, "active"), 4)) },
			want:   "",
		},
		{
			name: "a lost answer MySQL records took its unit: another claim granted before the stock was raised oversold",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(2, 40, 45, "u2", "r1", Granted, ""), patch(50, 55, rule(2, 2, 1, "active"), true)},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "the same claims with the other grant after the raise are fine",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				patch(30, 35, rule(2, 2, 1, "active"), true), claim(2, 40, 45, "u2", "r1", Granted, "")},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: "",
		},
		{
			name: "a lost first attempt that took nothing, its retry granted long after",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(1, 100, 110, "u1", "r1", Granted, ""), claim(2, 120, 125, "u2", "r1", Refused, "sold_out")},
			s:    func() Snapshot { return consistent(rule(1, 1, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want: "",
		},
		{
			name: "a lost answer MySQL records, taken back by a loss and never made again, is caught",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(1, 40, 45, "u1", "r1", Unknown, ""), claim(2, 60, 65, "u2", "r1", Granted, ""),
				patch(70, 75, rule(2, 2, 1, "active"), true)},
			losses: []Span{{From: at(30), To: at(35)}},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "a request answered only with a refusal that MySQL records as granted",
			h: []Op{create(rule(1, 1, 1, "active")), claim(1, 10, 20, "u1", "r1", Refused, "rate_limited"),
				claim(2, 40, 45, "u2", "r1", Granted, ""), patch(50, 55, rule(2, 2, 1, "active"), true)},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0), row(claimID("u2", "r1"), "u2", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "a request answered sold_out that MySQL records as granted",
			h: []Op{create(rule(1, 1, 1, "active")), claim(2, 5, 8, "u2", "r1", Granted, ""),
				claim(1, 10, 20, "u1", "r1", Refused, "sold_out"), patch(50, 55, rule(2, 2, 1, "active"), true)},
			s: func() Snapshot {
				return consistent(rule(2, 2, 1, "active"), row(claimID("u2", "r1"), "u2", "r1", 0), row(claimID("u1", "r1"), "u1", "r1", 0))
			},
			want: Linearizable,
		},
		{
			name: "a claim recorded on a campaign its request was never sent to",
			h: []Op{create(rule(1, 5, 1, "active")), func() Op {
				op := claim(1, 10, 20, "u1", "r1", Unknown, "")
				op.Campaign = "B"
				return op
			}()},
			s:    func() Snapshot { return consistent(rule(1, 5, 1, "active"), row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want: PhantomClaim,
		},
		{
			name: "lost answer then replay is fine",
			h: []Op{create(r1), claim(1, 10, 20, "u1", "r1", Unknown, ""),
				claim(1, 30, 40, "u1", "r1", Replayed, "")},
			s:    func() Snapshot { return consistent(r1, row(claimID("u1", "r1"), "u1", "r1", 0)) },
			want: "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Check(History{Ops: tc.h, ClaimID: claimID, Settle: 10 * time.Millisecond, CacheLosses: tc.losses, HomeBucket: homeBucket}, tc.s(), 5*time.Second)
			if tc.want == "" {
				if len(v) != 0 {
					t.Fatalf("violations in an honest history: %v", v)
				}
				return
			}
			found := false
			for _, x := range v {
				if x.Invariant == tc.want {
					found = true
				}
			}
			if !found {
				t.Fatalf("want %s reported, got %v", tc.want, v)
			}
		})
	}
}

func TestPoints(t *testing.T) {
	credit := Op{Kind: OpCredit, User: "u1", Request: "cr1", Delta: 100, Outcome: Applied, Status: 200}
	paid := ClaimRow{ID: "c1", Campaign: "A", User: "u1", Request: "r1", CostPoints: 30}
	honest := func() Snapshot {
		return Snapshot{
			Users:  map[string]UserRow{"u1": {ID: "u1", Credited: 100, Debited: 30}},
			Points: []PointsEntry{{User: "u1", Kind: "credit", Ref: "cr1", Amount: 100}, {User: "u1", Kind: "debit", Ref: "c1", Amount: 30}},
			Claims: []ClaimRow{paid},
		}
	}
	cases := []struct {
		name   string
		doctor func(*Snapshot)
		want   string
	}{
		{"honest", func(*Snapshot) {}, ""},
		{"credit applied twice", func(s *Snapshot) {
			s.Points = append(s.Points, PointsEntry{User: "u1", Kind: "credit", Ref: "cr1", Amount: 100})
			s.Users["u1"] = UserRow{ID: "u1", Credited: 200, Debited: 30}
		}, PointsOnce},
		{"acknowledged credit lost", func(s *Snapshot) {
			s.Points = s.Points[1:]
			s.Users["u1"] = UserRow{ID: "u1", Credited: 0, Debited: 30}
		}, PointsOnce},
		{"negative balance", func(s *Snapshot) {
			s.Points[1].Amount = 300
			s.Claims[0].CostPoints = 300
			s.Users["u1"] = UserRow{ID: "u1", Credited: 100, Debited: 300}
		}, PointsBalance},
		{"paid claim never debited", func(s *Snapshot) {
			s.Points = s.Points[:1]
			s.Users["u1"] = UserRow{ID: "u1", Credited: 100}
		}, PointsBalance},
		{"debit without a claim", func(s *Snapshot) { s.Claims = nil }, PointsBalance},
		{"totals disagree with entries", func(s *Snapshot) { s.Users["u1"] = UserRow{ID: "u1", Credited: 100, Debited: 0} }, PointsBalance},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := honest()
			tc.doctor(&s)
			v := Points(History{Ops: []Op{credit}}, s)
			if tc.want == "" && len(v) != 0 {
				t.Fatalf("violations in an honest snapshot: %v", v)
			}
			if tc.want == "" {
				return
			}
			for _, x := range v {
				if x.Invariant == tc.want {
					return
				}
			}
			t.Fatalf("want %s, got %v", tc.want, v)
		})
	}
}
