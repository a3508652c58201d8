// Package eventlog defines the event log port: the contract that every event
// store adapter (SQL through bun, EventStoreDB/KurrentDB) satisfies, and the
// vocabulary commands and projections use to talk to it: positions in the one
// global order, expected stream versions, records and their metadata.
//
// The package holds no I/O of its own. Consumers declare the narrower
// interfaces they need (an appender, a stream reader, a follower) in their own
// packages, in terms of these types; adapters implement Store in full and
// prove it with the conformance suite in adapters/eventstoretest.
package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Store is the event log port.
//
// Guarantees every implementation gives (and the conformance suite checks):
//
//   - Append is atomic: all of its events are written, or none are.
//   - Append checks the expected version of the stream under the same lock that
//     assigns positions, and fails with a *ConflictError (errors.Is ErrConflict)
//     when the stream is not at that version. A refused append writes nothing.
//   - Append is idempotent on event ids: retrying an append whose events are
//     already in the stream, with the same ids in the same order, writes nothing
//     and returns the first append's result, whatever the expected version says.
//     An append that repeats stored ids in any other way fails with
//     ErrDuplicateEventID. The SQL store refuses every reused id;
//     EventStoreDB checks ids only as retries within the stream appended to
//     (eventstoretest.Options.StreamScopedIDs), so callers must not reuse
//     ids: commands derive them from the idempotency key or make new ones.
//   - Every event gets a Position in one total order across all streams. A reader
//     that has seen position P has seen every event before P, under any number
//     of concurrent writers (architecture decision 2, docs/adr/0001).
//   - Stream versions start at 1 and have no gaps.
//   - Implementations are safe for concurrent use.
type Store interface {
	// Append writes events to the end of stream if the stream is at the
	// expected version. events must not be empty; every event needs an id, a
	// type and a JSON object as data. Meta.RecordedAt, when zero, is set by the
	// store to its own clock.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events []EventData) (AppendResult, error)

	// ReadStream returns up to limit events of stream with version >= from, in
	// version order. A stream that does not exist reads as empty (no error).
	// limit <= 0 means no limit.
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]Record, error)

	// ReadAll returns up to limit events with a position after `after`, in
	// global order. Pass Start to read from the beginning. limit <= 0 means no
	// limit.
	ReadAll(ctx context.Context, after Position, limit int) ([]Record, error)

	// Head returns the position of the last event in the log, or Start when
	// the log is empty.
	Head(ctx context.Context) (Position, error)

	// Subscribe calls handle for every event after `after`, in global order,
	// first catching up and then following new events as they are appended,
	// without busy polling. It returns when ctx is done (with ctx.Err()), when
	// handle returns an error (with that error), or when the store fails.
	// handle is called from one goroutine at a time.
	Subscribe(ctx context.Context, after Position, handle func(context.Context, Record) error) error
}

// Sentinel errors of the port. Adapters wrap them with %w and context.
var (
	// ErrConflict: the stream was not at the expected version.
	ErrConflict = errors.New("eventlog: wrong expected version")
	// ErrDuplicateEventID: an appended event id is already used by a
	// different event or at a different place in the log.
	ErrDuplicateEventID = errors.New("eventlog: event id already used")
	// ErrInvalidAppend: the append itself is malformed (no events, no stream
	// name, an event without id or type, data that is not a JSON object).
	ErrInvalidAppend = errors.New("eventlog: invalid append")
	// ErrUnavailable: the store could not be reached or did not answer in
	// time (a server down, no leader, a deadline). The call may or may not
	// have taken effect; retrying it is safe for appends with the same
	// event ids.
	ErrUnavailable = errors.New("eventlog: store unavailable")
	// ErrInvalidPosition: a position token could not be parsed.
	ErrInvalidPosition = errors.New("eventlog: invalid position")
)

// ErrBatchUnsupported: the store cannot write appends to several streams
// in one transaction (BatchAppender.AppendBatch of a store that wraps one
// without it, such as EventStoreDB). Nothing was written: append one
// stream at a time instead.
var ErrBatchUnsupported = errors.New("eventlog: appends to several streams at once are not supported")

// StreamAppend is one stream's append within a batch
// (BatchAppender.AppendBatch): the arguments of one Append call.
type StreamAppend struct {
	Stream   string
	Expected ExpectedVersion
	Events   []EventData
}

// BatchAppender is a Store that writes appends to several streams in one
// transaction (the SQL store). AppendBatch has the outcome of calling Append
// for each of batch in order (the same validation, expected-version checks
// and idempotency on event ids, each append seeing the ones before it),
// except that it is all or nothing: when any append would fail, nothing of
// the batch is written and the error wraps a *BatchError naming the first
// failing append. On success it returns each append's result in batch
// order; an append whose events are already stored exactly so (a retry)
// writes nothing and returns the stored result, so a whole batch may be
// retried after an unknown outcome. An empty batch does nothing. A store
// that only wraps one may return ErrBatchUnsupported (wrapped), having
// written nothing.
type BatchAppender interface {
	AppendBatch(ctx context.Context, batch []StreamAppend) ([]AppendResult, error)
}

