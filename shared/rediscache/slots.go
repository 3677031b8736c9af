package rediscache

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Readiness is kept per hash slot, not in one key. On Redis Cluster a shard can come back empty on its
// own (its master and replica both lost, or a master restarted empty before its replica caught up)
// while the others keep their data: a single "ready" key would live on one shard and could survive the
// loss of another, and claims would then be decided against an empty campaign or user entry. So every
// one of the 16384 slots holds a marker key, bn:{r<n>}:ready, whose hash tag is chosen to fall in that
// slot; it lives and dies with the slot's data (and moves with it when the slot is resharded). A claim
// checks the markers of the slots it touches; the cache is ready when every marker is there. The same
// layout on a standalone Redis or behind a proxy costs 16384 small keys and changes nothing else.

const numSlots = 16384

// slotMarkers holds, for every slot, the marker key that hashes to it.
type slotMarkers [numSlots]string

func newSlotMarkers() *slotMarkers {
	var m slotMarkers
	left := numSlots
	for n := 0; left > 0; n++ {
		tag := "r" + strconv.Itoa(n)
		s := crc16(tag) % numSlots
		if m[s] == "" {
			m[s] = "bn:{" + tag + "}:ready"
			left--
		}
	}
	return &m
}

// ReadyMarkerOf names the readiness marker of key's slot, for tools that run the scripts themselves
// (local/bench/claim gives it to redis-benchmark).
func ReadyMarkerOf(key string) string { return defaultMarkers.of(key) }

var defaultMarkers = newSlotMarkers()

// of is the marker of key's slot.
func (m *slotMarkers) of(key string) string { return m[keySlot(key)] }

// keySlot is Redis Cluster's HASH_SLOT: CRC16 of the key's hash tag (the first non-empty {...}) or of
// the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % numSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), the variant Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// markerBatch bounds one pipeline: the cluster client splits it per master, a proxy forwards it.
const markerBatch = 2048

// eachMarkerBatch runs fn over the markers in pipelines of markerBatch commands.
func (c *Cache) eachMarkerBatch(ctx context.Context, fn func(pipe redis.Pipeliner, key string)) ([]redis.Cmder, error) {
	var all []redis.Cmder
	for start := 0; start < numSlots; start += markerBatch {
		pipe := c.rdb.Pipeline()
		for _, k := range c.markers[start:min(start+markerBatch, numSlots)] {
			fn(pipe, k)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, cmds...)
	}
	return all, nil
}

// Ready reports whether the cache is complete (not lost, wholly or on one shard, and not being
// rebuilt): every slot's marker is present.
func (c *Cache) Ready(ctx context.Context) (bool, error) {
	missing, err := c.MissingSlots(ctx)
	return err == nil && missing == 0, err
}

// MissingSlots counts the slots whose marker is absent: 0 when the cache is ready, 16384 after a whole
// loss, a shard's share after one shard came back empty.
func (c *Cache) MissingSlots(ctx context.Context) (int, error) {
	cmds, err := c.eachMarkerBatch(ctx, func(pipe redis.Pipeliner, k string) { pipe.Exists(ctx, k) })
	if err != nil {
		return 0, classify(err)
	}
	missing := 0
	for _, cmd := range cmds {
		if cmd.(*redis.IntCmd).Val() == 0 {
			missing++
		}
	}
	return missing, nil
}

// MarkReady declares the cache complete; the rebuild calls it last, and a fresh deployment once.
func (c *Cache) MarkReady(ctx context.Context) error {
	at := time.Now().UTC().Format(time.RFC3339)
	_, err := c.eachMarkerBatch(ctx, func(pipe redis.Pipeliner, k string) { pipe.Set(ctx, k, at, 0) })
	return classify(err)
}

// ClearReady makes claims fail closed until the next rebuild.
func (c *Cache) ClearReady(ctx context.Context) error {
	_, err := c.eachMarkerBatch(ctx, func(pipe redis.Pipeliner, k string) { pipe.Del(ctx, k) })
	return classify(err)
}
