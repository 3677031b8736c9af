// Package check decides, from what clients were told (the history) and what MySQL and Redis hold
// afterwards (the snapshot), whether a run kept the system's money invariants. It does no I/O, so
// every check can be fed a doctored history in a test and shown to fail.
package check

import (
	"slices"
	"time"
)

// OpKind is what a client did.
type OpKind string

const (
	OpClaim  OpKind = "claim"  // a user's POST /v1/claims
	OpPatch  OpKind = "patch"  // an operator's POST or PATCH of a campaign
	OpCredit OpKind = "credit" // an operator's POST /v1/users/{id}/points
)

// Outcome is what the answer means for the model.
type Outcome string

const (
	Granted  Outcome = "granted"  // 201: a new claim
	Replayed Outcome = "replayed" // 200: the claim this request already had
	Refused  Outcome = "refused"  // a 4xx refusal with a code: nothing issued
	Unknown  Outcome = "unknown"  // 5xx or no answer: it may or may not have happened
	Applied  Outcome = "applied"  // a patch or credit that committed
)

// Rule is a campaign's rule at one version, as MySQL committed it.
type Rule struct {
	Version      int64     `json:"version"`
	Mode         string    `json:"mode"`
	Stock        int64     `json:"stock"`
	PerUserLimit int64     `json:"per_user_limit"`
	Status       string    `json:"status"`
	CostPoints   int64     `json:"cost_points"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	Buckets      int       `json:"buckets,omitempty"`
}

// Op is one client call and its answer.
type Op struct {
	Client   int       `json:"client"`
	Kind     OpKind    `json:"kind"`
	Campaign string    `json:"campaign,omitempty"`
	User     string    `json:"user,omitempty"`
	Request  string    `json:"request,omitempty"`
	Call     time.Time `json:"call"`
	Return   time.Time `json:"return"`
	Status   int       `json:"status"` // HTTP status; 0 when no answer came
	Code     string    `json:"code,omitempty"`
	Outcome  Outcome   `json:"outcome"`
	ClaimID  string    `json:"claim_id,omitempty"`
	// A patch: the rule it committed (from the answer, or from a read after an unknown answer), and
	// whether the answer said the cache had applied it before returning.
	Rule   *Rule `json:"rule,omitempty"`
	InSync bool  `json:"in_sync,omitempty"`
	Delta  int64 `json:"delta,omitempty"` // a credit's points
}

// History is every client call of a run, in any order.
type History struct {
	Ops []Op `json:"ops"`
	// ClaimID derives a claim's id from (user, request id) as the product does, for claims whose
	// answer was lost.
	ClaimID func(user, request string) string `json:"-"`
	// Settle is how long after its answer (or lost answer) a call may still take effect: the function
	// timeout, since an invocation the client gave up on runs on until then.
	Settle time.Duration `json:"-"`
	// ReservationHold is how long a paid claim that died half-way may hold its reservation: the
	// sweeper's age limit plus its period.
	ReservationHold time.Duration `json:"-"`
	// CacheLosses are the faults that may have dropped cache data (Redis restarted empty, a shard
	// emptied, a master killed before its replica had its writes), each from the moment it began to
	// the moment it returned. A claim decided in data lost this way, and not yet durable, is undone
	// by the loss.
	CacheLosses []Span `json:"cache_losses,omitempty"`
	// HomeBucket is the bucket that decides a user's claims on a campaign of n buckets, as the
	// product computes it: a loss takes back only claims decided in the buckets it lost.
	HomeBucket func(user string, n int) int `json:"-"`
}

// Span is a cache loss: a stretch of time and the campaign buckets whose data it took.
type Span struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Buckets are the buckets of each campaign whose data the loss took; nil means every bucket of
	// every campaign (a standalone Redis restarted empty).
	Buckets map[string][]int `json:"buckets"` // not omitempty: an empty map (nothing lost) must not read back as nil (everything)
}

// hits says whether the loss took the data of a campaign's bucket (any bucket: -1).
func (s Span) hits(campaign string, bucket int) bool {
	if s.Buckets == nil {
		return true
	}
	lost, ok := s.Buckets[campaign]
	return ok && (bucket < 0 || slices.Contains(lost, bucket))
}

// homeBucket is the bucket that decides user's claims on a campaign of n buckets; -1 when History
// cannot tell.
func (h History) homeBucket(user string, n int) int {
	switch {
	case n <= 1:
		return 0
	case h.HomeBucket == nil:
		return -1
	}
	return h.HomeBucket(user, n)
}

// CampaignRow is a campaign as MySQL holds it at the end.
type CampaignRow struct {
	Rule
	ID     string `json:"id"`
	Issued int64  `json:"issued"`
}

// ClaimRow is a recorded claim.
type ClaimRow struct {
	ID         string    `json:"id"`
	Campaign   string    `json:"campaign"`
	User       string    `json:"user"`
	Request    string    `json:"request"`
	CostPoints int64     `json:"cost_points"`
	GrantedAt  time.Time `json:"granted_at"`
}

// UserRow is a user's points in MySQL: the running totals and the entries behind them.
type UserRow struct {
	ID       string `json:"id"`
	Credited int64  `json:"credited"`
	Debited  int64  `json:"debited"`
}

// PointsEntry is one credit (Ref: the operator's request id) or debit (Ref: the claim id).
type PointsEntry struct {
	User   string `json:"user"`
	Kind   string `json:"kind"` // "credit" or "debit"
	Ref    string `json:"ref"`
	Amount int64  `json:"amount"`
}

// CacheRow is a campaign as Redis holds it.
type CacheRow struct {
	Present   bool  `json:"present"`
	Version   int64 `json:"version"`
	Issued    int64 `json:"issued"`
	Remaining int64 `json:"remaining"`
}

// Snapshot is what the stores hold once the run has healed and drained.
type Snapshot struct {
	Campaigns map[string]CampaignRow `json:"campaigns"`
	Claims    []ClaimRow             `json:"claims"`
	Users     map[string]UserRow     `json:"users"`
	Points    []PointsEntry          `json:"points"`
	Cache     map[string]CacheRow    `json:"cache"`
}

// Violation is one broken invariant with what shows it.
type Violation struct {
	Invariant string `json:"invariant"`
	Detail    string `json:"detail"`
}

func (v Violation) String() string { return v.Invariant + ": " + v.Detail }
