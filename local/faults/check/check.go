package check

import (
	"fmt"
	"sort"
	"time"
)

// Invariant names, as reports and tests refer to them.
const (
	AckRecorded     = "acknowledged_claim_recorded_once"
	SameAnswer      = "request_id_same_claim"
	PhantomClaim    = "claim_without_request"
	StockBound      = "issued_within_stock"
	UserLimit       = "per_user_limit"
	Window          = "granted_inside_window"
	PointsBalance   = "points_credits_minus_debits"
	PointsOnce      = "points_credit_once"
	CacheEqualsDB   = "cache_equals_database"
	Linearizable    = "claims_linearizable"
	LinearizableTBD = "claims_linearizability_inconclusive"
)

// Check runs every invariant over a history and the final snapshot. Linearizability is checked per
// campaign with porcupine within budget; a check that runs out of budget is reported under
// LinearizableTBD, which callers count apart from violations.
func Check(h History, s Snapshot, budget time.Duration) []Violation {
	var v []Violation
	v = append(v, Acknowledged(h, s)...)
	v = append(v, Stock(h, s)...)
	v = append(v, Points(h, s)...)
	v = append(v, CacheEqual(s)...)
	v = append(v, Linearize(h, s, budget)...)
	return v
}

func violation(inv, format string, args ...any) Violation {
	return Violation{Invariant: inv, Detail: fmt.Sprintf(format, args...)}
}

type userReq struct{ user, req string }

// Acknowledged: every claim a client was told about (201 or 200) is in MySQL exactly once, with the
// claim id it was told; every answer for one (user, request_id) names the same claim, and only the
// first can be a 201; and MySQL holds no claim of a claim-mode campaign that no request to it asked for.
func Acknowledged(h History, s Snapshot) []Violation {
	var out []Violation
	byID := map[string][]ClaimRow{}
	byReq := map[userReq][]ClaimRow{}
	for _, c := range s.Claims {
		byID[c.ID] = append(byID[c.ID], c)
		byReq[userReq{c.User, c.Request}] = append(byReq[userReq{c.User, c.Request}], c)
	}
	told := map[userReq]string{}
	var granted = map[userReq][]Op{}
	asked := map[campaignReq]bool{}
	for _, op := range h.Ops {
		if op.Kind != OpClaim {
			continue
		}
		k := userReq{op.User, op.Request}
		asked[campaignReq{op.Campaign, op.User, op.Request}] = true
		if op.Outcome != Granted && op.Outcome != Replayed {
			continue
		}
		if prev, ok := told[k]; ok && prev != op.ClaimID {
			out = append(out, violation(SameAnswer, "user %s request %s was told claim %s and claim %s", op.User, op.Request, prev, op.ClaimID))
		}
		told[k] = op.ClaimID
		if op.Outcome == Granted {
			granted[k] = append(granted[k], op)
		}
		rows := byID[op.ClaimID]
		switch {
		case len(rows) == 0:
			out = append(out, violation(AckRecorded, "claim %s (user %s, request %s, campaign %s) was answered %d at %s but is not in MySQL",
				op.ClaimID, op.User, op.Request, op.Campaign, op.Status, op.Return.Format(time.RFC3339Nano)))
		case len(rows) > 1:
			out = append(out, violation(AckRecorded, "claim %s is in MySQL %d times", op.ClaimID, len(rows)))
		case rows[0].User != op.User || rows[0].Request != op.Request:
			out = append(out, violation(AckRecorded, "claim %s was told to user %s request %s but MySQL records user %s request %s",
				op.ClaimID, op.User, op.Request, rows[0].User, rows[0].Request))
		}
	}
	for k, rows := range byReq {
		if len(rows) > 1 {
			out = append(out, violation(SameAnswer, "user %s request %s has %d claims in MySQL", k.user, k.req, len(rows)))
		}
	}
	for k, ops := range granted {
		if len(ops) > 1 {
			out = append(out, violation(SameAnswer, "user %s request %s was answered 201 %d times", k.user, k.req, len(ops)))
		}
		// A 201 that began after another answer for the same request had already named the claim is a
		// replay reported as new.
		for _, g := range ops {
			for _, op := range h.Ops {
				if op.Kind == OpClaim && op.User == k.user && op.Request == k.req && op.Outcome == Replayed && op.Return.Before(g.Call) {
					out = append(out, violation(SameAnswer, "user %s request %s was answered 201 after a 200 had named the claim", k.user, k.req))
				}
			}
		}
	}
	claimMode := map[string]bool{}
	for id, c := range s.Campaigns {
		claimMode[id] = c.Mode != "grant"
	}
	for _, c := range s.Claims {
		// A request sent to one campaign may be answered with its claim on another (the one it was
		// first bound to), but that claim was made by a request sent there.
		if claimMode[c.Campaign] && !asked[campaignReq{c.Campaign, c.User, c.Request}] {
			out = append(out, violation(PhantomClaim, "MySQL records claim %s (user %s, request %s) on campaign %s, where no client asked for it", c.ID, c.User, c.Request, c.Campaign))
		}
	}
	return out
}

// rulesOf lists each campaign's committed rules by version: the creation and every patch that
// committed, plus the final row.
func rulesOf(h History, s Snapshot) map[string][]Rule {
	seen := map[string]map[int64]Rule{}
	add := func(id string, r Rule) {
		if seen[id] == nil {
			seen[id] = map[int64]Rule{}
		}
		seen[id][r.Version] = r
	}
	for _, op := range h.Ops {
		if op.Kind == OpPatch && op.Rule != nil && op.Outcome == Applied {
			add(op.Campaign, *op.Rule)
		}
	}
	for id, c := range s.Campaigns {
		add(id, c.Rule)
	}
	out := map[string][]Rule{}
	for id, m := range seen {
		for _, r := range m {
			out[id] = append(out[id], r)
		}
		sort.Slice(out[id], func(i, j int) bool { return out[id][i].Version < out[id][j].Version })
	}
	return out
}

