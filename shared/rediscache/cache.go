// Package rediscache is the Redis adapter: the claim decision and the version-fenced cache of campaigns
// and users, as Lua scripts run with EVALSHA (falling back to EVAL after a SCRIPT FLUSH or a restart).
//
// Key layout. Every key of one campaign shares the hash tag {c:<id>} and every key of one user {u:<id>},
// so each script touches one slot and the layout works on Redis Cluster. Scripts name keys only through
// KEYS.
//
//	bn:{c:ID}:camp     hash   the campaign's rule fields, version, issued (granted + reserved) and
//	                          remaining = max(0, stock − issued)
//	bn:{c:ID}:held     hash   user → units held
//	bn:{c:ID}:claims   hash   claim id → claim JSON, state pending or granted
//	bn:{c:ID}:pending  zset   claim id → reservation time of points claims awaiting their debit
//	bn:{c:ID}:grants   stream one entry per granted unit, replayed to the ledger by the timer
//	bn:{c:ID#b}:...    the same keys for bucket b > 0 of a campaign whose stock is split (buckets.go)
//	bn:{u:ID}:user     hash   version, known, registered_ms, member, credits, debits
//	bn:{u:ID}:req      hash   request id → campaign id the request is bound to
//	bn:{u:ID}:debits   hash   claim id → cost debited; "<claim id>|void|<reservation>" → "void" for a voided reservation
//	bn:{u:ID}:rate     string fixed one-second window counter for the per-user rate limit
//	bn:{r<n>}:ready    string one per hash slot (slots.go): set once the cache holds everything MySQL
//	                          has; absent in the slots of a shard that lost its data
//
// A user's points live in the user's slot and a campaign's stock in the campaign's, so a claim with a
// points cost is a saga: reserve the unit, debit the points, confirm — or release the unit when the debit
// is refused. SweepPending resolves a saga cut short by a crash.
package rediscache

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

//go:embed lua/*.lua
var luaFiles embed.FS

func script(name string) *redis.Script {
	src, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic("rediscache: missing embedded script " + name) // a build defect, caught by every test
	}
	return redis.NewScript(string(src))
}

type scripts struct {
	begin, refuse, claim, debit, confirm, release, unbind, rebind, voidDebit, applyCampaign, applyUser, restore *redis.Script
	seal, open, lend, receive, markDry                                                                          *redis.Script
}

func loadScripts() scripts {
	return scripts{
		begin: script("claim_begin"), refuse: script("claim_refuse"), claim: script("claim"), debit: script("debit"), confirm: script("confirm"),
		release: script("release"), unbind: script("unbind"), rebind: script("rebind"), voidDebit: script("void_debit"),
		applyCampaign: script("apply_campaign"), applyUser: script("apply_user"), restore: script("restore_claims"),
		seal: script("seal_bucket"), open: script("open_bucket"), lend: script("lend"), receive: script("receive"), markDry: script("mark_dry"),
	}
}

type campaignKeys struct{ camp, held, claims, grants, pending string }

func keysOfCampaign(id string) campaignKeys {
	p := "bn:{c:" + id + "}:"
	return campaignKeys{camp: p + "camp", held: p + "held", claims: p + "claims", grants: p + "grants", pending: p + "pending"}
}

type userKeys struct{ user, req, debits, rate string }

func keysOfUser(id string) userKeys {
	p := "bn:{u:" + id + "}:"
	return userKeys{user: p + "user", req: p + "req", debits: p + "debits", rate: p + "rate"}
}

// Cache is safe for concurrent use.
type Cache struct {
	rdb     redis.UniversalClient
	scripts scripts
	markers *slotMarkers
	opts    Options
	// refusing holds the campaigns whose last claim here was refused in a way claim_refuse.lua
	// answers: their claims are tried with reads first (refuseEarly). A stale entry costs one read.
	refusing sync.Map
	// buckets remembers campaign id → how many buckets its stock is split into (fixed at creation).
	buckets sync.Map
	// resendAfter is how long a command must have taken before the client may have sent it twice; 0:
	// it never re-sends one (see resendAfterFor).
	resendAfter time.Duration
}

// New takes a standalone client, a client on a cluster's proxy endpoint, or a cluster client: every
// script and multi-key command names keys of one slot, and whatever spans slots (the readiness
// markers, a claim's two steps) is sent as separate commands.
func New(rdb redis.UniversalClient) *Cache {
	return &Cache{rdb: rdb, scripts: loadScripts(), markers: newSlotMarkers(), resendAfter: resendAfterFor(rdb)}
}

// resendAfterFor is how long a command of rdb must have taken before go-redis may have sent it a second
// time: it re-sends a command whose read timed out (MaxRetries), and the read deadline is ReadTimeout
// after the write. The first send may then still reach Redis after the second was answered. Options()
// returns the options as the client filled them in: no retries is 0 for a client and -1 for a cluster
// client, no read deadline 0 or -1, and a client of another kind is taken to have the defaults (5 s, 3
// retries in go-redis v9.23).
func resendAfterFor(rdb redis.UniversalClient) time.Duration {
	read, retries := 5*time.Second, 3
	switch c := rdb.(type) {
	case *redis.Client:
		read, retries = c.Options().ReadTimeout, c.Options().MaxRetries
	case *redis.ClusterClient:
		read, retries = c.Options().ReadTimeout, c.Options().MaxRetries
	}
	if retries <= 0 || read <= 0 {
		return 0
	}
	return read
}

