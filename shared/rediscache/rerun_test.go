package rediscache

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/fault"
)

// go-redis re-sends a command after a read timeout (MaxRetries in shared/wiring), so every script may
// run twice with the same input: the first run's reply lost, the second's answered. The tests below run
// each script twice and check that the second run leaves the state as the first left it, and that its
// answer is the first's or one its caller treats the same way.

// snapshot is every key of the test's database with its content (TTLs left out: they only tick).
func snapshot(t *testing.T, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := services.Keys(ctx, rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	markers := 0
	for _, k := range keys {
		// The 16384 readiness markers are only counted: reading each would outlast the rate counter's
		// one-second TTL, and no script writes them.
		if strings.HasPrefix(k, "bn:{r") && strings.HasSuffix(k, "}:ready") {
			markers++
			continue
		}
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			var m map[string]string
			m, err = rdb.HGetAll(ctx, k).Result()
			v = sortedPairs(m)
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		if err != nil {
			t.Fatal(err)
		}
		out[k] = typ + " " + fmt.Sprint(v)
	}
	out["(readiness markers)"] = fmt.Sprint(markers)
	return out
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// twice runs s twice with the same keys and arguments and fails unless the state after the second run
// is the state after the first. It returns both answers.
func twice(t *testing.T, c *Cache, rdb redis.UniversalClient, s *redis.Script, keys []string, args ...any) (any, any) {
	t.Helper()
	ctx := context.Background()
	first, err := s.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	after1 := snapshot(t, rdb)
	second, err := s.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	if after2 := snapshot(t, rdb); !reflect.DeepEqual(after1, after2) {
		t.Fatalf("the second run changed the state:\nafter one run:  %v\nafter two runs: %v", after1, after2)
	}
	return first, second
}

func sameAnswer(t *testing.T, first, second any) {
	t.Helper()
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("answers differ: %#v then %#v", first, second)
	}
}

func campaignKeyList(id string) []string {
	k := keysOfCampaign(id)
	return []string{k.camp, k.held, k.claims, k.grants, k.pending}
}

// claimKeyList are claim.lua's keys: the campaign's and its slot's readiness marker.
func claimKeyList(id string) []string {
	return append(campaignKeyList(id), defaultMarkers.of(keysOfCampaign(id).camp))
}

func claimArgs(user, request, attempt string) []any {
	return []any{user, domain.ClaimID(user, request), request, now.UnixMilli(), "claim", 1, now.Add(-time.Hour).UnixMilli(), 0, attempt}
}

func TestRerunClaimBegin(t *testing.T) {
	c, rdb := newCache(t)
	credit(t, c, "u", 50, 1)
	uk := keysOfUser("u")
	keys := []string{uk.user, uk.req, uk.rate, c.markers.of(uk.user)}
	first, second := twice(t, c, rdb, c.scripts.begin, keys, "r1", "camp", 5, now.UnixMilli())
	// The same answer, but for whether the run bound the request: the re-sent run found the binding,
	// which its caller then keeps on a refusal, as it would another call's (unbindIfSettled).
	sameAnswer(t, first.([]any)[:7], second.([]any)[:7])
	if made := []any{first.([]any)[7], second.([]any)[7]}; !reflect.DeepEqual(made, []any{int64(1), int64(0)}) {
		t.Fatalf("made by each run: %v, want the first run's only", made)
	}
	if n, _ := rdb.Get(context.Background(), uk.rate).Int(); n != 1 {
		t.Fatalf("rate counter %d after one request sent twice", n)
	}
	if b, _ := rdb.HGet(context.Background(), uk.req, "r1").Result(); b != fmt.Sprintf("camp|%d", now.UnixMilli()) {
		t.Fatalf("binding %q", b)
	}
	// A rate-limited request sent twice is refused twice and counted never.
	if err := rdb.Set(context.Background(), uk.rate, 5, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	first, second = twice(t, c, rdb, c.scripts.begin, keys, "r2", "camp", 5, now.UnixMilli())
	a, b := first.([]any), second.([]any)
	if a[0] != "rate_limited" || !reflect.DeepEqual(a[:6], b[:6]) || b[6].(int64) <= 0 || b[6].(int64) > 1000 {
		t.Fatalf("rate-limited answers: %v then %v", a, b)
	}
}

func TestRerunClaim(t *testing.T) {
	c, rdb := newCache(t)
	apply(t, c, campaign("free", 10, 1))
	apply(t, c, paidCampaign("paid", 30))
	for _, id := range []string{"free", "paid"} {
		t.Run(id, func(t *testing.T) {
			first, second := twice(t, c, rdb, c.scripts.claim, claimKeyList(id), claimArgs("u", "r1", "attempt-1")...)
			sameAnswer(t, first, second)
			if first.([]any)[0] != "ok" {
				t.Fatalf("answer %v", first)
			}
			if cc, _ := c.Campaign(context.Background(), id); cc.Issued != 1 {
				t.Fatalf("issued %d after one claim sent twice", cc.Issued)
			}
			// Another call (the user's own retry) is a replay of the same claim.
			again, err := c.scripts.claim.Run(context.Background(), c.rdb, claimKeyList(id), claimArgs("u", "r1", "attempt-2")...).Result()
			if err != nil || again.([]any)[0] != "replay" || again.([]any)[1] != first.([]any)[1] {
				t.Fatalf("retry from a new attempt: %v %v", again, err)
			}
		})
	}
	if n := len(streamClaims(t, c, "free")); n != 1 {
		t.Fatalf("%d stream entries for one claim", n)
	}
	// A refusal run twice is the same refusal and changes nothing.
	first, second := twice(t, c, rdb, c.scripts.claim, claimKeyList("free"), claimArgs("u", "r2", "attempt-3")...)
	sameAnswer(t, first, second)
	if first.([]any)[0] != "limit_reached" {
		t.Fatalf("answer %v", first)
	}
}

// pending reserves a paid claim and returns its id and reservation token.
func pending(t *testing.T, c *Cache, user, campaignID, request string) (string, int64) {
	t.Helper()
	v, err := c.scripts.claim.Run(context.Background(), c.rdb, claimKeyList(campaignID), claimArgs(user, request, "a")...).Result()
	if err != nil || v.([]any)[0] != "ok" {
		t.Fatalf("reserve: %v %v", v, err)
	}
	stored, _, err := decodeClaim(v.([]any)[1].(string))
	if err != nil || stored.State != "pending" {
		t.Fatalf("reservation: %+v %v", stored, err)
	}
	return stored.ID, stored.Reservation
}

func TestRerunDebit(t *testing.T) {
	c, rdb := newCache(t)
	apply(t, c, paidCampaign("paid", 30))
	credit(t, c, "u", 50, 1)
	id, res := pending(t, c, "u", "paid", "r1")
	uk := keysOfUser("u")
	first, second := twice(t, c, rdb, c.scripts.debit, []string{uk.user, uk.debits}, id, 30, res)
	sameAnswer(t, first, second)
	if first != "ok" {
		t.Fatalf("answer %v", first)
	}
	if cu, _ := c.User(context.Background(), "u"); cu.Balance != 20 {
		t.Fatalf("balance %d after one 30-point debit sent twice", cu.Balance)
	}
	// Refused twice, changing nothing.
	id2, res2 := pending(t, c, "u", "paid", "r2")
	first, second = twice(t, c, rdb, c.scripts.debit, []string{uk.user, uk.debits}, id2, 30, res2)
	sameAnswer(t, first, second)
	if first != "insufficient_points" {
		t.Fatalf("answer %v", first)
	}
}

func TestRerunConfirm(t *testing.T) {
	c, rdb := newCache(t)
	apply(t, c, paidCampaign("paid", 30))
	id, _ := pending(t, c, "u", "paid", "r1")
	ck := keysOfCampaign("paid")
	first, second := twice(t, c, rdb, c.scripts.confirm, []string{ck.claims, ck.grants, ck.pending}, id)
	sameAnswer(t, first, second)
	if first.([]any)[0] != "ok" || !strings.Contains(first.([]any)[1].(string), `"state":"granted"`) {
		t.Fatalf("answer %v", first)
	}
	if n := len(streamClaims(t, c, "paid")); n != 1 {
		t.Fatalf("%d stream entries for one confirmation sent twice", n)
	}
}

// release answers 'released', then 'missing' (the claim it released is gone); its caller ignores the
// verdict, so both runs mean the same to it, and the state is as after one release.
func TestRerunRelease(t *testing.T) {
	c, rdb := newCache(t)
	apply(t, c, paidCampaign("paid", 30))
	id, res := pending(t, c, "u", "paid", "r1")
	ck := keysOfCampaign("paid")
	first, second := twice(t, c, rdb, c.scripts.release, []string{ck.camp, ck.held, ck.claims, ck.pending}, id, res)
	if first != "released" || second != "missing" {
		t.Fatalf("answers %v then %v", first, second)
	}
	if cc, _ := c.Campaign(context.Background(), "paid"); cc.Issued != 0 || cc.Remaining != 10 || cc.Pending != 0 {
		t.Fatalf("after one release sent twice: %+v", cc)
	}
	if n, _ := rdb.HLen(context.Background(), ck.held).Result(); n != 0 {
		t.Fatalf("held entries: %d", n)
	}
	if err := c.release(context.Background(), domain.Claim{ID: id, CampaignID: "paid", UserID: "u"}, res); err != nil {
		t.Fatalf("the caller on the second verdict: %v", err)
	}
}

func TestRerunRebind(t *testing.T) {
	c, rdb := newCache(t)
	uk := keysOfUser("u")
	if err := rdb.HSet(context.Background(), uk.req, "r1", "old|1").Err(); err != nil {
		t.Fatal(err)
	}
	first, second := twice(t, c, rdb, c.scripts.rebind, []string{uk.req}, "r1", "old|1", "new|2")
	sameAnswer(t, first, second)
	if first != int64(1) {
		t.Fatalf("answer %v", first)
	}
	// Someone else's move is still refused.
	if v, _ := c.scripts.rebind.Run(context.Background(), c.rdb, []string{uk.req}, "r1", "old|1", "other|3").Int(); v != 0 {
		t.Fatalf("a stale move answered %d", v)
	}
}

// unbind answers 1, then 0 (nothing left to unbind); its caller ignores the answer.
func TestRerunUnbind(t *testing.T) {
	c, rdb := newCache(t)
	uk := keysOfUser("u")
	if err := rdb.HSet(context.Background(), uk.req, "r1", "camp|1", "r2", "other|1").Err(); err != nil {
		t.Fatal(err)
	}
	first, second := twice(t, c, rdb, c.scripts.unbind, []string{uk.req}, "r1", "camp")
	if first != int64(1) || second != int64(0) {
		t.Fatalf("answers %v then %v", first, second)
	}
	if m, _ := rdb.HGetAll(context.Background(), uk.req).Result(); len(m) != 1 || m["r2"] != "other|1" {
		t.Fatalf("bindings %v", m)
	}
	// A user's retry binds the request again between the unbind and its re-send: the re-send, which
	// names the binding it saw, leaves the retry's binding alone.
	if err := rdb.HSet(context.Background(), uk.req, "r1", "camp|1").Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.scripts.unbind.Run(context.Background(), c.rdb, []string{uk.req}, "r1", "camp|1").Int(); v != 1 {
		t.Fatalf("unbind answered %d", v)
	}
	if err := rdb.HSet(context.Background(), uk.req, "r1", "camp|2").Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.scripts.unbind.Run(context.Background(), c.rdb, []string{uk.req}, "r1", "camp|1").Int(); v != 0 {
		t.Fatalf("re-sent unbind answered %d", v)
	}
	if b, _ := rdb.HGet(context.Background(), uk.req, "r1").Result(); b != "camp|2" {
		t.Fatalf("the retry's binding is %q", b)
	}
}

func TestRerunVoidDebit(t *testing.T) {
	c, rdb := newCache(t)
	uk := keysOfUser("u")
	first, second := twice(t, c, rdb, c.scripts.voidDebit, []string{uk.debits}, "cl1", 7)
	sameAnswer(t, first, second)
	if first != "void" {
		t.Fatalf("answer %v", first)
	}
	if err := rdb.HSet(context.Background(), uk.debits, "cl2", 30).Err(); err != nil {
		t.Fatal(err)
	}
	first, second = twice(t, c, rdb, c.scripts.voidDebit, []string{uk.debits}, "cl2", 8)
	sameAnswer(t, first, second)
	if first != "debited" {
		t.Fatalf("answer %v", first)
	}
}

// Two reservations of one claim voided, the older one's void arriving last (a re-sent void_debit
// overtaken): each keeps its own mark, so the newer one's late debit still finds its reservation void
// and charges nothing for the released unit.
func TestAVoidOfAnOldReservationLeavesANewerOneVoid(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	credit(t, c, "u", 100, 1)
	uk := keysOfUser("u")
	for _, token := range []int{2, 1} {
		if v, err := c.scripts.voidDebit.Run(ctx, rdb, []string{uk.debits}, "cl1", token).Text(); err != nil || v != "void" {
			t.Fatalf("void reservation %d: %q %v", token, v, err)
		}
	}
	for _, token := range []int{1, 2} {
		if v, err := c.scripts.debit.Run(ctx, rdb, []string{uk.user, uk.debits}, "cl1", 30, token).Text(); err != nil || v != "void" {
			t.Fatalf("late debit of voided reservation %d: %q %v, want void", token, v, err)
		}
	}
	if cu, _ := c.User(ctx, "u"); cu.Balance != 100 {
		t.Fatalf("balance %d, want 100", cu.Balance)
	}
	// A reservation never voided is still debited once.
	if v, err := c.scripts.debit.Run(ctx, rdb, []string{uk.user, uk.debits}, "cl1", 30, 3).Text(); err != nil || v != "ok" {
		t.Fatalf("debit of a live reservation: %q %v", v, err)
	}
	if entries, _ := c.DebitEntries(ctx, "u"); len(entries) != 1 || entries["cl1"] != 30 {
		t.Fatalf("debit entries %v, want cl1: 30 only (void marks are not debits)", entries)
	}
}

// A fenced apply answers applied, then not applied with the version it wrote (cachesync only logs
// the flag); a repair answers applied both times, so the reconciler reports what it did.
func TestRerunApplyCampaign(t *testing.T) {
	c, rdb := newCache(t)
	camp := campaign("cc", 10, 1)
	args := func(camp domain.Campaign, issued int64, mode string, expect int64) []any {
		return []any{camp.Version, issued, mode, expect, "id", camp.ID, "stock", camp.Stock, "status", "active"}
	}
	first, second := twice(t, c, rdb, c.scripts.applyCampaign, append(campaignKeyList("cc"), c.markers.of(keysOfCampaign("cc").camp)), args(camp, 3, "fence", 0)...)
	if !reflect.DeepEqual(first, []any{int64(1), int64(1)}) || !reflect.DeepEqual(second, []any{int64(0), int64(1)}) {
		t.Fatalf("fenced answers %v then %v", first, second)
	}
	camp.Version, camp.Stock = 2, 20
	first, second = twice(t, c, rdb, c.scripts.applyCampaign, append(campaignKeyList("cc"), c.markers.of(keysOfCampaign("cc").camp)), args(camp, 5, "repair", 1)...)
	sameAnswer(t, first, second)
	if !reflect.DeepEqual(first, []any{int64(1), int64(2)}) {
		t.Fatalf("repair answer %v", first)
	}
	if cc, _ := c.Campaign(context.Background(), "cc"); cc.Version != 2 || cc.Issued != 5 || cc.Remaining != 15 {
		t.Fatalf("after a repair sent twice: %+v", cc)
	}
	// A repair still never rolls back a newer version.
	old := campaign("cc", 10, 1)
	if v, _ := c.scripts.applyCampaign.Run(context.Background(), c.rdb, append(campaignKeyList("cc"), c.markers.of(keysOfCampaign("cc").camp)), args(old, 0, "repair", 1)...).Result(); !reflect.DeepEqual(v, []any{int64(0), int64(2)}) {
		t.Fatalf("stale repair: %v", v)
	}
}

func TestRerunApplyUser(t *testing.T) {
	c, rdb := newCache(t)
	first, second := twice(t, c, rdb, c.scripts.applyUser, []string{keysOfUser("u").user, c.markers.of(keysOfUser("u").user)}, 1, now.UnixMilli(), 1, 100, 10, "fence")
	if !reflect.DeepEqual(first, []any{int64(1), int64(1)}) || !reflect.DeepEqual(second, []any{int64(0), int64(1)}) {
		t.Fatalf("answers %v then %v", first, second)
	}
	if cu, _ := c.User(context.Background(), "u"); cu.Balance != 90 {
		t.Fatalf("balance %d", cu.Balance)
	}
}

func TestRerunRestoreClaims(t *testing.T) {
	c, rdb := newCache(t)
	ck := keysOfCampaign("cc")
	cl := domain.Claim{ID: "cl1", CampaignID: "cc", UserID: "u", RequestID: "r", GrantedAt: now}
	first, second := twice(t, c, rdb, c.scripts.restore, []string{ck.held, ck.claims}, 1, "u", 2, "cl1", encodeClaim(cl, "granted"))
	sameAnswer(t, first, second)
	if h, _ := rdb.HGet(context.Background(), ck.held, "u").Result(); h != "2" {
		t.Fatalf("held %s", h)
	}
}

// resender makes the client do what go-redis does after a read timeout, every time: the command runs,
// its reply is lost, and it is sent again.
type resender struct{}

func (resender) DialHook(next redis.DialHook) redis.DialHook { return next }
func (resender) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := next(ctx, cmd); err != nil {
			return err
		}
		return next(ctx, cmd)
	}
}
func (resender) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := next(ctx, cmds); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

