package rediscache

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune a Cache beyond its client.
type Options struct {
	// ReplicaAcks is how many replicas of a slot's master must hold a write an acknowledged claim
	// depends on (the unit reserved and recorded in the campaign's slot, the points debited in the
	// user's, the confirmation) before the claim may be acknowledged. Redis replicates asynchronously:
	// a master that dies (kill -9, a crashed host) takes with it the writes its replica had not yet
	// received, and the replica it is failed over to would sell those units again. With ReplicaAcks
	// set, each such write is followed on the same connection by WAIT, and a write not held by enough
	// replicas within ReplicaAckTimeout fails the claim as retryable (503, outcome unknown; a retry with
	// the same request id replays it). 0 (the default; standalone Redis has no replica to wait for)
	// disables it. It needs a server that accepts WAIT: a cluster reached directly, or a standalone
	// with replicas; most proxies refuse it.
	ReplicaAcks       int
	ReplicaAckTimeout time.Duration // default 100ms
}

// NewWith is New with Options.
func NewWith(rdb redis.UniversalClient, o Options) *Cache {
	if o.ReplicaAckTimeout <= 0 {
		o.ReplicaAckTimeout = 100 * time.Millisecond
	}
	c := New(rdb)
	c.opts = o
	return c
}

// runDurable runs a write script and, with ReplicaAcks set, waits for the slot master's replicas to
// hold it. WAIT counts the writes of its own connection, so the script and WAIT go in one pipeline to
// the master of the script's slot (on a cluster, that master's own client).
func (c *Cache) runDurable(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	if c.opts.ReplicaAcks <= 0 {
		return s.Run(ctx, c.rdb, keys, args...)
	}
	var node redis.Cmdable = c.rdb
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(err)
			return cmd
		}
		node = m
	}
	run := func(eval func(p redis.Pipeliner) *redis.Cmd) (*redis.Cmd, *redis.IntCmd) {
		pipe := node.Pipeline()
		cmd := eval(pipe)
		wait := redis.NewIntCmd(ctx, "wait", c.opts.ReplicaAcks, c.opts.ReplicaAckTimeout.Milliseconds())
		_ = pipe.Process(ctx, wait)
		_, _ = pipe.Exec(ctx)
		return cmd, wait
	}
	cmd, wait := run(func(p redis.Pipeliner) *redis.Cmd { return s.EvalSha(ctx, p, keys, args...) })
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd, wait = run(func(p redis.Pipeliner) *redis.Cmd { return s.Eval(ctx, p, keys, args...) })
	}
	switch {
	case cmd.Err() != nil:
		if cc, ok := c.rdb.(*redis.ClusterClient); ok && (redis.HasErrorPrefix(cmd.Err(), "MOVED") || redis.HasErrorPrefix(cmd.Err(), "ASK")) {
			// The node client does not follow redirects (the cluster client would): the slot moved (a
			// failover, a reshard), so this claim fails (503) and the slot map is reloaded for the next.
			cc.ReloadState(ctx)
		}
	case wait.Err() != nil:
		cmd.SetErr(wait.Err())
	case wait.Val() < int64(c.opts.ReplicaAcks):
		// Not an error of the script: the write is on the master and may yet be lost with it.
		cmd.SetErr(fmt.Errorf("rediscache: write held by %d of %d replicas after %s", wait.Val(), c.opts.ReplicaAcks, c.opts.ReplicaAckTimeout))
	}
	return cmd
}