// mayHaveResent says whether a command that took d may have been sent twice.
func (c *Cache) mayHaveResent(d time.Duration) bool { return c.resendAfter > 0 && d >= c.resendAfter }

// classify marks Redis failures: a script error or a reply of the wrong shape is a defect (permanent);
// everything else (timeouts, resets, LOADING, a failover) may pass.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return fault.Permanent(err)
	}
	var reply redis.Error
	if !errors.As(err, &reply) {
		// No answer from the server (a connection, a pool or a deadline failed): the command may not
		// have run, or may have; either way a retry of the same input is safe (every script is).
		return fault.Retryable(err)
	}
	// The server answered with an error; its first word is the error's kind (RESP error prefixes).
	kind, _, _ := strings.Cut(reply.Error(), " ")
	if transientReply[kind] {
		return fault.Retryable(err)
	}
	return fault.Permanent(err)
}

// transientReply are the server errors that pass: loading a data set, a script or a replica busy, a
// failover or a slot moving, memory full under noeviction, too few replicas for a WAIT-guarded
// write. Everything else the server refuses (a script's own error, wrong type or arguments,
// permissions) will be refused again.
var transientReply = map[string]bool{
	"LOADING": true, "BUSY": true, "READONLY": true, "MASTERDOWN": true, "MOVED": true, "ASK": true,
	"TRYAGAIN": true, "CLUSTERDOWN": true, "OOM": true, "NOREPLICAS": true, "NOSCRIPT": true,
}

func shapeError(what string, v any) error {
	return fault.Permanent(fmt.Errorf("rediscache: unexpected reply to %s: %#v", what, v))
}

// ApplyResult is domain.ApplyResult, the services' port type.
type ApplyResult = domain.ApplyResult

func parseApply(v any) (ApplyResult, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return ApplyResult{}, shapeError("apply", v)
	}
	applied, _ := arr[0].(int64)
	ver, _ := arr[1].(int64)
	return ApplyResult{Applied: applied == 1, CachedVersion: ver}, nil
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// ApplyCampaign writes c if it is newer than the cached version. issued becomes the larger of the
// cache's own count and dbIssued (what MySQL recorded): MySQL never counts more than was issued, so
// this only ever repairs a cache that lost grants. An entry evicted while the campaign's holdings or
// grants remain is not recreated (CachedVersion -1): that is the reconciler's rebuild.
func (c *Cache) ApplyCampaign(ctx context.Context, camp domain.Campaign, dbIssued int64) (ApplyResult, error) {
	return c.applyCampaign(ctx, camp, dbIssued, "fence", 0)
}

// RepairCampaign writes c whatever its version (the reconciler's fix for drift the version fence
// cannot heal), provided the cached version is still expectVersion (0: no entry), so a change applied
// since the reconciler looked is never rolled back. issuedFloor is what is known to be issued (MySQL
// plus grants still on their way to it); the cache's count is kept when it is higher.
func (c *Cache) RepairCampaign(ctx context.Context, camp domain.Campaign, issuedFloor, expectVersion int64) (ApplyResult, error) {
	return c.applyCampaign(ctx, camp, issuedFloor, "repair", expectVersion)
}

func (c *Cache) applyCampaign(ctx context.Context, camp domain.Campaign, issued int64, mode string, expect int64) (ApplyResult, error) {
	days := "0"
	if camp.Audience.NewUserDays != nil {
		days = strconv.Itoa(*camp.Audience.NewUserDays)
	}
	fields := []any{"id", camp.ID, "name", camp.Name, "benefit_type", string(camp.Benefit.Type), "benefit_amount", camp.Benefit.Amount,
		"segment", string(camp.Audience.Segment), "new_user_days", days, "cost_points", camp.CostPoints,
		"mode", string(camp.Mode), "starts_ms", ms(camp.StartsAt), "ends_ms", ms(camp.EndsAt),
		"stock", camp.Stock, "per_user_limit", camp.PerUserLimit, "status", string(camp.Status), "buckets", camp.StockBuckets(),
	}
	if camp.StockBuckets() > 1 {
		return c.applyBuckets(ctx, camp, fields, issued, mode, expect)
	}
	k := keysOfCampaign(camp.ID)
	args := append([]any{camp.Version, issued, mode, expect}, fields...)
	v, err := c.scripts.applyCampaign.Run(ctx, c.rdb, []string{k.camp, k.held, k.claims, k.grants, k.pending, c.markers.of(k.camp)}, args...).Result()
	if err != nil {
		return ApplyResult{}, classify(err)
	}
	return parseApply(v)
}

// UserState is domain.UserState, the services' port type.
type UserState = domain.UserState

