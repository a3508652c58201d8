package eventstoredb

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// slogLogger routes the client's logging to l, at the matching level, with
// the attribute component=esdb-client. (The client's own default prints to
// standard output.)
func slogLogger(l *slog.Logger) esdb.LoggingFunc {
	l = l.With("component", "esdb-client")
	return func(level esdb.LogLevel, format string, args ...any) {
		lv := slogLevel(level)
		if !l.Enabled(context.Background(), lv) {
			return
		}
		// The client sometimes passes its arguments on as one slice
		// instead of spreading them.
		if len(args) == 1 {
			if inner, ok := args[0].([]any); ok {
				args = inner
			}
		}
		l.Log(context.Background(), lv, fmt.Sprintf(format, args...))
	}
}

func slogLevel(level esdb.LogLevel) slog.Level {
	switch level {
	case esdb.LogDebug:
		return slog.LevelDebug
	case esdb.LogInfo:
		return slog.LevelInfo
	case esdb.LogWarn:
		return slog.LevelWarn
	}
	return slog.LevelError
}
