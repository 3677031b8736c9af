// Package mqhandler runs RocketMQ-triggered functions: it turns FC's CloudEvents into messages and
// wraps the per-message handler in small middlewares, after watermill's router middleware: a recoverer,
// a short in-process retry, and a poison recorder. The outcome rules are the design's:
//
//   - success: the message is done;
//   - a permanent failure (bad data, a row that is gone, a panic): recorded and acknowledged, never retried
//     forever, so it cannot block the messages behind it;
//   - a retryable failure (timeout, reset): the invocation returns an error, FC's trigger redelivers the
//     batch with backoff, and after the last retry the dead-letter queue holds it.
package mqhandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"time"

	"github.com/benefit-issuance/benefits/shared/fault"
	"github.com/benefit-issuance/benefits/shared/fcevents"
	"github.com/benefit-issuance/benefits/shared/obs"
)

// Message is one RocketMQ message as the trigger delivered it.
type Message struct {
	ID         string
	Topic      string
	Tag        string
	Keys       []string
	Body       []byte
	Properties map[string]string
}

// Handler processes one message.
type Handler func(ctx context.Context, msg Message) error

// Middleware wraps a handler.
type Middleware func(Handler) Handler

// Chain applies middlewares so that the first listed is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Messages converts an invocation payload (one CloudEvent or a batch) into messages.
func Messages(payload []byte) ([]Message, error) {
	events, err := fcevents.DecodeRocketMQDeliveries(payload)
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(events))
	for _, ev := range events {
		msg := Message{
			ID:         ev.ID,
			Topic:      ev.Data.Topic,
			Tag:        ev.Tag(),
			Body:       []byte(ev.Data.Body),
			Properties: ev.Data.UserProperties.Strings(),
		}
		if id := ev.MessageID(); id != "" {
			msg.ID = id
		}
		if keys := ev.Keys(); keys != "" {
			msg.Keys = strings.Fields(keys)
		}
		out = append(out, msg)
	}
	return out, nil
}

// PanicError is a recovered panic with the stack of the goroutine that panicked, so what is recorded
// about a poison message says where the handler broke, not only that it did.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack) }

// recovered turns a recover() value into a permanent error; nil stays nil.
func recovered(r any, what string) error {
	if r == nil {
		return nil
	}
	return fault.Permanent(fmt.Errorf("%s: %w", what, &PanicError{Value: r, Stack: debug.Stack()}))
}

// Recoverer turns a panic into a permanent error that keeps its stack: a handler that panics on a
// message will panic on it again, so retrying only delays the messages behind it.
func Recoverer() Middleware {
	return func(h Handler) Handler {
		return func(ctx context.Context, msg Message) (err error) {
			defer func() {
				if pe := recovered(recover(), "handling message "+msg.ID); pe != nil {
					err = pe
				}
			}()
			return h(ctx, msg)
		}
	}
}

// Retry retries retryable failures a few times in-process before giving the message back to the
// broker, which smooths over a blip without paying the broker's backoff. Waits double from
// InitialInterval up to MaxInterval, each spread by up to ±Jitter of itself so that instances failing
// together do not retry together, and retrying stops once MaxElapsed has passed.
type Retry struct {
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Jitter          float64       // 0 to 1: the share of each wait that is random (0: none)
	MaxElapsed      time.Duration // 0: no cap beyond MaxRetries
	// Rand returns a number in [0, 1); nil uses math/rand/v2. Tests fix it.
	Rand func() float64
}

// Wait is how long to wait before retry number attempt (0-based), given a random r in [0, 1).
func (r Retry) Wait(attempt int, random float64) time.Duration {
	d := r.InitialInterval
	for i := 0; i < attempt && (r.MaxInterval <= 0 || d < r.MaxInterval); i++ {
		d *= 2
	}
	if r.MaxInterval > 0 && d > r.MaxInterval {
		d = r.MaxInterval
	}
	if j := min(max(r.Jitter, 0), 1); j > 0 {
		d = time.Duration(float64(d) * (1 - j + 2*j*random))
	}
	return d
}

func (r Retry) Middleware() Middleware {
	random := r.Rand
	if random == nil {
		random = rand.Float64
	}
	return func(h Handler) Handler {
		return func(ctx context.Context, msg Message) error {
			start := time.Now()
			for attempt := 0; ; attempt++ {
				err := h(ctx, msg)
				if err == nil || !fault.IsRetryable(err) || attempt >= r.MaxRetries {
					return err
				}
				wait := r.Wait(attempt, random())
				if r.MaxElapsed > 0 && time.Since(start)+wait > r.MaxElapsed {
					return err
				}
				obs.Logger(ctx).Warn("retrying message", "message_id", msg.ID, "attempt", attempt+1, "wait", wait.String(), "error", err.Error())
				select {
				case <-ctx.Done():
					return fault.Retryable(errors.Join(err, ctx.Err()))
				case <-time.After(wait):
				}
			}
		}
	}
}

