package check

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability model: one campaign's claim decisions as a sequential object. Its state is the
// rule the cache holds (version, stock, per-user limit, paused), the units issued, each user's
// holdings and each (user, request_id)'s claim. A claim that is granted must have been possible in
// some order consistent with real time (not paused, stock left, under the limit, the request new); a
// sold_out, limit_reached or paused refusal must have been true then; a replay must name the claim
// the request already had. A patch takes effect at the version fence (only a newer version applies),
// at some point after it was sent: before its answer when the answer said in_sync, else at any later
// time, since the cache applies it through the queue. A call whose answer was lost may or may not
// have happened (a nondeterministic step).
//
// A claim whose answer was lost may have been granted in Redis and then lost with its bucket's
// cache data before it was durable: its instance died before the grant reached the broker or MySQL,
// and the grant stream went with the data (Redis restarted empty, a shard emptied, a master killed
// before its replica had the write). Until the loss, other claims saw its unit taken, so a sold_out
// or limit_reached answered then was true. The model may take such a grant back at each later loss
// of that data (an undo step within the loss's span), as the cache, rebuilt from MySQL or served by
// a replica that never had the write, does; if MySQL never recorded the claim, its last loss surely
// took it, and the claim can no longer be granted after. A retry may then be granted anew. A refusal
// for that while is a weakening of the answer, never of the money: an undo frees only a unit such a
// claim took, never one a client was told about (a 201 or 200 is answered only once durable).
//
// What MySQL recorded holds the model in the end: every request sent to the campaign that MySQL records
// a claim for holds its unit after the last call's window (recordedInTheEnd), so a lost answer that was
// recorded cannot be placed as having taken nothing, and a request answered only with refusals cannot
// have been recorded.
//
// Refusals that depend on the clock (not_started, ended), the audience or points are not modelled
// here: Stock checks every recorded claim against the windows, and Points checks balances.

type lstate struct {
	version int64
	stock   int64
	limit   int64
	paused  bool
	issued  int64
	held    map[string]int64  // user -> units
	bound   map[string]string // user|request -> claim id
	// lost are the claims (by lostClaim) whose last cache loss has happened: they can no longer be
	// granted.
	lost []int
}

func (s lstate) remaining() int64 { return max(0, s.stock-s.issued) }

func (s lstate) canGrant(user string) bool {
	return !s.paused && s.remaining() > 0 && s.held[user] < s.limit
}

func (s lstate) grant(user, key, id string) lstate {
	n := s
	n.issued++
	n.held = maps.Clone(s.held)
	n.held[user]++
	n.bound = maps.Clone(s.bound)
	n.bound[key] = id
	return n
}

// campaignReq is a claim request on one campaign (a request id may be sent to two).
type campaignReq struct{ campaign, user, req string }

// lostGrant marks, in bound, a grant made by a claim a cache loss may take back.
const lostGrant = "\x00lost"

// undo is a cache loss of claim lost (user, key): it takes back the unit the claim was granted, if a
// claim that may be lost made it (never one a client was told about), and after the last loss the
// claim can no longer be granted: one decided later would have been durable, and recorded.
func (s lstate) undo(lost int, user, key string, seal bool) lstate {
	n := s
	if seal {
		n.lost = append(append(make([]int, 0, len(s.lost)+1), s.lost...), lost)
		sort.Ints(n.lost)
	}
	if !strings.HasSuffix(s.bound[key], lostGrant) {
		return n
	}
	n.issued--
	n.held = maps.Clone(s.held)
	n.held[user]--
	n.bound = maps.Clone(s.bound)
	delete(n.bound, key)
	return n
}

// durable is a 200 for key's claim: answered only once the grant is durable, which no loss takes back.
func (s lstate) durable(key string) lstate {
	n := s
	n.bound = maps.Clone(s.bound)
	n.bound[key] = strings.TrimSuffix(s.bound[key], lostGrant)
	return n
}

func (s lstate) isLost(lost int) bool {
	i := sort.SearchInts(s.lost, lost)
	return i < len(s.lost) && s.lost[i] == lost
}