// The observed failure: with every command re-sent, a claim's very first request must still be told
// it was granted (not replayed), and nothing may be counted twice.
func TestEveryCommandSentTwice(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	apply(t, c, campaign("free", 10, 1))
	apply(t, c, paidCampaign("paid", 30))
	apply(t, c, campaign("other", 10, 1))
	credit(t, c, "u", 50, 1)
	rdb.AddHook(resender{})
	in := func(campaignID, request string) ClaimInput {
		return ClaimInput{UserID: "u", CampaignID: campaignID, RequestID: request, Now: now, By: domain.ByClaim, RateLimit: 5}
	}
	for _, id := range []string{"free", "paid"} {
		out, err := c.Claim(ctx, in(id, "r-"+id))
		if err != nil || out.Code != "" || out.Replayed {
			t.Fatalf("%s: first request answered %+v %v, want granted", id, out, err)
		}
		again, err := c.Claim(ctx, in(id, "r-"+id))
		if err != nil || again.Code != "" || !again.Replayed || again.Claim != out.Claim {
			t.Fatalf("%s: the user's retry answered %+v %v, want the same claim replayed", id, again, err)
		}
		if cc, _ := c.Campaign(ctx, id); cc.Issued != 1 || cc.Pending != 0 {
			t.Fatalf("%s: %+v", id, cc)
		}
		if n := len(streamClaims(t, c, id)); n != 1 {
			t.Fatalf("%s: %d stream entries", id, n)
		}
	}
	if cu, _ := c.User(ctx, "u"); cu.Balance != 20 {
		t.Fatalf("balance %d after one 30-point claim", cu.Balance)
	}
	// A refused paid claim is released once and its unit returned.
	if out, err := c.Claim(ctx, in("paid", "r-poor")); err != nil || out.Code != domain.CodeInsufficientPoints {
		t.Fatalf("claim without points: %+v %v", out, err)
	}
	if cc, _ := c.Campaign(ctx, "paid"); cc.Issued != 1 || cc.Remaining != 9 {
		t.Fatalf("paid after a refusal: %+v", cc)
	}
	// A request id left bound to a campaign that never recorded it moves, re-sent or not.
	stale := fmt.Sprintf("free|%d", now.Add(-time.Hour).UnixMilli())
	if err := rdb.HSet(ctx, keysOfUser("u").req, "r-moved", stale).Err(); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Claim(ctx, in("other", "r-moved")); err != nil || out.Code != "" || out.Replayed {
		t.Fatalf("rebound request: %+v %v", out, err)
	}
	// Three new requests so far (r-free, r-paid, r-poor), each counted once: two more pass the limit of
	// 5 per second (and find no such campaign), the next is refused.
	for i, want := range []domain.Code{domain.CodeCampaignNotFound, domain.CodeCampaignNotFound, domain.CodeRateLimited} {
		if out, err := c.Claim(ctx, in("missing", fmt.Sprint("rl-", i))); err != nil || out.Code != want {
			t.Fatalf("request %d: %+v %v, want %q", i, out, err, want)
		}
	}
	// A refusal its campaign gives whoever asks (the user's unit of "other" is taken) is answered from
	// reads, before the limiter, which it never reaches, once the campaign has been seen refusing:
	// another user at their limit there shows it.
	for i, want := range []domain.Code{"", domain.CodeLimitReached} {
		if out, err := c.Claim(ctx, ClaimInput{UserID: "u2", CampaignID: "other", RequestID: fmt.Sprint("u2-", i), Now: now, By: domain.ByClaim, RateLimit: 5}); err != nil || out.Code != want {
			t.Fatalf("u2's claim %d on other: %+v %v, want %q", i, out, err, want)
		}
	}
	if out, err := c.Claim(ctx, in("other", "rl-early")); err != nil || out.Code != domain.CodeLimitReached {
		t.Fatalf("early refusal past the rate limit: %+v %v, want limit_reached", out, err)
	}
}