// StreamsReader is a Store that reads many whole streams at once (the SQL
// store). ReadStreams returns every event of each of streams, in version
// order, keyed by stream; a stream that does not exist has no key. A store
// that only wraps one may return ErrBatchUnsupported (wrapped).
type StreamsReader interface {
	ReadStreams(ctx context.Context, streams []string) (map[string][]Record, error)
}

// StreamFrom names a stream and the first version of it to read
// (StreamTailsReader): From 0 or 1 is the whole stream.
type StreamFrom struct {
	Stream string
	From   uint64
}

// StreamTailsReader is a Store that reads the ends of many streams at once
// (the SQL store), for callers that keep the state of the streams up to a
// version they know. ReadStreamsFrom returns, for each of from, the events
// of its stream from version From on: those ReadStream(ctx, Stream, From,
// 0) returns, in version order, keyed by stream; a stream without such
// events has no key (a stream named twice is read from the lower From). A
// store that only wraps one may return ErrBatchUnsupported (wrapped).
type StreamTailsReader interface {
	ReadStreamsFrom(ctx context.Context, from []StreamFrom) (map[string][]Record, error)
}

// BatchError reports the append of a batch that made AppendBatch refuse the
// whole batch. Err is what Append would have returned for that append in
// its place in the batch: errors.Is and errors.As reach it
// (ErrInvalidAppend, *ConflictError / ErrConflict, ErrDuplicateEventID).
type BatchError struct {
	Index  int // the append's index in the batch
	Stream string
	Err    error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("append %d of the batch, to %q: %v", e.Index, e.Stream, e.Err)
}

// Unwrap returns the append's own error.
func (e *BatchError) Unwrap() error { return e.Err }

// ConflictError reports an optimistic concurrency conflict on one stream.
// errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   uint64 // the stream's version when the append was refused; 0 = no stream
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventlog: stream %q: expected %s, actual version %d", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Position is an event's place in the global order. SQL stores use one
// counter (Commit == Prepare); EventStoreDB's $all positions carry both.
// Positions compare by Commit, then Prepare. The zero value is Start, before
// every event.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event.
var Start = Position{}

// At returns the position of a store with a single counter.
func At(seq uint64) Position { return Position{Commit: seq, Prepare: seq} }

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Start }

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// Before reports whether p comes before q.
func (p Position) Before(q Position) bool { return p.Compare(q) < 0 }

// String encodes p as a token: "C" when Commit == Prepare, else "C.P".
// ParsePosition reverses it.
func (p Position) String() string {
	if p.Commit == p.Prepare {
		return strconv.FormatUint(p.Commit, 10)
	}
	return strconv.FormatUint(p.Commit, 10) + "." + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition parses a token written by Position.String. The empty string
// is Start.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Start, nil
	}
	c, p, two := strings.Cut(s, ".")
	commit, err := parseUint(c)
	if err != nil {
		return Start, fmt.Errorf("%w: %q", ErrInvalidPosition, s)
	}
	if !two {
		return At(commit), nil
	}
	prepare, err := parseUint(p)
	if err != nil {
		return Start, fmt.Errorf("%w: %q", ErrInvalidPosition, s)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

func parseUint(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("bad number")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errors.New("bad number")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// ExpectedVersion is the optimistic concurrency condition of an append.
// The zero value is Any.
type ExpectedVersion struct {
	kind    expectKind
	version uint64
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectExact
)

var (
	// Any appends whatever the stream's version.
	Any = ExpectedVersion{kind: expectAny}
	// NoStream appends only if the stream has no events yet.
	NoStream = ExpectedVersion{kind: expectNoStream}
)

// Exactly appends only if the stream's last event has version v. Exactly(0)
// is NoStream.
func Exactly(v uint64) ExpectedVersion {
	if v == 0 {
		return NoStream
	}
	return ExpectedVersion{kind: expectExact, version: v}
}

// IsAny reports whether e accepts any version.
func (e ExpectedVersion) IsAny() bool { return e.kind == expectAny }

// IsNoStream reports whether e requires the stream not to exist.
func (e ExpectedVersion) IsNoStream() bool { return e.kind == expectNoStream }

// Version returns the exact version e requires and true, or 0 and false for
// Any and NoStream.
func (e ExpectedVersion) Version() (uint64, bool) { return e.version, e.kind == expectExact }

// Allows reports whether a stream at version actual (0 = no stream) meets e.
func (e ExpectedVersion) Allows(actual uint64) bool {
	switch e.kind {
	case expectNoStream:
		return actual == 0
	case expectExact:
		return actual == e.version
	}
	return true
}

func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectNoStream:
		return "no stream"
	case expectExact:
		return "version " + strconv.FormatUint(e.version, 10)
	}
	return "any version"
}

