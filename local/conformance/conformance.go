// Package conformance runs the same broker scenarios, through the official clients, against our
// emulator and against Apache RocketMQ, and reports a matrix of scenario × client × broker. A scenario
// that passes on one broker and fails on the other is a difference: a bug to fix in the emulator, or a
// limitation documented where the scenario says so.
package conformance

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Target is a running broker the scenarios talk to.
type Target struct {
	Name     string // emulator or apache
	Endpoint string // gRPC proxy address
	// Restart restarts the broker on the same store and the same endpoint, for the durability scenario.
	Restart func(ctx context.Context) error
}

// Topic and Group declare what a scenario needs the broker to have before it runs: the real broker
// creates neither for gRPC clients, and a group's delivery attempts and FIFO order are its own config.
type Topic struct {
	Name string
	Type string // NORMAL, FIFO, DELAY, TRANSACTION
}

type Group struct {
	Name        string
	MaxAttempts int // 0: the broker's default (17)
	FIFO        bool
}

// Scenario is one behaviour, its resources named for one client so clients never share a queue.
type Scenario struct {
	Name string
	// Topics and groups, given the client's prefix (e.g. "go").
	Topics func(client string) []Topic
	Groups func(client string) []Group
}

// Result is one cell of the matrix.
type Result struct {
	Scenario, Client, Broker string
	Status                   string // PASS, FAIL, SKIP
	Detail                   string
	Took                     time.Duration
}

// Names of the scenarios, in the order they run; restart runs last because it restarts the broker.
const (
	SendReceiveAck  = "send-receive-ack"
	Redelivery      = "redelivery-after-invisible"
	ChangeInvisible = "change-invisible-duration"
	MaxAttemptsDLQ  = "max-attempts-dlq"
	TagFilter       = "tag-filter"
	TwoGroups       = "two-groups"
	Delay           = "delay"
	FIFOGroup       = "fifo-group"
	Transaction     = "transaction-check-back"
	UnknownTopic    = "unknown-topic"
	RestartDurable  = "restart-durability"
	// The two phases of restart durability, which RunMatrix runs around one restart for all clients.
	RestartBefore    = RestartDurable + "/before"
	RestartAfter     = RestartDurable + "/after"
	dlqMaxAttempts   = 2
	scenarioInvisble = 2 * time.Second
)

// Scenarios lists every scenario with the resources it needs.
func Scenarios() []Scenario {
	one := func(s, typ string, g Group) Scenario {
		return Scenario{Name: s,
			Topics: func(c string) []Topic { return []Topic{{Name: TopicName(c, s), Type: typ}} },
			Groups: func(c string) []Group { g := g; g.Name = GroupName(c, s, ""); return []Group{g} },
		}
	}
	return []Scenario{
		one(SendReceiveAck, "NORMAL", Group{}),
		one(Redelivery, "NORMAL", Group{}),
		one(ChangeInvisible, "NORMAL", Group{}),
		{Name: MaxAttemptsDLQ,
			Topics: func(c string) []Topic { return []Topic{{Name: TopicName(c, MaxAttemptsDLQ), Type: "NORMAL"}} },
			Groups: func(c string) []Group {
				return []Group{{Name: GroupName(c, MaxAttemptsDLQ, ""), MaxAttempts: dlqMaxAttempts}, {Name: GroupName(c, MaxAttemptsDLQ, "reader")}}
			}},
		one(TagFilter, "NORMAL", Group{}),
		{Name: TwoGroups,
			Topics: func(c string) []Topic { return []Topic{{Name: TopicName(c, TwoGroups), Type: "NORMAL"}} },
			Groups: func(c string) []Group {
				return []Group{{Name: GroupName(c, TwoGroups, "a")}, {Name: GroupName(c, TwoGroups, "b")}}
			}},
		one(Delay, "DELAY", Group{}),
		one(FIFOGroup, "FIFO", Group{FIFO: true}),
		one(Transaction, "TRANSACTION", Group{}),
		{Name: UnknownTopic, Topics: func(string) []Topic { return nil }, Groups: func(string) []Group { return nil }},
		one(RestartDurable, "NORMAL", Group{}),
	}
}

// TopicName and GroupName name a scenario's resources for one client.
func TopicName(client, scenario string) string { return "conf-" + client + "-" + scenario }
func GroupName(client, scenario, suffix string) string {
	n := "GID_conf_" + client + "_" + strings.ReplaceAll(scenario, "-", "_")
	if suffix != "" {
		n += "_" + suffix
	}
	return n
}

// Resources collects the topics and groups of every scenario for the given clients.
func Resources(clients []string) ([]Topic, []Group) {
	var ts []Topic
	var gs []Group
	for _, c := range clients {
		for _, s := range Scenarios() {
			ts = append(ts, s.Topics(c)...)
			gs = append(gs, s.Groups(c)...)
		}
	}
	return ts, gs
}