// PoisonRecorder stores a message that cannot be processed, with why, so operators can see and replay it.
type PoisonRecorder func(ctx context.Context, msg Message, cause error) error

// Poison acknowledges permanent failures after recording them. If recording fails the failure becomes
// retryable: a poison message is never dropped unrecorded.
func Poison(record PoisonRecorder) Middleware {
	return func(h Handler) Handler {
		return func(ctx context.Context, msg Message) error {
			err := h(ctx, msg)
			if err == nil || fault.IsRetryable(err) {
				return err
			}
			obs.Logger(ctx).Error("poison message recorded and acknowledged", "message_id", msg.ID, "topic", msg.Topic, "error", err.Error())
			if recErr := record(ctx, msg, err); recErr != nil {
				return fault.Retryable(fmt.Errorf("recording poison message %s: %w", msg.ID, recErr))
			}
			return nil
		}
	}
}

// BatchHandler processes a batch together, for work that is cheaper done at once (one transaction).
type BatchHandler func(ctx context.Context, msgs []Message) error

// BatchMiddleware wraps a batch handler.
type BatchMiddleware func(BatchHandler) BatchHandler

// ChainBatch applies batch middlewares so that the first listed is the outermost.
func ChainBatch(h BatchHandler, mws ...BatchMiddleware) BatchHandler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// RecoverBatch turns a panic while handling a batch into a permanent error that keeps its stack, so
// Isolate can find the message that causes it instead of the SDK failing the whole invocation.
func RecoverBatch() BatchMiddleware {
	return func(h BatchHandler) BatchHandler {
		return func(ctx context.Context, msgs []Message) (err error) {
			defer func() {
				if pe := recovered(recover(), fmt.Sprintf("handling a batch of %d", len(msgs))); pe != nil {
					err = pe
				}
			}()
			return h(ctx, msgs)
		}
	}
}

// Isolate runs each message of a batch that failed permanently on its own through one, which should
// carry Poison and Recoverer: a permanent batch failure means some message in it can never be
// processed, and handling them one by one records that one and finishes the rest now, rather than
// retrying the whole batch into the dead-letter queue. A retryable failure, of the batch or of one
// message, fails the call so the trigger redelivers the batch (handlers are idempotent).
func Isolate(one Handler) BatchMiddleware {
	return func(h BatchHandler) BatchHandler {
		return func(ctx context.Context, msgs []Message) error {
			err := h(ctx, msgs)
			if err == nil || fault.IsRetryable(err) {
				return err
			}
			obs.Logger(ctx).Warn("batch failed permanently; handling its messages one by one", "messages", len(msgs), "error", err.Error())
			for _, msg := range msgs {
				if err := one(ctx, msg); err != nil {
					return err
				}
			}
			return nil
		}
	}
}

// Result is what the function returns to FC for a batch.
type Result struct {
	Processed int `json:"processed"`
}

// Serve adapts a batch function to an FC event function: it builds the invocation's context, decodes
// the payload (one CloudEvent or a batch) and hands the messages over. A payload that is not a
// RocketMQ event at all is an error: with errorsTolerance ALL the trigger's dead-letter queue receives
// it after its retries. The payload is []byte, which the FC runtime SDK hands over as it came
// (fc.NewHandler); json.RawMessage made it unmarshal the batch once more only to copy it, 12 % of the
// ledger's CPU in make bench's drain.
func Serve[R any](log *slog.Logger, f func(ctx context.Context, msgs []Message) (R, error)) func(context.Context, []byte) (R, error) {
	return func(ctx context.Context, payload []byte) (R, error) {
		ctx = obs.Invocation(ctx, log)
		msgs, err := Messages(payload)
		if err != nil {
			obs.Logger(ctx).Error("payload is not a RocketMQ event", "error", err.Error())
			var zero R
			return zero, err
		}
		return f(ctx, msgs)
	}
}

// Invocation adapts a per-message handler to an FC event function. Messages run in order; the first
// retryable failure fails the invocation so FC's trigger redelivers the batch (handlers are idempotent,
// so the messages already done are harmless to repeat).
func Invocation(h Handler, log *slog.Logger) func(context.Context, []byte) (Result, error) {
	return Serve(log, func(ctx context.Context, msgs []Message) (Result, error) {
		for i, msg := range msgs {
			if err := h(ctx, msg); err != nil {
				obs.Logger(ctx).Warn("message failed; the batch will be redelivered", "message_id", msg.ID, "index", i, "error", err.Error())
				return Result{Processed: i}, err
			}
		}
		return Result{Processed: len(msgs)}, nil
	})
}
