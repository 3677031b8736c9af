// Package chaos runs the fault suite: for each seeded schedule it drives a mixed workload of operators
// and users through the local stack while faults are injected, heals everything, lets the queues and
// the timer jobs converge on their own, and checks the money invariants (local/faults/check) from the
// recorded client history and the stores.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FaultKind names one kind of fault.
type FaultKind string

const (
	// Toxics on a link (Target: mysql, redis, rocketmq), for Duration.
	Latency FaultKind = "latency" // Param: latency in ms, with jitter of half of it
	Timeout FaultKind = "timeout" // data stops and the connection closes after Param ms
	Reset   FaultKind = "reset"   // connections reset after Param ms
	Cut     FaultKind = "cut"     // the proxy is disabled: nothing connects, open connections close

	// Process faults, at an instant.
	RedisEmpty    FaultKind = "redis-restart-empty" // a cache loss
	RedisKeep     FaultKind = "redis-restart-data"  // a restart that keeps its data
	MySQLRestart  FaultKind = "mysql-restart"       // kill -9 and start on the same data
	BrokerRestart FaultKind = "broker-restart"      // on its data
	Kill          FaultKind = "kill"                // kill -9 of every instance of function Target

	// Deliveries the broker could make: a copy of a change event or of a granted claim's grant, sent
	// now (Target: change or grant).
	Duplicate FaultKind = "duplicate"
	// A change event of an older version than the campaign's, sent now.
	Late FaultKind = "late"
)

// Fault is one scheduled fault.
type Fault struct {
	At       time.Duration // from the start of the workload
	Kind     FaultKind
	Target   string
	Duration time.Duration // toxics only
	Param    int
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s:%s@%dms", f.Kind, f.Target, f.At.Milliseconds())
	if f.Duration > 0 {
		s += fmt.Sprintf("+%dms", f.Duration.Milliseconds())
	}
	if f.Param > 0 {
		s += fmt.Sprintf("=%d", f.Param)
	}
	return s
}

// Schedule is what one run injects; Seed also drives the workload's choices.
type Schedule struct {
	Seed   uint64
	Faults []Fault
}

// String is the form `make faults SCHEDULE=...` takes back.
func (s Schedule) String() string {
	parts := make([]string, len(s.Faults))
	for i, f := range s.Faults {
		parts[i] = f.String()
	}
	return fmt.Sprintf("%d/%s", s.Seed, strings.Join(parts, ","))
}

// ParseSchedule reads Schedule.String's form.
func ParseSchedule(text string) (Schedule, error) {
	seedText, rest, _ := strings.Cut(text, "/")
	seed, err := strconv.ParseUint(seedText, 10, 64)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: seed: %w", text, err)
	}
	s := Schedule{Seed: seed}
	for _, part := range strings.Split(rest, ",") {
		if part == "" {
			continue
		}
		var f Fault
		head, timing, ok := strings.Cut(part, "@")
		if !ok {
			return Schedule{}, fmt.Errorf("fault %q: want kind:target@ms[+ms][=param]", part)
		}
		kind, target, _ := strings.Cut(head, ":")
		f.Kind, f.Target = FaultKind(kind), target
		timing, param, hasParam := strings.Cut(timing, "=")
		if hasParam {
			if f.Param, err = strconv.Atoi(param); err != nil {
				return Schedule{}, fmt.Errorf("fault %q: %w", part, err)
			}
		}
		atText, durText, hasDur := strings.Cut(timing, "+")
		at, err := strconv.Atoi(strings.TrimSuffix(atText, "ms"))
		if err != nil {
			return Schedule{}, fmt.Errorf("fault %q: %w", part, err)
		}
		f.At = time.Duration(at) * time.Millisecond
		if hasDur {
			d, err := strconv.Atoi(strings.TrimSuffix(durText, "ms"))
			if err != nil {
				return Schedule{}, fmt.Errorf("fault %q: %w", part, err)
			}
			f.Duration = time.Duration(d) * time.Millisecond
		}
		s.Faults = append(s.Faults, f)
	}
	return s, nil
}

// maxLatency is the longest latency toxic a schedule injects (its jitter is half as much again).
const maxLatency = 1500 * time.Millisecond

var (
	links     = []string{"mysql", "redis", "rocketmq", "mysql-ledger"}
	functions = []string{"claim", "cachesync", "ledger", "timer", "rules"}
)

// Generate draws a schedule inside a workload of the given length: one to four independent faults at
// random moments, or (one time in three) a compound one, where a link stays cut, slowed or stalled
// while a process fails inside that window, since the costly bugs live where two faults overlap.
func Generate(seed uint64, workload time.Duration) Schedule {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := Schedule{Seed: seed}
	ms := int(workload.Milliseconds())
	if rng.IntN(3) == 0 {
		link := Fault{At: time.Duration(rng.IntN(ms/2)) * time.Millisecond, Target: links[rng.IntN(len(links))],
			Duration: time.Duration(2000+rng.IntN(2500)) * time.Millisecond}
		switch rng.IntN(3) {
		case 0:
			link.Kind = Cut
		case 1:
			link.Kind, link.Param = Timeout, 100+rng.IntN(1000)
		default:
			link.Kind, link.Param = Latency, 500+rng.IntN(int(maxLatency.Milliseconds())-500)
		}
		window := min(link.Duration, workload-link.At)
		inside := Fault{At: link.At + time.Duration(rng.IntN(int(window.Milliseconds())))*time.Millisecond}
		switch rng.IntN(6) {
		case 0, 1:
			inside.Kind = RedisEmpty
		case 2:
			inside.Kind = MySQLRestart
		case 3:
			inside.Kind = BrokerRestart
		default:
			inside.Kind, inside.Target = Kill, functions[rng.IntN(len(functions))]
		}
		s.Faults = []Fault{link, inside}
		return s
	}
	for range 1 + rng.IntN(4) {
		f := Fault{At: time.Duration(rng.IntN(ms*3/4)) * time.Millisecond}
		switch pick := rng.IntN(100); {
		case pick < 14:
			f.Kind, f.Target, f.Param = Latency, links[rng.IntN(len(links))], 50+rng.IntN(int(maxLatency.Milliseconds())-50)
		case pick < 22:
			f.Kind, f.Target, f.Param = Timeout, links[rng.IntN(len(links))], 100+rng.IntN(1500)
		case pick < 30:
			f.Kind, f.Target, f.Param = Reset, links[rng.IntN(len(links))], rng.IntN(50)
		case pick < 48:
			f.Kind, f.Target = Cut, links[rng.IntN(len(links))]
		case pick < 56:
			f.Kind = RedisEmpty
		case pick < 61:
			f.Kind = RedisKeep
		case pick < 66:
			f.Kind = MySQLRestart
		case pick < 72:
			f.Kind = BrokerRestart
		case pick < 88:
			f.Kind, f.Target = Kill, functions[rng.IntN(len(functions))]
		case pick < 95:
			f.Kind, f.Target = Duplicate, []string{"change", "grant"}[rng.IntN(2)]
		default:
			f.Kind, f.Target = Late, "change"
		}
		switch f.Kind {
		case Latency, Timeout, Reset, Cut:
			f.Duration = time.Duration(300+rng.IntN(4200)) * time.Millisecond
		}
		s.Faults = append(s.Faults, f)
	}
	sort.SliceStable(s.Faults, func(i, j int) bool { return s.Faults[i].At < s.Faults[j].At })
	return s
}