// RunMatrix runs the named scenarios (all when names is empty) with each client against t. Restart
// durability runs in two phases around a single restart of the broker shared by all clients (a restart
// of Apache RocketMQ takes up to a minute): every client's RestartBefore, the restart, every client's
// RestartAfter; its cell passes when both phases pass. With parallel, the clients run at the same time
// (each has its own topics and groups), each phase ending for all of them before the next begins.
func RunMatrix(ctx context.Context, t Target, clients []string, runners map[string]Runner, names []string, parallel bool, progress io.Writer) []Result {
	if len(names) == 0 {
		for _, s := range Scenarios() {
			names = append(names, s.Name)
		}
	}
	var rest []string
	restart := false
	for _, n := range names {
		if n == RestartDurable {
			restart = true
		} else {
			rest = append(rest, n)
		}
	}
	var out []Result
	phase := func(c string, names []string) []Result {
		start := time.Now()
		rs := runners[c].Run(ctx, t, names)
		fmt.Fprintf(progress, "conformance: %s on %s: %s in %s\n", c, t.Name, strings.Join(names, ","), time.Since(start).Round(time.Second))
		for _, r := range rs {
			if r.Status != "PASS" {
				fmt.Fprintf(progress, "conformance: %s %s/%s@%s %s\n", r.Status, r.Scenario, c, t.Name, r.Detail)
			}
		}
		return rs
	}
	// each runs one phase for every client and returns the results in the order of clients.
	each := func(names []string) [][]Result {
		res := make([][]Result, len(clients))
		var wg sync.WaitGroup
		for i, c := range clients {
			if !parallel {
				res[i] = phase(c, names)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = phase(c, names)
			}()
		}
		wg.Wait()
		return res
	}
	if len(rest) > 0 {
		for _, rs := range each(rest) {
			out = append(out, rs...)
		}
	}
	if !restart {
		return out
	}
	one := func(rs []Result) Result {
		if len(rs) != 1 {
			return Result{Status: "FAIL", Detail: fmt.Sprintf("%d results for one phase", len(rs))}
		}
		return rs[0]
	}
	before := map[string]Result{}
	for i, rs := range each([]string{RestartBefore}) {
		before[clients[i]] = one(rs)
	}
	var restartErr error
	start := time.Now()
	if t.Restart == nil {
		restartErr = fmt.Errorf("%s cannot restart", t.Name)
	} else {
		restartErr = t.Restart(ctx)
	}
	fmt.Fprintf(progress, "conformance: %s restarted in %s (%v)\n", t.Name, time.Since(start).Round(100*time.Millisecond), restartErr)
	for i, rs := range each([]string{RestartAfter}) {
		c, after, b := clients[i], one(rs), before[clients[i]]
		r := Result{Scenario: RestartDurable, Client: c, Broker: t.Name, Status: "PASS", Took: b.Took + after.Took}
		switch {
		case b.Status == "SKIP" || after.Status == "SKIP":
			r.Status, r.Detail = "SKIP", b.Detail+after.Detail
		case b.Status != "PASS":
			r.Status, r.Detail = b.Status, "before the restart: "+b.Detail
		case restartErr != nil:
			r.Status, r.Detail = "FAIL", "restart: "+restartErr.Error()
		case after.Status != "PASS":
			r.Status, r.Detail = after.Status, "after the restart: "+after.Detail
		}
		out = append(out, r)
	}
	return out
}

// PrintMatrix writes one row per scenario and a column per client × broker.
func PrintMatrix(w io.Writer, results []Result) {
	cols := map[string]bool{}
	cell := map[[2]string]Result{}
	for _, r := range results {
		col := r.Client + "@" + r.Broker
		cols[col] = true
		cell[[2]string{r.Scenario, col}] = r
	}
	var colList []string
	for c := range cols {
		colList = append(colList, c)
	}
	sort.Strings(colList)
	fmt.Fprintf(w, "%-28s", "scenario")
	for _, c := range colList {
		fmt.Fprintf(w, " %-16s", c)
	}
	fmt.Fprintln(w)
	for _, s := range Scenarios() {
		fmt.Fprintf(w, "%-28s", s.Name)
		for _, c := range colList {
			r, ok := cell[[2]string{s.Name, c}]
			v := "-"
			if ok {
				v = r.Status
			}
			fmt.Fprintf(w, " %-16s", v)
		}
		fmt.Fprintln(w)
	}
	for _, r := range results {
		if r.Status != "PASS" && r.Detail != "" {
			fmt.Fprintf(w, "%s %s/%s@%s: %s\n", r.Status, r.Scenario, r.Client, r.Broker, r.Detail)
		}
	}
}