// ApplyUser writes u if it is newer than the cached version, keeping the cache's debits.
func (c *Cache) ApplyUser(ctx context.Context, u UserState) (ApplyResult, error) {
	member := 0
	if u.Member {
		member = 1
	}
	mode := "fence"
	if u.Restore {
		mode = "restore"
	}
	k := keysOfUser(u.ID)
	v, err := c.scripts.applyUser.Run(ctx, c.rdb, []string{k.user, c.markers.of(k.user)}, u.Version, ms(u.RegisteredAt), member, u.Credits, u.Debits, mode).Result()
	if err != nil {
		return ApplyResult{}, classify(err)
	}
	return parseApply(v)
}

// CachedCampaign is domain.CachedCampaign, the services' port type.
type CachedCampaign = domain.CachedCampaign

func toInt(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Campaign reads the cached counters of a campaign.
func (c *Cache) Campaign(ctx context.Context, id string) (CachedCampaign, error) {
	if n, ok := c.buckets.Load(id); ok && n.(int) > 1 {
		return c.campaignOfBuckets(ctx, id, n.(int))
	}
	// One read of bucket 0 says both whether the campaign is split and what it holds. With the bucket
	// count read first on its own, bucket 0 created between the two reads (its siblings still being
	// created) passed for the whole campaign: the rules API saw it in sync and returned, and the first
	// claims homed in a bucket not yet there were answered campaign_not_found.
	k := keysOfCampaign(id)
	pipe := c.rdb.Pipeline()
	h := pipe.HMGet(ctx, k.camp, "version", "stock", "issued", "remaining", "buckets")
	p := pipe.ZCard(ctx, k.pending)
	if _, err := pipe.Exec(ctx); err != nil {
		return CachedCampaign{}, classify(err)
	}
	vals := h.Val()
	if vals[0] == nil {
		// Absent (evicted), but reservations may have outlived the entry: the rebuild counts them.
		return CachedCampaign{Pending: p.Val()}, nil
	}
	if n := int(toInt(vals[4])); n > 1 {
		c.buckets.Store(id, n)
		return c.campaignOfBuckets(ctx, id, n)
	}
	return CachedCampaign{Present: true, Version: toInt(vals[0]), Stock: toInt(vals[1]), Issued: toInt(vals[2]),
		Remaining: toInt(vals[3]), Pending: p.Val()}, nil
}

// DebitEntries lists the debits the cache made for a user (claim id -> points), voided ones left out.
// They outlive an evicted user entry, and are what MySQL's debited total may still lack.
func (c *Cache) DebitEntries(ctx context.Context, userID string) (map[string]int64, error) {
	all, err := c.rdb.HGetAll(ctx, keysOfUser(userID).debits).Result()
	if err != nil {
		return nil, classify(err)
	}
	out := make(map[string]int64, len(all))
	for id, v := range all {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[id] = n
		}
	}
	return out, nil
}

// CachedUser is domain.CachedUser, the services' port type.
type CachedUser = domain.CachedUser

// User reads the cached version and balance of a user.
func (c *Cache) User(ctx context.Context, id string) (CachedUser, error) {
	vals, err := c.rdb.HMGet(ctx, keysOfUser(id).user, "version", "credits", "debits").Result()
	if err != nil {
		return CachedUser{}, classify(err)
	}
	if vals[0] == nil {
		return CachedUser{}, nil
	}
	return CachedUser{Present: true, Version: toInt(vals[0]), Balance: toInt(vals[1]) - toInt(vals[2])}, nil
}

// storedClaim is a claim as the scripts encode it.
type storedClaim struct {
	ID            string `json:"id"`
	CampaignID    string `json:"campaign_id"`
	UserID        string `json:"user_id"`
	RequestID     string `json:"request_id"`
	BenefitType   string `json:"benefit_type"`
	BenefitAmount int64  `json:"benefit_amount"`
	CostPoints    int64  `json:"cost_points"`
	GrantedMS     int64  `json:"granted_ms"`
	State         string `json:"state"`
	Reservation   int64  `json:"reservation,omitempty"`
	Attempt       string `json:"attempt,omitempty"` // the call that recorded it (ClaimInput.Attempt)
}

func decodeClaim(raw string) (storedClaim, domain.Claim, error) {
	var s storedClaim
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return s, domain.Claim{}, fault.Permanent(fmt.Errorf("rediscache: stored claim %q: %w", raw, err))
	}
	return s, domain.Claim{
		ID: s.ID, CampaignID: s.CampaignID, UserID: s.UserID, RequestID: s.RequestID,
		Benefit:    domain.Benefit{Type: domain.BenefitType(s.BenefitType), Amount: s.BenefitAmount},
		CostPoints: s.CostPoints, GrantedAt: time.UnixMilli(s.GrantedMS).UTC(),
	}, nil
}

func encodeClaim(c domain.Claim, state string) string {
	b, _ := json.Marshal(storedClaim{
		ID: c.ID, CampaignID: c.CampaignID, UserID: c.UserID, RequestID: c.RequestID,
		BenefitType: string(c.Benefit.Type), BenefitAmount: c.Benefit.Amount, CostPoints: c.CostPoints,
		GrantedMS: c.GrantedAt.UnixMilli(), State: state,
	})
	return string(b)
}
