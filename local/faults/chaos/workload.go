package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/benefit-issuance/benefits/local/faults/check"
	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/auth"
	"github.com/benefit-issuance/benefits/shared/domain"
)

// recorder keeps the history of one schedule and what the injector may deliver again.
type recorder struct {
	mu        sync.Mutex
	ops       []check.Op
	grants    []domain.Claim
	campaigns map[string]int64 // id -> newest committed version
	order     []string
	rng       *rand.Rand
}

func (r *recorder) add(op check.Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	if op.Kind == check.OpPatch && op.Rule != nil && op.Outcome == check.Applied {
		if _, ok := r.campaigns[op.Campaign]; !ok {
			r.order = append(r.order, op.Campaign)
		}
		r.campaigns[op.Campaign] = max(r.campaigns[op.Campaign], op.Rule.Version)
	}
}

func (r *recorder) RecentCampaign() (string, int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return "", 0, false
	}
	id := r.order[r.rng.IntN(len(r.order))]
	return id, r.campaigns[id], true
}

func (r *recorder) RecentGrant() (domain.Claim, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.grants) == 0 {
		return domain.Claim{}, false
	}
	return r.grants[len(r.grants)-1-r.rng.IntN(min(len(r.grants), 20))], true
}

// workload is one schedule's operators and users.
type workload struct {
	client   *stack.Client
	secret   string
	operator string
	prefix   string
	seed     uint64
	rec      *recorder
	users    []string
	tokens   map[string]string
	clientN  int
	mu       sync.Mutex
	settle   time.Duration
	duration time.Duration
}

func (w *workload) nextClient() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clientN++
	return w.clientN
}

func (w *workload) rngFor(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(w.seed, stream))
}

// outcome maps an answer to what it means for the model.
func outcome(r stack.Reply, err error) (check.Outcome, int, string) {
	if err != nil {
		return check.Unknown, 0, ""
	}
	switch {
	case r.Status == http.StatusCreated:
		return check.Granted, r.Status, ""
	case r.Status == http.StatusOK:
		return check.Replayed, r.Status, ""
	case r.Status >= 500 || r.Status == 0:
		return check.Unknown, r.Status, r.Code()
	default:
		return check.Refused, r.Status, r.Code()
	}
}

func ruleOf(r stack.Reply) *check.Rule {
	c, ok := r.Body["campaign"].(map[string]any)
	if !ok {
		return nil
	}
	num := func(k string) int64 { f, _ := c[k].(float64); return int64(f) }
	str := func(k string) string { s, _ := c[k].(string); return s }
	tm := func(k string) time.Time { t, _ := time.Parse(time.RFC3339Nano, str(k)); return t }
	return &check.Rule{Version: num("version"), Mode: str("mode"), Stock: num("stock"), PerUserLimit: num("per_user_limit"),
		Status: str("status"), CostPoints: num("cost_points"), StartsAt: tm("starts_at"), EndsAt: tm("ends_at"), Buckets: int(num("buckets"))}
}

func inSync(r stack.Reply) bool {
	c, _ := r.Body["cache"].(map[string]any)
	v, _ := c["in_sync"].(bool)
	return v
}

func (w *workload) token(user string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.tokens[user]; ok {
		return t
	}
	t, _ := auth.Issue(w.secret, user, auth.RoleUser, 2*time.Hour, time.Now())
	w.tokens[user] = t
	return t
}

