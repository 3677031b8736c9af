package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/local/faults/check"
	"github.com/benefit-issuance/benefits/local/services"
	"github.com/benefit-issuance/benefits/local/stack"
	"github.com/benefit-issuance/benefits/shared/domain"
	"github.com/benefit-issuance/benefits/shared/mq"
	"github.com/benefit-issuance/benefits/shared/mq/rmqclient"
	"github.com/benefit-issuance/benefits/shared/rediscache"
)

// Target is what the injector acts on: the stack's processes and links. An Apache RocketMQ broker
// would implement RestartBroker the same way.
type Target interface {
	RestartRedis(ctx context.Context, keepData bool) error
	RestartMySQL(ctx context.Context) error
	RestartBroker(ctx context.Context) error
	KillInstances(function string) int
	InFlight(function string) int
}

// ClusterTarget is what the injector acts on when the stack runs a Redis Cluster: the shard serving a
// key (its master at the time of the call).
type ClusterTarget interface {
	FailoverRedis(ctx context.Context, key string) error
	// KillRedisMaster and EmptyRedisShard return when the shard's data was lost: the span around
	// the kill or the FLUSHALL, not the election and resync after it.
	KillRedisMaster(ctx context.Context, key string) (check.Span, error)
	EmptyRedisShard(ctx context.Context, key string) (check.Span, error)
	// MastersOfKeys are the masters serving each key now.
	MastersOfKeys(ctx context.Context, keys ...string) ([]string, error)
	// HealRedis restarts every killed node and waits until every slot is served and every replica in
	// sync.
	HealRedis(ctx context.Context) error
}

// stackTarget adapts a running stack.
type stackTarget struct{ s *stack.Stack }

func (t stackTarget) cluster() (*services.RedisCluster, error) {
	if t.s.Cluster == nil {
		return nil, errors.New("the stack runs a standalone Redis: cluster faults need REDIS=cluster")
	}
	return t.s.Cluster, nil
}

// masterOf is the stack's cluster and the address of the master serving key.
func (t stackTarget) masterOf(ctx context.Context, key string) (*services.RedisCluster, string, error) {
	c, err := t.cluster()
	if err != nil {
		return nil, "", err
	}
	master, err := c.MasterOfKey(ctx, key)
	return c, master, err
}

func (t stackTarget) FailoverRedis(ctx context.Context, key string) error {
	c, master, err := t.masterOf(ctx, key)
	if err != nil {
		return err
	}
	_, err = c.Failover(ctx, master)
	return err
}

// KillRedisMaster kills the master with SIGKILL, waits until its replica has been elected, then
// starts the killed node again: it rejoins empty, as the new master's replica, and the shard
// acknowledges claims again (REDIS_WAIT_REPLICAS=1) once it is in sync. The writes its replica
// lacked are lost at the kill; what the new master takes after the election is kept.
func (t stackTarget) KillRedisMaster(ctx context.Context, key string) (check.Span, error) {
	c, master, err := t.masterOf(ctx, key)
	if err != nil {
		return check.Span{}, err
	}
	replica, err := c.ReplicaOf(ctx, master)
	if err != nil {
		return check.Span{}, err
	}
	lost, err := spanOf(func() error { return c.KillNode(master) })
	if err != nil {
		return lost, err
	}
	if err := c.WaitMaster(ctx, replica, 60*time.Second); err != nil {
		return lost, err
	}
	return lost, c.RestartNode(ctx, master)
}

// EmptyRedisShard empties the master serving key (FLUSHALL); its replica follows, so the shard has
// lost its data, slot markers included, as one whose master and replica both died would have.
func (t stackTarget) EmptyRedisShard(ctx context.Context, key string) (check.Span, error) {
	_, master, err := t.masterOf(ctx, key)
	if err != nil {
		return check.Span{}, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: master, MaxRetries: -1})
	defer rdb.Close()
	return spanOf(func() error { return rdb.FlushAll(ctx).Err() })
}

// spanOf runs what loses cache data and returns when it did: from its start to its return.
func spanOf(loses func() error) (check.Span, error) {
	from := time.Now()
	err := loses()
	return check.Span{From: from, To: time.Now()}, err
}

func (t stackTarget) MastersOfKeys(ctx context.Context, keys ...string) ([]string, error) {
	c, err := t.cluster()
	if err != nil {
		return nil, err
	}
	return c.MastersOfKeys(ctx, keys...)
}

