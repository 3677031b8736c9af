package rediscache

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// oneSlotPerCommand refuses, as a cluster proxy would (CROSSSLOT), any command whose keys fall in two
// hash slots, so the standalone runs check too that every script and multi-key command the cache
// sends can go through a proxy endpoint. It knows the key positions of the commands the cache uses.
type oneSlotPerCommand struct{}

func commandKeys(args []any) []string {
	if len(args) == 0 {
		return nil
	}
	str := func(v any) string { return fmt.Sprint(v) }
	name := strings.ToLower(str(args[0]))
	switch name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall":
		if len(args) < 3 {
			return nil
		}
		n, _ := strconv.Atoi(str(args[2]))
		var keys []string
		for i := 3; i < 3+n && i < len(args); i++ {
			keys = append(keys, str(args[i]))
		}
		return keys
	case "exists", "del", "unlink", "mget", "touch":
		var keys []string
		for _, a := range args[1:] {
			keys = append(keys, str(a))
		}
		return keys
	}
	return nil
}

func checkSlots(cmd redis.Cmder) error {
	keys := commandKeys(cmd.Args())
	for _, k := range keys[min(1, len(keys)):] {
		if keySlot(k) != keySlot(keys[0]) {
			return fmt.Errorf("CROSSSLOT (as a cluster proxy would answer): %v spans slots %d and %d", cmd.Args()[:min(len(cmd.Args()), 6)], keySlot(keys[0]), keySlot(k))
		}
	}
	return nil
}

func (oneSlotPerCommand) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (oneSlotPerCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := checkSlots(cmd); err != nil {
			cmd.SetErr(err)
			panic(err) // a test defect to fix, not a Redis failure the code under test may absorb
		}
		return next(ctx, cmd)
	}
}

func (oneSlotPerCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if err := checkSlots(cmd); err != nil {
				panic(err)
			}
		}
		return next(ctx, cmds)
	}
}