// slowReplyProxy forwards TCP to upstream and, once armed, holds back the reply to the first request
// that contains trigger for delay: what a latency spike on the Redis link does to one command. With
// holdRequest it holds back that request itself, on its way to Redis, so a re-send on another
// connection can overtake it.
type slowReplyProxy struct {
	ln          net.Listener
	upstream    string
	trigger     []byte
	delay       time.Duration
	holdRequest bool
	armed       atomic.Bool
	delayed     atomic.Int32
	released    atomic.Int32 // held requests passed on to Redis
}

func startSlowReplyProxy(t *testing.T, upstream string, trigger []byte, delay time.Duration) *slowReplyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowReplyProxy{ln: ln, upstream: upstream, trigger: trigger, delay: delay}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *slowReplyProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	var holdNext atomic.Bool
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if err != nil {
				server.Close()
				return
			}
			held := false
			if bytes.Contains(buf[:n], p.trigger) && p.armed.CompareAndSwap(true, false) {
				if held = p.holdRequest; held {
					p.delayed.Add(1)
					time.Sleep(p.delay)
				} else {
					holdNext.Store(true)
				}
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
			if held {
				p.released.Add(1)
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if err != nil {
			return
		}
		if holdNext.CompareAndSwap(true, false) {
			p.delayed.Add(1)
			time.Sleep(p.delay)
		}
		if _, err := client.Write(buf[:n]); err != nil {
			return
		}
	}
}