func (s lstate) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d/%d/%t/%d|", s.version, s.stock, s.limit, s.paused, s.issued)
	keys := make([]string, 0, len(s.bound))
	for k := range s.bound {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(s.bound[k])
		b.WriteByte(';')
	}
	// held follows from bound, so it needs no place in the key.
	fmt.Fprint(&b, s.lost)
	return b.String()
}

type modelIn struct {
	patch *Rule
	user  string
	req   string
	// lostClaim (from 1) marks a claim that a cache loss may have undone, and undo that loss, which
	// may take back what the claim was granted, if it was. A grant known not to have survived
	// (mustLose) is surely gone after its last loss (lastLoss), and the claim sealed.
	lostClaim int
	undo      bool
	lastLoss  bool
	mustLose  bool
	// recorded, set on a last step after every claim's window, are the user|request keys MySQL records
	// a claim for: by the end, some attempt of each must hold its unit.
	recorded []string
}

type modelOut struct {
	outcome Outcome
	code    string
	claimID string
}

func newModel(initial Rule, claimID func(user, req string) string) porcupine.NondeterministicModel {
	return porcupine.NondeterministicModel{
		Init: func() []any {
			return []any{lstate{version: initial.Version, stock: initial.Stock, limit: initial.PerUserLimit,
				paused: initial.Status == "paused", held: map[string]int64{}, bound: map[string]string{}}}
		},
		Step: func(st, in, out any) []any {
			s, i, o := st.(lstate), in.(modelIn), out.(modelOut)
			if i.patch != nil {
				r := i.patch
				if r.Version <= s.version {
					return []any{s}
				}
				n := s
				n.version, n.stock, n.limit, n.paused = r.Version, r.Stock, r.PerUserLimit, r.Status == "paused"
				if o.outcome == Unknown {
					return []any{s, n}
				}
				return []any{n}
			}
			if i.recorded != nil {
				for _, k := range i.recorded {
					if _, ok := s.bound[k]; !ok {
						return nil
					}
				}
				return []any{s}
			}
			key := i.user + "|" + i.req
			if i.undo {
				// A loss before the last may have spared the grant (a master kill keeps what its
				// replica had), and so may any loss of a grant MySQL recorded.
				if i.lastLoss && i.mustLose {
					return []any{s.undo(i.lostClaim, i.user, key, true)}
				}
				if !strings.HasSuffix(s.bound[key], lostGrant) {
					return []any{s}
				}
				return []any{s, s.undo(i.lostClaim, i.user, key, false)}
			}
			if i.lostClaim > 0 && s.isLost(i.lostClaim) {
				return []any{s}
			}
			if id, ok := s.bound[key]; ok {
				id = strings.TrimSuffix(id, lostGrant)
				// A request that has its claim gets it back whatever happened since.
				switch o.outcome {
				case Replayed:
					if o.claimID == id {
						return []any{s.durable(key)}
					}
				case Unknown:
					return []any{s}
				}
				return nil
			}
			switch o.outcome {
			case Granted:
				if s.canGrant(i.user) {
					return []any{s.grant(i.user, key, o.claimID)}
				}
				return nil
			case Replayed:
				return nil
			case Unknown:
				if s.canGrant(i.user) {
					id := claimID(i.user, i.req)
					if i.lostClaim > 0 {
						id += lostGrant
					}
					return []any{s, s.grant(i.user, key, id)}
				}
				return []any{s}
			}
			switch o.code {
			case "sold_out":
				if s.remaining() > 0 {
					return nil
				}
			case "limit_reached":
				if s.held[i.user] < s.limit {
					return nil
				}
			case "paused":
				if !s.paused {
					return nil
				}
			}
			return []any{s}
		},
		Equal: func(a, b any) bool { return a.(lstate).key() == b.(lstate).key() },
		Hash: func(a any) uint64 {
			h := fnv.New64a()
			h.Write([]byte(a.(lstate).key()))
			return h.Sum64()
		},
		DescribeOperation: func(in, out any) string {
			i, o := in.(modelIn), out.(modelOut)
			if i.recorded != nil {
				return fmt.Sprintf("in the end MySQL records the claims of %s", strings.Join(i.recorded, ", "))
			}
			if i.undo {
				return fmt.Sprintf("cache loss takes back claim %s/%s", i.user, i.req)
			}
			if i.patch != nil {
				return fmt.Sprintf("patch v%d stock=%d limit=%d %s -> %s", i.patch.Version, i.patch.Stock, i.patch.PerUserLimit, i.patch.Status, o.outcome)
			}
			return fmt.Sprintf("claim %s/%s -> %s %s%s", i.user, i.req, o.outcome, o.code, o.claimID)
		},
		DescribeState: func(st any) string {
			s := st.(lstate)
			return fmt.Sprintf("v%d stock=%d issued=%d limit=%d paused=%t", s.version, s.stock, s.issued, s.limit, s.paused)
		},
	}
}