// Stock: a campaign's recorded claims never exceed the largest stock it ever had nor MySQL's own
// issued count, no user holds more than the largest per-user limit, and every claim was granted
// inside a window the campaign had. (The exact rule, stock at the moment of each grant, is what
// Linearize checks.)
func Stock(h History, s Snapshot) []Violation {
	var out []Violation
	rules := rulesOf(h, s)
	count := map[string]int64{}
	held := map[string]map[string]int64{}
	for _, c := range s.Claims {
		count[c.Campaign]++
		if held[c.Campaign] == nil {
			held[c.Campaign] = map[string]int64{}
		}
		held[c.Campaign][c.User]++
	}
	for id, rs := range rules {
		var maxStock, maxLimit int64
		for _, r := range rs {
			maxStock = max(maxStock, r.Stock)
			maxLimit = max(maxLimit, r.PerUserLimit)
		}
		if count[id] > maxStock {
			out = append(out, violation(StockBound, "campaign %s has %d claims in MySQL; its stock was never above %d", id, count[id], maxStock))
		}
		if row, ok := s.Campaigns[id]; ok && row.Issued != count[id] {
			out = append(out, violation(StockBound, "campaign %s counts %d issued but MySQL holds %d claims", id, row.Issued, count[id]))
		}
		for user, n := range held[id] {
			if n > maxLimit {
				out = append(out, violation(UserLimit, "user %s holds %d units of campaign %s; its limit was never above %d", user, n, id, maxLimit))
			}
		}
	}
	for _, c := range s.Claims {
		inside := false
		for _, r := range rules[c.Campaign] {
			if !c.GrantedAt.Before(r.StartsAt.Truncate(time.Millisecond)) && c.GrantedAt.Before(r.EndsAt.Add(time.Millisecond)) {
				inside = true
			}
		}
		if !inside && len(rules[c.Campaign]) > 0 {
			out = append(out, violation(Window, "claim %s of campaign %s was granted at %s, outside every window the campaign had",
				c.ID, c.Campaign, c.GrantedAt.Format(time.RFC3339Nano)))
		}
	}
	return out
}

// Points: per user, the totals equal the entries, the balance is never negative, every paid claim
// debited its cost exactly once and nothing else was debited, and every credit an operator was told
// about was applied exactly once with its amount.
func Points(h History, s Snapshot) []Violation {
	var out []Violation
	credits := map[string]int64{}
	debits := map[string]int64{}
	entries := map[[3]string][]PointsEntry{}
	for _, e := range s.Points {
		switch e.Kind {
		case "credit":
			credits[e.User] += e.Amount
		case "debit":
			debits[e.User] += e.Amount
		}
		k := [3]string{e.User, e.Kind, e.Ref}
		entries[k] = append(entries[k], e)
	}
	for id, u := range s.Users {
		if u.Credited != credits[id] || u.Debited != debits[id] {
			out = append(out, violation(PointsBalance, "user %s: totals credited %d debited %d, entries say %d and %d", id, u.Credited, u.Debited, credits[id], debits[id]))
		}
		if u.Credited < u.Debited {
			out = append(out, violation(PointsBalance, "user %s balance is negative: credited %d, debited %d", id, u.Credited, u.Debited))
		}
	}
	paid := map[string]bool{}
	for _, c := range s.Claims {
		if c.CostPoints <= 0 {
			continue
		}
		paid[c.ID] = true
		es := entries[[3]string{c.User, "debit", c.ID}]
		if len(es) != 1 || es[0].Amount != c.CostPoints {
			out = append(out, violation(PointsBalance, "claim %s of user %s cost %d points but has debit entries %v", c.ID, c.User, c.CostPoints, es))
		}
	}
	for _, e := range s.Points {
		if e.Kind == "debit" && !paid[e.Ref] {
			out = append(out, violation(PointsBalance, "user %s was debited %d points for %s, which is no recorded paid claim", e.User, e.Amount, e.Ref))
		}
	}
	for _, op := range h.Ops {
		if op.Kind != OpCredit || op.Outcome != Applied {
			continue
		}
		es := entries[[3]string{op.User, "credit", op.Request}]
		if len(es) != 1 || es[0].Amount != op.Delta {
			out = append(out, violation(PointsOnce, "credit %s of %d points to user %s was acknowledged; MySQL has entries %v", op.Request, op.Delta, op.User, es))
		}
	}
	return out
}

// CacheEqual: Redis holds every campaign at MySQL's version with MySQL's issued count and
// remaining = max(0, stock - issued).
func CacheEqual(s Snapshot) []Violation {
	var out []Violation
	ids := make([]string, 0, len(s.Campaigns))
	for id := range s.Campaigns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		db := s.Campaigns[id]
		c := s.Cache[id]
		want := max(0, db.Stock-db.Issued)
		if !c.Present || c.Version != db.Version || c.Issued != db.Issued || c.Remaining != want {
			out = append(out, violation(CacheEqualsDB, "campaign %s: cache %+v, MySQL version %d issued %d remaining %d", id, c, db.Version, db.Issued, want))
		}
	}
	return out
}