// cacheBehindSlowProxy is a cache whose client reaches the test's standalone server through a
// slowReplyProxy armed on the claim script, configured as shared/wiring configures it (1 s read
// timeout, one retry). holdRequest holds the script's request rather than its reply.
func cacheBehindSlowProxy(t *testing.T, delay time.Duration, holdRequest bool) (*Cache, *slowReplyProxy) {
	t.Helper()
	_, universal := newCache(t)
	direct, ok := universal.(*redis.Client)
	if !ok {
		t.Skip("the slow-reply proxy stands in front of one standalone server; a cluster client would be redirected past it")
	}
	p := startSlowReplyProxy(t, direct.Options().Addr, []byte(New(direct).scripts.claim.Hash()), delay)
	p.holdRequest = holdRequest
	rdb := redis.NewClient(&redis.Options{Addr: p.ln.Addr().String(), DB: direct.Options().DB,
		DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb), p
}

// The observed failure, reproduced over a real connection: the claim script's reply arrives 1.5 s
// late, the client (configured as shared/wiring configures it: 1 s read timeout, one retry) gives up
// on it and sends the script again. The first request must still be told it was granted.
func TestClaimScriptResentAfterAReadTimeout(t *testing.T) {
	c, p := cacheBehindSlowProxy(t, 1500*time.Millisecond, false)
	ctx := context.Background()
	apply(t, c, campaign("slow", 10, 1))
	// Load the scripts first, so the EVALSHA that is slowed is the one the claim runs.
	claim(t, c, "warm", "slow", "w1")
	p.armed.Store(true)
	out, err := c.Claim(ctx, ClaimInput{UserID: "u", CampaignID: "slow", RequestID: "r1", Now: now, By: domain.ByClaim})
	if err != nil || out.Code != "" || out.Replayed {
		t.Fatalf("first request through a slow reply: %+v %v, want granted", out, err)
	}
	if p.delayed.Load() != 1 {
		t.Fatalf("%d replies held back, want the claim script's", p.delayed.Load())
	}
	if cc, _ := c.Campaign(ctx, "slow"); cc.Issued != 2 {
		t.Fatalf("issued %d, want 2 (warm-up and this claim, once)", cc.Issued)
	}
	if again := claim(t, c, "u", "slow", "r1"); !again.Replayed || again.Claim != out.Claim {
		t.Fatalf("the user's retry: %+v", again)
	}
}

// The other order, over a real connection: the claim script's request is held on its way to Redis, the
// client re-sends it after its read timeout, and the re-send runs first and is refused (sold out). The
// stock is raised before the held request arrives, and it is granted. The refusal was never the
// answer: the call must say its outcome is unknown, and the request must keep its binding, so that the
// same request id used on another campaign gets the late claim instead of a second one.
func TestARefusalThatMayBeAReSendsIsNotTheAnswer(t *testing.T) {
	c, p := cacheBehindSlowProxy(t, 2*time.Second, true)
	ctx := context.Background()
	apply(t, c, campaign("late", 1, 1))
	apply(t, c, campaign("other", 10, 1))
	claim(t, c, "warm", "late", "w1") // the last unit, and the scripts loaded
	p.armed.Store(true)
	out, err := c.Claim(ctx, ClaimInput{UserID: "u", CampaignID: "late", RequestID: "r1", Now: now, By: domain.ByClaim})
	if err == nil || !fault.IsRetryable(err) {
		t.Fatalf("a claim whose re-send was refused while its first send was held: %+v %v, want a retryable error (outcome unknown)", out, err)
	}
	// The user retries at once, as the 503 says, while the first send is still held: the retry is
	// refused, and must leave the request's binding, which the first call made, in place.
	if retry := claim(t, c, "u", "late", "r1"); retry.Code != domain.CodeSoldOut {
		t.Fatalf("the user's retry while the first send is held: %+v, want sold_out", retry)
	}
	raised := campaign("late", 2, 1)
	raised.Version = 2
	apply(t, c, raised)
	deadline := time.Now().Add(5 * time.Second)
	for p.released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.delayed.Load() != 1 || p.released.Load() != 1 {
		t.Fatalf("%d requests held, %d passed on; want the claim script's, once", p.delayed.Load(), p.released.Load())
	}
	var issued int64
	for time.Now().Before(deadline) {
		if cc, err := c.Campaign(ctx, "late"); err == nil {
			if issued = cc.Issued; issued == 2 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if issued != 2 {
		t.Fatalf("issued %d, want 2: the held first send, arriving after the raise, is granted", issued)
	}
	elsewhere := claim(t, c, "u", "other", "r1")
	if elsewhere.Claim.CampaignID != "late" || !elsewhere.Replayed {
		t.Fatalf("the request id on another campaign: %+v, want the late claim on %q replayed", elsewhere, "late")
	}
	if cc, _ := c.Campaign(ctx, "other"); cc.Issued != 0 {
		t.Fatalf("issued %d on the other campaign under a request id that already has a claim", cc.Issued)
	}
}

// beforeFirstRun runs do once, just before the first command that runs the script sha.
type beforeFirstRun struct {
	sha  string
	do   func()
	done atomic.Bool
}

func (h *beforeFirstRun) runs(cmds ...redis.Cmder) bool {
	for _, cmd := range cmds {
		if args := cmd.Args(); len(args) > 1 && fmt.Sprint(args[1]) == h.sha {
			return true
		}
	}
	return false
}

func (h *beforeFirstRun) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforeFirstRun) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.runs(cmd) && h.done.CompareAndSwap(false, true) {
			h.do()
		}
		return next(ctx, cmd)
	}
}
func (h *beforeFirstRun) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.runs(cmds...) && h.done.CompareAndSwap(false, true) {
			h.do()
		}
		return next(ctx, cmds)
	}
}