// recordedInTheEnd is a last step, after every call's window, that holds the model to what MySQL
// recorded: each request sent to the campaign that MySQL records a claim for (keys, user|request) holds
// its unit by then. Without it, a lost answer that MySQL records could be placed as having taken
// nothing, freeing its unit for another claim that the stock never allowed. A request answered only
// with refusals cannot hold one: a refusal is final for its call (one that may be a re-sent script's
// is answered 503 instead; shared/rediscache undecided).
func recordedInTheEnd(ops []porcupine.Operation, keys []string) []porcupine.Operation {
	if len(keys) == 0 {
		return nil
	}
	var last int64
	client := 0
	for _, o := range ops {
		client = max(client, o.ClientId+1)
		if o.Return != math.MaxInt64 {
			last = max(last, o.Return)
		}
	}
	return []porcupine.Operation{{ClientId: client, Input: modelIn{recorded: keys}, Output: modelOut{}, Call: last + 1, Return: last + 2}}
}

// recordedRequests are, per campaign, the requests (user|request) sent to it that MySQL records a claim
// of that campaign for, sorted.
func recordedRequests(h History, recorded map[campaignReq]bool) map[string][]string {
	out := map[string][]string{}
	seen := map[campaignReq]bool{}
	for _, op := range h.Ops {
		k := campaignReq{op.Campaign, op.User, op.Request}
		if op.Kind != OpClaim || !recorded[k] || seen[k] {
			continue
		}
		seen[k] = true
		out[op.Campaign] = append(out[op.Campaign], op.User+"|"+op.Request)
	}
	for _, keys := range out {
		sort.Strings(keys)
	}
	return out
}

// excusedByReservation finds the sold_out and limit_reached refusals of a campaign with a points cost
// that a reservation explains. A paid claim reserves its unit in the campaign's slot before it
// debits the user's slot (two slots, so two steps), and releases it when the debit is refused; a
// claim that dies between the steps holds its reservation until the sweeper releases it. A claim
// that overlaps such a reservation sees the unit taken, although in the end it was never issued. That
// is a deliberate weakening of the answer for paid campaigns (a refusal the user may retry), never of
// the money: issued units, limits and points are checked exactly by Stock and Points. A refusal is
// excused when another claim on the campaign (for limit_reached, by the same user) that issued
// nothing overlaps it, its reservation held for up to ReservationHold after a lost answer.
func excusedByReservation(h History, initial map[string]Rule, recorded map[campaignReq]bool) map[int]bool {
	excused := map[int]bool{}
	for i, op := range h.Ops {
		if op.Kind != OpClaim || op.Outcome != Refused || (op.Code != "sold_out" && op.Code != "limit_reached") || initial[op.Campaign].CostPoints <= 0 {
			continue
		}
		for _, other := range h.Ops {
			if other.Kind != OpClaim || other.Campaign != op.Campaign || (other.User == op.User && other.Request == op.Request) {
				continue
			}
			if op.Code == "limit_reached" && other.User != op.User {
				continue
			}
			held := other.Return
			switch {
			case other.Outcome == Refused && other.Code == "insufficient_points":
			case other.Outcome == Unknown && !recorded[campaignReq{other.Campaign, other.User, other.Request}]:
				held = held.Add(h.ReservationHold)
			default:
				continue
			}
			if !other.Call.After(op.Return) && !op.Call.After(held) {
				excused[i] = true
				break
			}
		}
	}
	return excused
}

