package esdbtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// testTimeout bounds every call of the tests; generous for a loaded machine.
const testTimeout = 30 * time.Second

// testLogger routes the client's log to t.Log until the test ends.
func testLogger(t *testing.T) esdb.LoggingFunc {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return func(level esdb.LogLevel, format string, args ...interface{}) {
		mu.Lock()
		defer mu.Unlock()
		if done || level == esdb.LogDebug || level == esdb.LogInfo {
			return
		}
		t.Logf("esdb client [%s] %s", level, fmt.Sprintf(format, args...))
	}
}

// newClient connects the real client to srv.
func newClient(t *testing.T, url string) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(url)
	require.NoError(t, err)
	cfg.Logger = testLogger(t)
	c, err := esdb.NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func jsonEvent(eventType string, data string) esdb.EventData {
	return esdb.EventData{
		EventID:     uuid.New(),
		EventType:   eventType,
		ContentType: esdb.ContentTypeJson,
		Data:        []byte(data),
	}
}

func appendOK(t *testing.T, c *esdb.Client, stream string, exp esdb.ExpectedRevision, events ...esdb.EventData) *esdb.WriteResult {
	t.Helper()
	res, err := c.AppendToStream(ctxT(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events...)
	require.NoError(t, err)
	return res
}

// collect drains a read.
func collect(rs *esdb.ReadStream) ([]*esdb.ResolvedEvent, error) {
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func readStream(t *testing.T, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(ctxT(t), stream, opts, count)
	require.NoError(t, err)
	return collect(rs)
}

func readAll(t *testing.T, c *esdb.Client, opts esdb.ReadAllOptions, count uint64) []*esdb.ResolvedEvent {
	t.Helper()
	rs, err := c.ReadAll(ctxT(t), opts, count)
	require.NoError(t, err)
	evs, err := collect(rs)
	require.NoError(t, err)
	return evs
}

func ids(evs []*esdb.ResolvedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.OriginalEvent().EventID
	}
	return out
}

func dataIDs(evs ...esdb.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

// wrongVersion asserts err is the client's wrong-expected-version error with
// the expected and current revisions the server reported.
func wrongVersion(t *testing.T, err error, expected, current string) {
	t.Helper()
	var esErr *esdb.Error
	require.ErrorAs(t, err, &esErr)
	require.Equal(t, esdb.ErrorCodeWrongExpectedVersion, esErr.Code(), "error: %v", err)
	require.ErrorContains(t, err, fmt.Sprintf("expecting '%s' but got '%s'", expected, current))
}

// subEvent is one notification of a subscription, flattened for assertions.
type subEvent struct {
	kind     string // "event", "checkpoint", "caughtup", "fellbehind", "dropped"
	event    *esdb.RecordedEvent
	position esdb.Position
	err      error
}

func (e subEvent) String() string {
	switch e.kind {
	case "event":
		return fmt.Sprintf("event(%s@%d %s pos=%d)", e.event.StreamID, e.event.EventNumber, e.event.EventType, e.event.Position.Commit)
	case "checkpoint":
		return fmt.Sprintf("checkpoint(%d/%d)", e.position.Commit, e.position.Prepare)
	case "dropped":
		return fmt.Sprintf("dropped(%v)", e.err)
	}
	return e.kind
}

func next(sub *esdb.Subscription) subEvent {
	ev := sub.Recv()
	switch {
	case ev.EventAppeared != nil:
		return subEvent{kind: "event", event: ev.EventAppeared.OriginalEvent()}
	case ev.CheckPointReached != nil:
		return subEvent{kind: "checkpoint", position: *ev.CheckPointReached}
	case ev.CaughtUp != nil:
		return subEvent{kind: "caughtup"}
	case ev.FellBehind != nil:
		return subEvent{kind: "fellbehind"}
	case ev.SubscriptionDropped != nil:
		return subEvent{kind: "dropped", err: ev.SubscriptionDropped.Error}
	}
	return subEvent{kind: "unknown"}
}

// recvUntil receives notifications until stop returns true for one of them
// (included in the result). The subscription's context bounds the wait: a
// drop fails the test unless stop accepts it.
func recvUntil(t *testing.T, sub *esdb.Subscription, stop func(subEvent) bool) []subEvent {
	t.Helper()
	var out []subEvent
	for {
		ev := next(sub)
		out = append(out, ev)
		if stop(ev) {
			return out
		}
		require.NotEqual(t, "dropped", ev.kind, "subscription dropped; received so far: %v", out)
	}
}

func isKind(kind string) func(subEvent) bool {
	return func(e subEvent) bool { return e.kind == kind }
}

// eventsOf keeps the delivered events.
func eventsOf(evs []subEvent) []*esdb.RecordedEvent {
	var out []*esdb.RecordedEvent
	for _, e := range evs {
		if e.kind == "event" {
			out = append(out, e.event)
		}
	}
	return out
}

func recordedIDs(evs []*esdb.RecordedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func contextWithTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), testTimeout)
}