// A paid claim whose debit is refused (the balance fell between the first step's read and the debit)
// voids the reservation's debit before it releases the unit: a debit of the same reservation still on
// its way (a re-send overtaken, an earlier call's) must not charge for a unit already released once
// credits come in.
func TestARefusedDebitIsVoidedBeforeTheRelease(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	apply(t, c, paidCampaign("pv", 30))
	credit(t, c, "u", 50, 1)
	rdb.AddHook(&beforeFirstRun{sha: c.scripts.debit.Hash(), do: func() { credit(t, c, "u", 10, 2) }})
	if out := claim(t, c, "u", "pv", "r1"); out.Code != domain.CodeInsufficientPoints {
		t.Fatalf("a claim whose balance fell before its debit: %+v, want insufficient_points", out)
	}
	id := domain.ClaimID("u", "r1")
	marks, err := rdb.HKeys(ctx, keysOfUser("u").debits).Result()
	if err != nil || len(marks) != 1 || !strings.HasPrefix(marks[0], id+"|void|") {
		t.Fatalf("the user's debit records %q (%v), want the refused reservation's void mark only", marks, err)
	}
	credit(t, c, "u", 100, 3)
	late, err := c.scripts.debit.Run(ctx, rdb, []string{keysOfUser("u").user, keysOfUser("u").debits}, id, 30, strings.TrimPrefix(marks[0], id+"|void|")).Text()
	if err != nil || late != "void" {
		t.Fatalf("a late debit of the released reservation: %q %v, want void", late, err)
	}
	if cu, _ := c.User(ctx, "u"); cu.Balance != 100 {
		t.Fatalf("balance %d, want 100: nothing charged for the released unit", cu.Balance)
	}
	if cc, _ := c.Campaign(ctx, "pv"); cc.Issued != 0 || cc.Pending != 0 {
		t.Fatalf("campaign after the refusal: %+v, want the unit released", cc)
	}
}