// bucketedSoldOut is a sold_out refusal of a campaign whose stock is split into buckets
// (shared/CONSISTENCY.md): its bucket found no units to borrow in a scan that is not atomic (a unit
// moving between two other buckets is in neither when asked), or believed so for up to a second, or
// units sat in a loan cut short until the sweep. Like a reservation's refusal, a deliberate weakening of
// the answer, never of the money: issued units and limits are still checked exactly by Stock.
func bucketedSoldOut(op Op, initial map[string]Rule) bool {
	return op.Kind == OpClaim && op.Outcome == Refused && op.Code == "sold_out" && initial[op.Campaign].Buckets > 1
}

// stateful are the refusals whose truth depends on the modelled state.
var stateful = map[string]bool{"sold_out": true, "limit_reached": true, "paused": true}

// Linearize checks each claim-mode campaign's history against the model.
//
// A call whose answer was lost is resolved against MySQL once the run has converged: if MySQL records
// no claim for its (user, request_id) it issued nothing that survived, and it leaves the model as a
// no-op; if MySQL records one, it may have been the call that was granted, and some call of that
// request must have been by the end. Without that, every lost
// answer doubles the states the search keeps, and a minute of faults makes the check undecidable in
// any budget. The exception is a lost answer followed by a loss of its campaign's cache data: its
// grant may have been made, seen by other claims, and lost with the data before it was durable, so
// it stays in the model, with an undo step within each such loss.
func Linearize(h History, s Snapshot, budget time.Duration) []Violation {
	recorded := map[campaignReq]bool{}
	for _, c := range s.Claims {
		recorded[campaignReq{c.Campaign, c.User, c.Request}] = true
	}
	claimID := h.ClaimID
	if claimID == nil {
		claimID = func(user, req string) string { return user + "|" + req }
	}
	byCampaign := map[string][]porcupine.Operation{}
	initial := map[string]Rule{}
	for _, op := range h.Ops {
		if op.Kind == OpPatch && op.Rule != nil {
			if r, ok := initial[op.Campaign]; !ok || op.Rule.Version < r.Version {
				initial[op.Campaign] = *op.Rule
			}
		}
	}
	excused := excusedByReservation(h, initial, recorded)
	mustHold := recordedRequests(h, recorded)
	for i, op := range h.Ops {
		if excused[i] || bucketedSoldOut(op, initial) {
			continue
		}
		call, ret := op.Call.UnixNano(), op.Return.UnixNano()
		switch {
		case op.Kind == OpPatch && op.Rule != nil && (op.Outcome == Applied || op.Outcome == Unknown):
			if !op.InSync || op.Outcome == Unknown {
				ret = math.MaxInt64 // the cache applies it through the queue, whenever that is
			}
			byCampaign[op.Campaign] = append(byCampaign[op.Campaign], porcupine.Operation{
				ClientId: op.Client, Input: modelIn{patch: op.Rule}, Output: modelOut{outcome: op.Outcome}, Call: call, Return: ret})
		case op.Kind == OpClaim && op.Outcome == Refused && !stateful[op.Code]:
			// A refusal for the clock, the audience, points or the rate limit neither depends on nor
			// changes the modelled state: it fits anywhere, and leaving it out keeps the search small.
		case op.Kind == OpClaim && op.Outcome == Unknown:
			isRecorded := recorded[campaignReq{op.Campaign, op.User, op.Request}]
			losses := lossesAfter(h.CacheLosses, op.Campaign, h.homeBucket(op.User, initial[op.Campaign].Buckets), op.Call)
			settled := op.Return.Add(h.Settle).UnixNano()
			if len(losses) == 0 {
				if !isRecorded {
					continue // it issued nothing that survived, and no one saw it: a no-op
				}
				byCampaign[op.Campaign] = append(byCampaign[op.Campaign], porcupine.Operation{
					ClientId: op.Client, Input: modelIn{user: op.User, req: op.Request},
					Output: modelOut{outcome: Unknown, code: op.Code}, Call: call, Return: settled})
				continue
			}
			mustLose := !isRecorded // then the last loss surely took it
			byCampaign[op.Campaign] = append(byCampaign[op.Campaign], porcupine.Operation{
				ClientId: op.Client, Input: modelIn{user: op.User, req: op.Request, lostClaim: i + 1},
				Output: modelOut{outcome: Unknown, code: op.Code}, Call: call, Return: settled})
			for k, l := range losses {
				if isRecorded && !remadeAfter(h, op, l.From) {
					continue // MySQL has its grant, and no other attempt could have made it again after this loss
				}
				byCampaign[op.Campaign] = append(byCampaign[op.Campaign], porcupine.Operation{
					ClientId: op.Client, Input: modelIn{user: op.User, req: op.Request, lostClaim: i + 1, undo: true,
						lastLoss: k == len(losses)-1, mustLose: mustLose},
					Output: modelOut{outcome: Unknown}, Call: max(call, l.From.UnixNano()), Return: l.To.UnixNano()})
			}
		case op.Kind == OpClaim:
			byCampaign[op.Campaign] = append(byCampaign[op.Campaign], porcupine.Operation{
				ClientId: op.Client, Input: modelIn{user: op.User, req: op.Request},
				Output: modelOut{outcome: op.Outcome, code: op.Code, claimID: op.ClaimID}, Call: call, Return: ret})
		}
	}
	var out []Violation
	ids := make([]string, 0, len(byCampaign))
	for id := range byCampaign {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		init, ok := initial[id]
		if !ok || init.Mode == "grant" {
			continue
		}
		// The creation is the model's initial state, not an operation.
		ops := byCampaign[id][:0:0]
		for _, o := range byCampaign[id] {
			if in := o.Input.(modelIn); in.patch != nil && in.patch.Version == init.Version {
				continue
			}
			ops = append(ops, o)
		}
		calls := len(ops)
		end := recordedInTheEnd(ops, mustHold[id])
		ops = append(ops, end...)
		m := newModel(init, claimID)
		res, info := porcupine.CheckOperationsVerbose(m.ToModel(), ops, budget)
		switch res {
		case porcupine.Illegal:
			held := ""
			if len(end) > 0 {
				keys := mustHold[id]
				held = fmt.Sprintf("; by the end, the %d requests MySQL records a claim for must each hold a unit (%s)",
					len(keys), strings.Join(keys[:min(len(keys), 8)], ", "))
			}
			out = append(out, violation(Linearizable, "campaign %s: no order of its %d calls explains the answers%s; longest explained prefix: %s",
				id, calls, held, longestPrefix(m, info)))
		case porcupine.Unknown:
			out = append(out, violation(LinearizableTBD, "campaign %s: %d calls not decided within %s", id, calls, budget))
		}
	}
	return out
}

