package rediscache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/benefit-issuance/benefits/shared/fault"
)

// replyError is an error the server answered, as go-redis types it (redis.Error).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestClassifyByType(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		retryable bool
	}{
		{"no such key", redis.Nil, false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}, true},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped transport error", fmt.Errorf("claim: %w", &net.OpError{Op: "read", Err: errors.New("reset")}), true},
		{"a script's own error", replyError("ERR user_script:12: attempt to compare nil with number"), false},
		{"wrong type", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"busy script", replyError("BUSY Redis is busy running a script"), true},
		{"failover", replyError("READONLY You can't write against a read only replica."), true},
		{"slot moved", replyError("MOVED 3999 127.0.0.1:6381"), true},
		{"cluster down", replyError("CLUSTERDOWN The cluster is down"), true},
		{"out of memory", replyError("OOM command not allowed when used memory > 'maxmemory'."), true},
		{"no permission", replyError("NOPERM this user has no permissions to run the 'evalsha' command"), false},
		// The text of a transport error never decides: "script" in it does not make it permanent.
		{"transport error that mentions a script", errors.New("ERR script killed while reading: connection reset"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if fault.IsRetryable(got) != tc.retryable {
				t.Fatalf("classify(%v): retryable %t, want %t", tc.err, fault.IsRetryable(got), tc.retryable)
			}
			if !errors.Is(got, tc.err) {
				t.Fatalf("classify(%v) lost the cause: %v", tc.err, got)
			}
		})
	}
}