// setup creates the schedule's users, credits and campaigns before any fault.
func (w *workload) setup(ctx context.Context) (map[string]string, error) {
	now := time.Now().UTC()
	for i := range 40 {
		u := fmt.Sprintf("%s-u%02d", w.prefix, i)
		w.users = append(w.users, u)
		body := map[string]any{"registered_at": now.Add(-time.Duration(i+1) * time.Hour).Format(time.RFC3339), "member": i%2 == 0}
		r, err := w.client.Do("PUT", "/v1/users/"+u, w.operator, body)
		if err != nil || r.Status != 200 {
			return nil, fmt.Errorf("setup user %s: %v %s", u, err, r.Raw)
		}
	}
	for i := range 20 {
		w.credit(w.users[i], "seed-"+strconv.Itoa(i), 100)
	}
	start := time.Now()
	ms := func(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano) }
	base := map[string]any{
		"name": "fault suite", "benefit": map[string]any{"type": "coupon", "amount": 500},
		"audience": map[string]any{"segment": "all"}, "cost_points": 0, "mode": "claim",
		"starts_at": ms(now.Add(-time.Hour)), "ends_at": ms(now.Add(2 * time.Hour)),
		"stock": 30, "per_user_limit": 2, "status": "active",
	}
	specs := map[string]map[string]any{
		"open":   {},
		"paid":   {"cost_points": 30, "stock": 20, "per_user_limit": 1, "benefit": map[string]any{"type": "red_envelope", "amount": 300}},
		"grant":  {"mode": "grant", "stock": 10, "per_user_limit": 1, "starts_at": ms(start.Add(1500 * time.Millisecond))},
		"window": {"stock": 40, "per_user_limit": 1, "starts_at": ms(start.Add(1200 * time.Millisecond)), "ends_at": ms(start.Add(2700 * time.Millisecond))},
	}
	if w.seed%2 == 1 {
		// Every other schedule splits the operated campaign's stock into buckets: its stock changes,
		// pauses and the request sent to two campaigns at once then run the bucket protocol under faults.
		specs["open"]["buckets"] = openBuckets
	}
	ids := map[string]string{}
	for _, name := range []string{"open", "paid", "grant", "window"} {
		body := map[string]any{}
		for k, v := range base {
			body[k] = v
		}
		for k, v := range specs[name] {
			body[k] = v
		}
		call := time.Now()
		r, err := w.client.Do("POST", "/v1/campaigns", w.operator, body)
		if err != nil || r.Status != http.StatusCreated {
			return nil, fmt.Errorf("setup campaign %s: %v %s", name, err, r.Raw)
		}
		rule := ruleOf(r)
		id, _ := r.Field("campaign", "id").(string)
		ids[name] = id
		w.rec.add(check.Op{Client: w.nextClient(), Kind: check.OpPatch, Campaign: id, Call: call, Return: time.Now(),
			Status: r.Status, Outcome: check.Applied, Rule: rule, InSync: inSync(r)})
	}
	return ids, nil
}