// lossesAfter are the losses of the campaign bucket's cache data that had not ended when a call was
// made, by their end: each could take back a grant the call made, whenever it made it. A grant stays
// in Redis alone for at least the timer's replay age (5 s) after it was decided, and for as long as
// the broker is out of reach, since the timer replays it from the stream to the broker only; in the
// suite's 4 s workloads every later loss is inside that.
func lossesAfter(losses []Span, campaign string, bucket int, call time.Time) []Span {
	var out []Span
	for _, l := range losses {
		if l.To.After(call) && l.hits(campaign, bucket) {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].To.Before(out[b].To) })
	return out
}

// remadeAfter says whether another attempt of op's request could have made its grant again after a
// loss that began at from: one answered 201, or whose answer was lost, still running then.
func remadeAfter(h History, op Op, from time.Time) bool {
	for _, o := range h.Ops {
		if o.Kind != OpClaim || o.Campaign != op.Campaign || o.User != op.User || o.Request != op.Request || o.Call.Equal(op.Call) {
			continue
		}
		if (o.Outcome == Granted && o.Return.After(from)) || (o.Outcome == Unknown && o.Return.Add(h.Settle).After(from)) {
			return true
		}
	}
	return false
}

// longestPrefix describes the longest partial linearization porcupine found, ending at the call the
// model could not explain.
func longestPrefix(m porcupine.NondeterministicModel, info porcupine.LinearizationInfo) string {
	var best []porcupine.Operation
	for _, partition := range info.PartialLinearizationsOperations() {
		for _, lin := range partition {
			if len(lin) > len(best) {
				best = lin
			}
		}
	}
	parts := make([]string, 0, 6)
	from := max(0, len(best)-5)
	for _, o := range best[from:] {
		parts = append(parts, m.DescribeOperation(o.Input, o.Output))
	}
	return fmt.Sprintf("%d calls, ending %s", len(best), strings.Join(parts, "; "))
}
