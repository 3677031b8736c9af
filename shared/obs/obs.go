// Package obs gives every function the same structured JSON logs, with the FC request id on every line
// so one invocation's lines can be found among thousands.
package obs

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/aliyun/fc-runtime-go-sdk/fccontext"
)

// NewLogger writes JSON lines at the named level (debug, info, warn, error; default info).
func NewLogger(w io.Writer, level string, function string) *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})).With("function", function)
}

type loggerKey struct{}

// WithRequest returns a context whose logger names the invocation.
func WithRequest(ctx context.Context, log *slog.Logger, requestID string) context.Context {
	return context.WithValue(ctx, loggerKey{}, log.With("request_id", requestID))
}

// Logger returns the invocation's logger, or a discarding one so callers never check for nil.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Invocation is the one prologue of every function's invocation: it names the FC request (from the
// runtime SDK's context) on every log line of the invocation.
func Invocation(ctx context.Context, log *slog.Logger) context.Context {
	requestID := ""
	if fcCtx, ok := fccontext.FromContext(ctx); ok {
		requestID = fcCtx.RequestID
	}
	return WithRequest(ctx, log, requestID)
}