func (t stackTarget) HealRedis(ctx context.Context) error {
	c, err := t.cluster()
	if err != nil {
		return err
	}
	return c.Heal(ctx, 2*time.Minute)
}

func (t stackTarget) RestartRedis(ctx context.Context, keep bool) error {
	return t.s.RestartRedis(ctx, keep)
}
func (t stackTarget) RestartMySQL(ctx context.Context) error  { return t.s.RestartMySQL(ctx) }
func (t stackTarget) RestartBroker(ctx context.Context) error { return t.s.RestartBroker(ctx) }
func (t stackTarget) KillInstances(fn string) int             { return t.s.Emulator.KillInstances(fn) }
func (t stackTarget) InFlight(fn string) int                  { return t.s.Emulator.InFlight(fn) }

// Deliveries is what the injector may send again: recent change events and granted claims.
type Deliveries interface {
	RecentCampaign() (id string, version int64, ok bool)
	RecentGrant() (domain.Claim, bool)
}

// injector applies a schedule's faults and heals them.
type injector struct {
	target  Target
	toxi    *toxiclient.Client
	pub     *rmqclient.Publisher
	deliver Deliveries
	log     func(format string, args ...any)

	// campaigns names the schedule's campaigns (open, paid, grant, window) for cluster faults' targets;
	// buckets is how many buckets each (by id) has, to tell which a shard's loss takes.
	campaigns   map[string]string
	buckets     map[string]int
	clusterMode bool

	mu       sync.Mutex
	injected map[FaultKind]int
	errs     []string
	losses   []check.Span // the cache losses of the schedule, for the linearizability check
	// clusterMu runs cluster faults one at a time: a failover or kill waits for the one before it to
	// have healed (a shard cannot fail over while its replica is still rejoining).
	clusterMu sync.Mutex
}

func (in *injector) proxy(name string) (*toxiclient.Proxy, error) { return in.toxi.Proxy(name) }

