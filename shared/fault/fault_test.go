package fault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

func TestIsRetryable(t *testing.T) {
	plain := errors.New("boom")
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", plain, false},
		{"marked retryable", Retryable(plain), true},
		{"marked permanent", Permanent(plain), false},
		{"wrapped retryable", fmt.Errorf("load: %w", Retryable(plain)), true},
		{"permanent around retryable", Permanent(Retryable(plain)), false},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"permanent deadline", Permanent(context.DeadlineExceeded), false},
		{"canceled", context.Canceled, false},
	}
	for _, tc := range cases {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("%s: IsRetryable = %v, want %v", tc.name, got, tc.want)
		}
	}
	if Retryable(nil) != nil || Permanent(nil) != nil {
		t.Error("marking nil must stay nil")
	}
	if !errors.Is(Retryable(plain), plain) {
		t.Error("marks must unwrap to the cause")
	}
}