// credit posts points and records the answer; an unknown answer is retried with the same request id
// until it is known, as a careful operator does.
func (w *workload) credit(user, req string, delta int64) {
	client := w.nextClient()
	deadline := time.Now().Add(20 * time.Second)
	for {
		call := time.Now()
		r, err := w.client.Do("POST", "/v1/users/"+user+"/points", w.operator, map[string]any{"delta": delta, "request_id": req})
		out, status, code := outcome(r, err)
		if out == check.Replayed || out == check.Granted {
			out = check.Applied
		}
		w.rec.add(check.Op{Client: client, Kind: check.OpCredit, User: user, Request: req, Delta: delta, Call: call, Return: time.Now(),
			Status: status, Code: code, Outcome: out})
		if out != check.Unknown || time.Now().After(deadline) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// claim sends one claim and records it; a lost answer is retried with the same request id, as the API
// asks clients to do.
func (w *workload) claim(client int, user, campaign, req string) {
	for attempt := 0; attempt < 3; attempt++ {
		call := time.Now()
		r, err := w.client.Do("POST", "/v1/claims", w.token(user), map[string]any{"campaign_id": campaign, "request_id": req})
		out, status, code := outcome(r, err)
		op := check.Op{Client: client, Kind: check.OpClaim, Campaign: campaign, User: user, Request: req, Call: call, Return: time.Now(),
			Status: status, Code: code, Outcome: out}
		if out == check.Granted || out == check.Replayed {
			op.ClaimID, _ = r.Field("claim", "id").(string)
			// A request id already used for another campaign is answered with that campaign's claim.
			if got, _ := r.Field("claim", "campaign_id").(string); got != "" {
				op.Campaign = got
			}
			if out == check.Granted {
				w.rec.mu.Lock()
				w.rec.grants = append(w.rec.grants, claimOf(r))
				w.rec.mu.Unlock()
			}
		}
		w.rec.add(op)
		if out != check.Unknown {
			return
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func claimOf(r stack.Reply) domain.Claim {
	c, _ := r.Body["claim"].(map[string]any)
	s := func(k string) string { v, _ := c[k].(string); return v }
	b, _ := c["benefit"].(map[string]any)
	amount, _ := b["amount"].(float64)
	cost, _ := c["cost_points"].(float64)
	at, _ := time.Parse(time.RFC3339Nano, s("granted_at"))
	typ, _ := b["type"].(string)
	return domain.Claim{ID: s("id"), CampaignID: s("campaign_id"), UserID: s("user_id"), RequestID: s("request_id"),
		Benefit: domain.Benefit{Type: domain.BenefitType(typ), Amount: int64(amount)}, CostPoints: int64(cost), GrantedAt: at}
}

// openBuckets is how many buckets the "open" campaign's stock is split into in odd-seeded schedules.
const openBuckets = 4

// run drives users, operators and credits until the workload's time is up.
func (w *workload) run(ctx context.Context, ids map[string]string) {
	end := time.Now().Add(w.duration)
	var wg sync.WaitGroup
	claimable := []string{ids["open"], ids["open"], ids["paid"], ids["window"], ids["window"], ids["grant"]}
	for worker := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := w.rngFor(uint64(worker) + 1)
			client := w.nextClient()
			var mine []struct{ campaign, req string }
			for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
				// A user thinks between taps; without it refusals answered in a millisecond would flood the
				// history with calls that say nothing new.
				time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
				user := w.users[rng.IntN(len(w.users))]
				campaign := claimable[rng.IntN(len(claimable))]
				req := fmt.Sprintf("w%d-%d", worker, n)
				pick := rng.IntN(10)
				switch {
				case pick < 2 && len(mine) > 0:
					// The same request again, from its own user: a replay.
					m := mine[rng.IntN(len(mine))]
					w.claim(client, w.users[worker*4%len(w.users)], m.campaign, m.req)
					continue
				case pick < 3:
					// One request id sent to two campaigns at once: at most one may be granted.
					var both sync.WaitGroup
					other := w.nextClient()
					both.Add(1)
					go func() { defer both.Done(); w.claim(other, user, ids["paid"], req) }()
					w.claim(client, user, ids["open"], req)
					both.Wait()
					continue
				}
				if pick < 5 {
					user = w.users[worker*4%len(w.users)]
					mine = append(mine, struct{ campaign, req string }{campaign, req})
				}
				w.claim(client, user, campaign, req)
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.operate(ctx, ids["open"], end, w.rngFor(100))
	}()
	go func() {
		defer wg.Done()
		rng := w.rngFor(200)
		var sent []struct {
			user, req string
			delta     int64
		}
		for n := 0; time.Now().Before(end) && ctx.Err() == nil; n++ {
			if len(sent) > 0 && rng.IntN(4) == 0 {
				c := sent[rng.IntN(len(sent))]
				w.credit(c.user, c.req, c.delta) // a retry of a credit that was answered
			} else {
				c := struct {
					user, req string
					delta     int64
				}{w.users[rng.IntN(len(w.users))], "credit-" + strconv.Itoa(n), int64(10 + rng.IntN(50))}
				sent = append(sent, c)
				w.credit(c.user, c.req, c.delta)
			}
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		}
	}()
	wg.Wait()
}

// operate patches one campaign: stock lowered and raised, pause and resume, window and audience.
func (w *workload) operate(ctx context.Context, id string, end time.Time, rng *rand.Rand) {
	client := w.nextClient()
	w.rec.mu.Lock()
	version := w.rec.campaigns[id]
	w.rec.mu.Unlock()
	for time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond)
		var change map[string]any
		switch rng.IntN(6) {
		case 0:
			change = map[string]any{"stock": 2 + rng.IntN(10)}
		case 1:
			change = map[string]any{"stock": 30 + rng.IntN(30)}
		case 2:
			change = map[string]any{"status": "paused"}
		case 3:
			change = map[string]any{"status": "active"}
		case 4:
			change = map[string]any{"ends_at": time.Now().Add(time.Duration(1+rng.IntN(3)) * time.Hour).UTC().Format(time.RFC3339)}
		default:
			seg := []string{"all", "members"}[rng.IntN(2)]
			change = map[string]any{"audience": map[string]any{"segment": seg}}
		}
		call := time.Now()
		r, err := w.client.Do("PATCH", "/v1/campaigns/"+id, w.operator, change, "If-Match", strconv.FormatInt(version, 10))
		out, status, code := outcome(r, err)
		switch {
		case out == check.Replayed: // 200
			rule := ruleOf(r)
			w.rec.add(check.Op{Client: client, Kind: check.OpPatch, Campaign: id, Call: call, Return: time.Now(), Status: status,
				Outcome: check.Applied, Rule: rule, InSync: inSync(r)})
			version = rule.Version
		case out == check.Unknown:
			// It may have committed: read until the answer is known, then record what committed.
			got, ok := w.readCampaign(ctx, id)
			if !ok {
				return
			}
			if got.Version > version {
				w.rec.add(check.Op{Client: client, Kind: check.OpPatch, Campaign: id, Call: call, Return: time.Now(), Status: status,
					Code: code, Outcome: check.Applied, Rule: got})
			}
			version = got.Version
		default:
			if code == "version_mismatch" {
				if got, ok := w.readCampaign(ctx, id); ok {
					version = got.Version
				}
			}
		}
	}
}

func (w *workload) readCampaign(ctx context.Context, id string) (*check.Rule, bool) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r, err := w.client.Do("GET", "/v1/campaigns/"+id, w.operator, nil)
		if err == nil && r.Status == 200 {
			return ruleOf(r), true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, false
}
