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

	// Redis Cluster faults (REDIS=cluster), at an instant, on the shard serving the campaign named by
	// Target (open, paid, grant or window: the master of its hash tag's slot when the fault fires).
	// Cluster faults run one at a time: each waits until the one before it has healed.
	RedisFailover   FaultKind = "redis-failover"    // CLUSTER FAILOVER on the master's replica (a coordinated handover)
	RedisMasterKill FaultKind = "redis-master-kill" // kill -9 of the master; its replica is elected, then the killed node rejoins empty as a replica
	RedisShardEmpty FaultKind = "redis-shard-empty" // the shard loses its data (master and replica): a cache loss of its slots

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
	links        = []string{"mysql", "redis", "rocketmq", "mysql-ledger"}
	clusterLinks = []string{"mysql", "rocketmq", "mysql-ledger"} // a cluster has no Toxiproxy link (see stack.Options)
	functions    = []string{"claim", "cachesync", "ledger", "timer", "rules"}
	// shards names the campaigns whose shard a cluster fault hits (the workload's campaigns).
	shards = []string{"open", "paid", "grant", "window"}
)

// Redis modes of a run (Config.Redis, REDIS in the environment).
const (
	RedisStandalone = "standalone"
	RedisCluster    = "cluster"
)

// ClusterOnly reports whether a fault kind needs a Redis Cluster.
func ClusterOnly(k FaultKind) bool {
	return k == RedisFailover || k == RedisMasterKill || k == RedisShardEmpty
}

// StandaloneOnly reports whether a fault needs the standalone Redis: its restarts, and the Toxiproxy
// link in front of it.
func StandaloneOnly(f Fault) bool {
	switch f.Kind {
	case RedisEmpty, RedisKeep:
		return true
	case Latency, Timeout, Reset, Cut:
		return f.Target == "redis"
	}
	return false
}

// Generate draws a schedule inside a workload of the given length for a standalone Redis: one to four
// independent faults at random moments, or (one time in three) a compound one, where a link stays
// cut, slowed or stalled while a process fails inside that window, since the costly bugs live where
// two faults overlap.
func Generate(seed uint64, workload time.Duration) Schedule { return generate(seed, workload, false) }

// GenerateCluster draws a schedule for a stack on a Redis Cluster: the same shapes, with the
// standalone Redis's restarts replaced by failovers, master kills and shard losses, no Redis link
// fault (the functions reach the cluster's nodes directly), and at least one cluster fault in every
// schedule.
func GenerateCluster(seed uint64, workload time.Duration) Schedule {
	return generate(seed, workload, true)
}

// GenerateFor draws for the given Redis mode.
func GenerateFor(redis string, seed uint64, workload time.Duration) Schedule {
	return generate(seed, workload, redis == RedisCluster)
}

func generate(seed uint64, workload time.Duration, cluster bool) Schedule {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := Schedule{Seed: seed}
	ms := int(workload.Milliseconds())
	linkSet := links
	if cluster {
		linkSet = clusterLinks
	}
	// clusterFault draws one of the cluster's own faults on one campaign's shard: failovers and master
	// kills twice as often as a shard's loss.
	clusterFault := func(f *Fault) {
		f.Kind = []FaultKind{RedisFailover, RedisFailover, RedisMasterKill, RedisMasterKill, RedisShardEmpty}[rng.IntN(5)]
		f.Target = shards[rng.IntN(len(shards))]
	}
	if rng.IntN(3) == 0 {
		link := Fault{At: time.Duration(rng.IntN(ms/2)) * time.Millisecond, Target: linkSet[rng.IntN(len(linkSet))],
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
			if cluster {
				clusterFault(&inside)
			} else {
				inside.Kind = RedisEmpty
			}
		case 2:
			inside.Kind = MySQLRestart
		case 3:
			inside.Kind = BrokerRestart
		default:
			inside.Kind, inside.Target = Kill, functions[rng.IntN(len(functions))]
		}
		s.Faults = []Fault{link, inside}
		if cluster {
			s.Faults = withClusterFault(rng, s.Faults, ms, clusterFault)
		}
		return s
	}
	for range 1 + rng.IntN(4) {
		f := Fault{At: time.Duration(rng.IntN(ms*3/4)) * time.Millisecond}
		switch pick := rng.IntN(100); {
		case pick < 14:
			f.Kind, f.Target, f.Param = Latency, linkSet[rng.IntN(len(linkSet))], 50+rng.IntN(int(maxLatency.Milliseconds())-50)
		case pick < 22:
			f.Kind, f.Target, f.Param = Timeout, linkSet[rng.IntN(len(linkSet))], 100+rng.IntN(1500)
		case pick < 30:
			f.Kind, f.Target, f.Param = Reset, linkSet[rng.IntN(len(linkSet))], rng.IntN(50)
		case pick < 48:
			f.Kind, f.Target = Cut, linkSet[rng.IntN(len(linkSet))]
		case pick < 61 && cluster:
			clusterFault(&f)
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
	if cluster {
		s.Faults = withClusterFault(rng, s.Faults, ms, clusterFault)
	}
	sort.SliceStable(s.Faults, func(i, j int) bool { return s.Faults[i].At < s.Faults[j].At })
	return s
}

// withClusterFault adds a cluster fault at a random moment of the workload's first three quarters
// when the schedule drew none: a failover or a master kill mid-rush is what a cluster run is for.
func withClusterFault(rng *rand.Rand, faults []Fault, ms int, draw func(*Fault)) []Fault {
	for _, f := range faults {
		if ClusterOnly(f.Kind) {
			return faults
		}
	}
	f := Fault{At: time.Duration(rng.IntN(ms*3/4)) * time.Millisecond}
	draw(&f)
	faults = append(faults, f)
	sort.SliceStable(faults, func(i, j int) bool { return faults[i].At < faults[j].At })
	return faults
}