// The sweeper's commands re-sent: an abandoned reservation is released once, a debited one confirmed
// once.
func TestSweepWithEveryCommandSentTwice(t *testing.T) {
	c, rdb := newCache(t)
	ctx := context.Background()
	apply(t, c, paidCampaign("sw", 30))
	credit(t, c, "p", 100, 1)
	credit(t, c, "q", 100, 1)
	reserveOnly(t, c, "p", "sw", "a")
	debited := reserveOnly(t, c, "q", "sw", "b")
	uk := keysOfUser("q")
	if v, _ := c.scripts.debit.Run(ctx, c.rdb, []string{uk.user, uk.debits}, debited, 30, 2).Text(); v != "ok" {
		t.Fatalf("debit: %s", v)
	}
	rdb.AddHook(resender{})
	r, err := c.SweepPending(ctx, "sw", time.Second, now.Add(time.Minute))
	if err != nil || r.Released != 1 || r.Confirmed != 1 {
		t.Fatalf("sweep: %+v %v", r, err)
	}
	cc, _ := c.Campaign(ctx, "sw")
	grants := streamClaims(t, c, "sw")
	if cc.Issued != 1 || cc.Remaining != 9 || cc.Pending != 0 || len(grants) != 1 || grants[0].ID != debited {
		t.Fatalf("after the sweep: %+v, grants %v", cc, grants)
	}
	p, _ := c.User(ctx, "p")
	q, _ := c.User(ctx, "q")
	if p.Balance != 100 || q.Balance != 70 {
		t.Fatalf("balances p %d q %d, want 100 and 70", p.Balance, q.Balance)
	}
}
