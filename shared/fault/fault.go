// Package fault says whether a failure is worth retrying. MQ-triggered functions return retryable
// errors so RocketMQ redelivers with backoff, and acknowledge permanent ones after recording them, so a
// poison message never blocks the queue. Adapters decide the class where they know it best: at the
// driver boundary.
package fault

import (
	"context"
	"errors"
	"net"
	"syscall"
)

type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Retryable marks err as transient: the same operation may succeed later (timeouts, resets, deadlocks).
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryable{err}
}

// Permanent marks err as one that retrying cannot fix (bad data, a row that is gone).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsRetryable reports whether err is worth retrying. An explicit mark wins, the outermost first;
// unmarked network failures and deadlines are retryable; anything else is not, because retrying an
// unknown error forever is how a poison message blocks a queue.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.(type) {
		case retryable:
			return true
		case permanent:
			return false
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