// run applies every fault at its time from start until ctx ends; toxics are removed after their
// duration. It returns when every fault has been applied and healed.
func (in *injector) run(ctx context.Context, start time.Time, faults []Fault) {
	var wg sync.WaitGroup
	for i, f := range faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(f.At))):
			}
			if err := in.apply(ctx, i, f); err != nil {
				in.mu.Lock()
				in.errs = append(in.errs, fmt.Sprintf("%s: %v", f, err))
				in.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// bucketsBeside are the schedule's campaign buckets on the master that serves key.
func (in *injector) bucketsBeside(ctx context.Context, ct ClusterTarget, key string) (map[string][]int, error) {
	type bucket struct {
		id string
		b  int
	}
	keys := []string{key}
	var of []bucket
	for _, id := range in.campaigns {
		for b := range max(1, in.buckets[id]) {
			keys = append(keys, rediscache.CampaignHashKey(id, b))
			of = append(of, bucket{id, b})
		}
	}
	masters, err := ct.MastersOfKeys(ctx, keys...)
	if err != nil {
		return nil, err
	}
	on := map[string][]int{}
	for i, m := range masters[1:] {
		if m == masters[0] {
			on[of[i].id] = append(on[of[i].id], of[i].b)
		}
	}
	return on, nil
}

// lost records a cache loss.
func (in *injector) lost(span check.Span) {
	in.mu.Lock()
	in.losses = append(in.losses, span)
	in.mu.Unlock()
}

func (in *injector) count(k FaultKind) {
	in.mu.Lock()
	in.injected[k]++
	in.mu.Unlock()
}

func (in *injector) apply(ctx context.Context, i int, f Fault) error {
	in.log("  fault %s", f)
	in.count(f.Kind)
	switch f.Kind {
	case Latency, Timeout, Reset, Cut:
		name := fmt.Sprintf("chaos-%d", i)
		for _, proxy := range proxiesOf(f.Target) {
			p, err := in.proxy(proxy)
			if err != nil {
				return err
			}
			switch f.Kind {
			case Latency:
				_, err = p.AddToxic(name, "latency", "downstream", 1, toxiclient.Attributes{"latency": f.Param, "jitter": f.Param / 2})
			case Timeout:
				_, err = p.AddToxic(name, "timeout", "downstream", 1, toxiclient.Attributes{"timeout": f.Param})
			case Reset:
				_, err = p.AddToxic(name, "reset_peer", "downstream", 1, toxiclient.Attributes{"timeout": f.Param})
			case Cut:
				err = p.Disable()
			}
			if err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(f.Duration):
		}
		for _, proxy := range proxiesOf(f.Target) {
			// Read the proxy afresh: another fault may have changed it meanwhile.
			p, err := in.proxy(proxy)
			if err != nil {
				return err
			}
			if f.Kind == Cut {
				err = p.Enable()
			} else {
				err = p.RemoveToxic(name)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case RedisEmpty, RedisKeep:
		if f.Kind == RedisKeep {
			return in.target.RestartRedis(ctx, true)
		}
		// The data is lost when the process stops, some time before the restart returns.
		lost, err := spanOf(func() error { return in.target.RestartRedis(ctx, false) })
		in.lost(lost)
		return err
	case RedisFailover, RedisMasterKill, RedisShardEmpty:
		ct, ok := in.target.(ClusterTarget)
		if !ok {
			return fmt.Errorf("%s needs a Redis Cluster (REDIS=cluster)", f.Kind)
		}
		id, ok := in.campaigns[f.Target]
		if !ok {
			return fmt.Errorf("%s: no campaign %q (want one of %s)", f.Kind, f.Target, strings.Join(shards, ", "))
		}
		key := rediscache.CampaignHashKey(id, 0)
		in.clusterMu.Lock()
		defer in.clusterMu.Unlock()
		if f.Kind == RedisFailover {
			return ct.FailoverRedis(ctx, key) // coordinated, its replica in sync: it loses nothing
		}
		onShard, err := in.bucketsBeside(ctx, ct, key)
		if err != nil {
			return err
		}
		var lost check.Span
		if f.Kind == RedisMasterKill {
			lost, err = ct.KillRedisMaster(ctx, key)
		} else {
			lost, err = ct.EmptyRedisShard(ctx, key)
		}
		if !lost.From.IsZero() {
			lost.Buckets = onShard
			in.lost(lost)
			in.log("  %s lost the data of campaign buckets %v (%s)", f, onShard, lost.To.Sub(lost.From).Round(time.Millisecond))
		}
		return err
	case MySQLRestart:
		return in.target.RestartMySQL(ctx)
	case BrokerRestart:
		return in.target.RestartBroker(ctx)
	case Kill:
		// Mid-invocation: wait (a bounded time) until the function is running something, so the kill
		// lands between a claim's Redis calls, inside cachesync's apply, a ledger batch or a timer job.
		deadline := time.Now().Add(2 * time.Second)
		for in.target.InFlight(f.Target) == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		busy := in.target.InFlight(f.Target) > 0
		in.target.KillInstances(f.Target)
		if busy {
			in.count("kill-mid-invocation")
		}
		return nil
	case Duplicate, Late:
		pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if f.Target == "grant" {
			c, ok := in.deliver.RecentGrant()
			if !ok {
				return nil
			}
			return in.pub.PublishGrant(pubCtx, c)
		}
		id, version, ok := in.deliver.RecentCampaign()
		if !ok {
			return nil
		}
		if f.Kind == Late {
			version = max(1, version-1)
		}
		return in.pub.PublishChange(pubCtx, mq.ChangeEvent{Entity: mq.EntityCampaign, ID: id, Version: version})
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

// proxiesOf names the stack's proxies a link fault acts on: MySQL's link is every function's, the
// ledger's own included; mysql-ledger is the ledger's alone.
func proxiesOf(target string) []string {
	if target == "mysql" {
		return []string{"mysql", "mysql-ledger"}
	}
	return []string{target}
}

// heal removes every toxic and enables every proxy, whatever a schedule left behind, and on a Redis
// Cluster restarts any killed node and waits until the cluster is healthy.
func (in *injector) heal(ctx context.Context) error {
	if ct, ok := in.target.(ClusterTarget); ok && in.clusterMode {
		in.clusterMu.Lock()
		err := ct.HealRedis(ctx)
		in.clusterMu.Unlock()
		if err != nil {
			return fmt.Errorf("heal: %w", err)
		}
	}
	proxies, err := in.toxi.Proxies()
	if err != nil {
		return err
	}
	var errs []string
	for name, p := range proxies {
		for _, t := range p.ActiveToxics {
			if err := p.RemoveToxic(t.Name); err != nil && !strings.Contains(err.Error(), "not found") {
				errs = append(errs, name+": "+err.Error())
			}
		}
		if !p.Enabled {
			if err := p.Enable(); err != nil {
				errs = append(errs, name+": "+err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errs, "; "))
	}
	return nil
}