// Meta is the metadata every event carries (R14): who did it, in which role,
// why, when it happened in the world and when the engine learned it, and the
// ids that tie it to the request and the event that caused it.
type Meta struct {
	ActorID       string    `json:"actor_id"`
	ActorRole     string    `json:"actor_role"`
	Reason        string    `json:"reason,omitempty"`
	EffectiveAt   time.Time `json:"effective_at"`
	RecordedAt    time.Time `json:"recorded_at"`
	CorrelationID uuid.UUID `json:"correlation_id"`
	CausationID   uuid.UUID `json:"causation_id"`
}

// EventData is one event to append.
type EventData struct {
	ID   uuid.UUID
	Type string
	Data []byte // a JSON object
	Meta Meta
}

// Record is one stored event.
type Record struct {
	ID       uuid.UUID
	Stream   string
	Version  uint64 // 1-based version within Stream
	Position Position
	Type     string
	Data     []byte
	Meta     Meta
}

// AppendResult is what a successful append returns.
type AppendResult struct {
	// Version is the stream's version after the append (the last event's).
	Version uint64
	// Position is the last appended event's position: the consistency token
	// a command returns.
	Position Position
}

// Validate checks an append's arguments the same way in every adapter; it
// returns an error wrapping ErrInvalidAppend.
func Validate(stream string, events []EventData) error {
	if strings.TrimSpace(stream) == "" {
		return fmt.Errorf("%w: empty stream name", ErrInvalidAppend)
	}
	if len(stream) > 200 {
		return fmt.Errorf("%w: stream name longer than 200 bytes", ErrInvalidAppend)
	}
	if len(events) == 0 {
		return fmt.Errorf("%w: no events", ErrInvalidAppend)
	}
	seen := make(map[uuid.UUID]struct{}, len(events))
	for i, e := range events {
		if e.ID == uuid.Nil {
			return fmt.Errorf("%w: event %d has no id", ErrInvalidAppend, i)
		}
		if _, dup := seen[e.ID]; dup {
			return fmt.Errorf("%w: event id %s appears twice", ErrInvalidAppend, e.ID)
		}
		seen[e.ID] = struct{}{}
		if strings.TrimSpace(e.Type) == "" {
			return fmt.Errorf("%w: event %d has no type", ErrInvalidAppend, i)
		}
		if !isJSONObject(e.Data) {
			return fmt.Errorf("%w: event %d data is not a JSON object", ErrInvalidAppend, i)
		}
	}
	return nil
}

func isJSONObject(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i < len(b) && b[i] == '{' && json.Valid(b)
}

// ValidateStorable refuses what a store cannot keep as given (and what
// the SQL stores refuse: PostgreSQL cannot store it, SQLite would store it
// differently): invalid UTF-8 and NUL bytes in the stream name, the type
// and the metadata, data that is not UTF-8, and times outside years 1 to
// 9999 (in UTC), which do not round-trip through the text form of times.
// Its errors wrap ErrInvalidAppend. Stores that keep events in memory
// apply it too, so that they refuse what the SQL stores refuse.
func ValidateStorable(stream string, events []EventData) error {
	check := func(what, s string) error {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidAppend, what)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalidAppend, what)
		}
		return nil
	}
	if err := check("stream name", stream); err != nil {
		return err
	}
	for i, e := range events {
		for _, f := range []struct{ what, s string }{
			{"type", e.Type},
			{"actor id", e.Meta.ActorID},
			{"actor role", e.Meta.ActorRole},
			{"reason", e.Meta.Reason},
		} {
			if err := check(fmt.Sprintf("event %d %s", i, f.what), f.s); err != nil {
				return err
			}
		}
		for _, f := range []struct {
			what string
			t    time.Time
		}{{"effective time", e.Meta.EffectiveAt}, {"recorded time", e.Meta.RecordedAt}} {
			if y := f.t.UTC().Year(); y < 1 || y > 9999 {
				return fmt.Errorf("%w: event %d %s %s is outside years 1-9999", ErrInvalidAppend, i, f.what, f.t)
			}
		}
		// Valid JSON cannot hold a raw NUL; only UTF-8 needs checking.
		if !utf8.Valid(e.Data) {
			return fmt.Errorf("%w: event %d data is not valid UTF-8", ErrInvalidAppend, i)
		}
	}
	return nil
}
