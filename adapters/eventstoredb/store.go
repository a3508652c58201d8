// Package eventstoredb is the EventStoreDB/KurrentDB adapter of the event
// log port (domain/eventlog), on github.com/EventStore/EventStore-Client-Go/v4.
//
// Mapping:
//
//   - One server stream per port stream (one per aggregate), named
//     Namespace+stream. Port versions are 1-based, server revisions 0-based:
//     version v is revision v-1.
//   - Expected versions: NoStream → esdb.NoStream, Exactly(v) →
//     esdb.Revision(v-1), Any → esdb.Any. The server's WrongExpectedVersion
//     becomes a *eventlog.ConflictError with the stream's actual version.
//   - Our event ids are the server's event ids, so a retried append is
//     recognised by the server's own idempotency check. Where the server
//     cannot recognise it (a retry with a stale expected version), the
//     adapter reads the stream after the conflict and answers the first
//     append's result, as the port requires.
//   - Metadata (eventlog.Meta) is the event's JSON user metadata; data is
//     JSON content.
//   - Positions are the server's $all positions: Position{Commit, Prepare},
//     which the API shows as the "commit.prepare" consistency token.
//   - ReadAll and Head read $all and keep only our streams; Subscribe
//     subscribes to $all with a server-side stream-prefix filter (system
//     events, whose streams start with "$", never match), resubscribing
//     from the last event or checkpoint after a drop.
//   - Every call but Subscribe runs under a deadline (WithCallTimeout).
//   - The client's logging goes to log/slog.
//
// Differences from the SQL store, allowed by the port: event ids are
// checked by the server only as retries of appends to the same stream (an
// id reused in another stream, or mixed with new events at the stream's
// current version, is not refused); an append is limited by the server's
// MaxAppendSize (1 MiB by default, settable up to 16 MiB), above which it
// is refused with eventlog.ErrInvalidAppend and writes nothing.
package eventstoredb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// Defaults of the options.
const (
	DefaultCallTimeout = 10 * time.Second
	// readPage is how many events one read request asks for.
	readPage = 512
)

// ErrUnavailable wraps failures to reach the server (connection refused or
// lost under a call, no leader, deadline exceeded): callers may retry later. It is the port's
// eventlog.ErrUnavailable.
var ErrUnavailable = eventlog.ErrUnavailable

// Option configures a Store.
type Option func(*config)

type config struct {
	log         *slog.Logger
	callTimeout time.Duration
	namespace   string
	prefixes    []string
	backoffMin  time.Duration
	backoffMax  time.Duration
	maxRetries  int
	now         func() time.Time
}

// WithLogger sets the logger of the store and of the client (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithCallTimeout sets the deadline of every call but Subscribe (default
// DefaultCallTimeout). A context with an earlier deadline keeps its own.
func WithCallTimeout(d time.Duration) Option { return func(c *config) { c.callTimeout = d } }

// WithNamespace prefixes every stream name on the server with ns, so that
// several logs (tenants, test runs) share one server without seeing each
// other. Records carry the port's names, without the namespace.
func WithNamespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// WithStreamPrefixes restricts the log to streams whose names start with
// one of prefixes (before the namespace is added): appends to other streams
// are refused with ErrInvalidAppend, and reads and subscriptions of $all
// keep only these streams. Without it, every stream not starting with "$"
// is part of the log.
func WithStreamPrefixes(prefixes ...string) Option {
	return func(c *config) { c.prefixes = append([]string(nil), prefixes...) }
}

// WithResubscribe sets how Subscribe retries after its subscription drops:
// it waits from min, doubling up to max, and gives up after retries
// consecutive drops without receiving anything (defaults 100ms, 5s, 20).
func WithResubscribe(min, max time.Duration, retries int) Option {
	return func(c *config) { c.backoffMin, c.backoffMax, c.maxRetries = min, max, retries }
}

// WithClock sets the clock that stamps Meta.RecordedAt when it is zero
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Store is an eventlog.Store on an EventStoreDB/KurrentDB server. It is safe
// for concurrent use.
type Store struct {
	cfg    config
	conf   *esdb.Configuration
	filter *esdb.SubscriptionFilter

	mu     sync.Mutex
	client *esdb.Client // replaced when it closes itself (renew)
	closed bool
}

// errClosed is returned by calls on a closed Store.
var errClosed = errors.New("eventstoredb: store closed")

// conn returns the current client.
func (s *Store) conn() (*esdb.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	return s.client, nil
}

// renew replaces client c when err says it closed itself: the client gives
// up for good after failing to reconnect during an outage, and would answer
// ErrorCodeConnectionClosed to every later call, even once the server is
// back.
func (s *Store) renew(c *esdb.Client, err error) {
	if !isCode(err, esdb.ErrorCodeConnectionClosed) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.client != c {
		return
	}
	nc, nerr := esdb.NewClient(s.conf)
	if nerr != nil {
		s.cfg.log.Error("eventstoredb: a new client after the old one closed", "err", nerr)
		return
	}
	_ = c.Close()
	s.client = nc
	s.cfg.log.Warn("eventstoredb: the client closed its connection after failing to reconnect; a new client will connect on the next call")
}

var _ eventlog.Store = (*Store)(nil)

// Open connects to the server at url, an EventStoreDB connection string
// ("esdb://host:2113?tls=false", "esdb+discover://host1,host2,...",
// with the client's settings as query parameters), and checks that it
// answers within the call timeout.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	conf, err := esdb.ParseConnectionString(url)
	if err != nil {
		return nil, fmt.Errorf("eventstoredb: connection string: %w", err)
	}
	cfg := config{log: slog.Default(), callTimeout: DefaultCallTimeout,
		backoffMin: 100 * time.Millisecond, backoffMax: 5 * time.Second, maxRetries: 20, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.callTimeout <= 0 || cfg.backoffMin <= 0 || cfg.backoffMax < cfg.backoffMin || cfg.maxRetries < 0 {
		return nil, errors.New("eventstoredb: invalid options: timeouts must be positive, retries not negative")
	}
	if strings.HasPrefix(cfg.namespace, "$") {
		return nil, fmt.Errorf("eventstoredb: namespace %q: system stream names start with $", cfg.namespace)
	}
	conf.Logger = slogLogger(cfg.log)
	client, err := esdb.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("eventstoredb: client: %w", err)
	}
	s := &Store{cfg: cfg, conf: conf, client: client, filter: subscriptionFilter(cfg)}
	if _, err := s.Head(ctx); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("eventstoredb: %s: %w", Redact(url), err)
	}
	return s, nil
}

// Close closes the connection. Calls in flight fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.client.Close()
}

// subscriptionFilter is the server-side filter on our streams.
func subscriptionFilter(cfg config) *esdb.SubscriptionFilter {
	if len(cfg.prefixes) == 0 {
		if cfg.namespace != "" {
			return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{cfg.namespace}}
		}
		return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: `^[^\$]`}
	}
	ps := make([]string, len(cfg.prefixes))
	for i, p := range cfg.prefixes {
		ps[i] = cfg.namespace + p
	}
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: ps}
}

// ours reports whether server stream name is part of the log, and its port
// name.
func (s *Store) ours(name string) (string, bool) {
	if strings.HasPrefix(name, "$") || !strings.HasPrefix(name, s.cfg.namespace) {
		return "", false
	}
	stream := name[len(s.cfg.namespace):]
	if len(s.cfg.prefixes) == 0 {
		return stream, true
	}
	for _, p := range s.cfg.prefixes {
		if strings.HasPrefix(stream, p) {
			return stream, true
		}
	}
	return "", false
}

// call returns ctx bounded by the call timeout.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.callTimeout)
}

// Append implements eventlog.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	if err := eventlog.Validate(stream, events); err != nil {
		return eventlog.AppendResult{}, err
	}
	if strings.HasPrefix(stream, "$") {
		return eventlog.AppendResult{}, fmt.Errorf("%w: stream %q: names starting with $ are the server's", eventlog.ErrInvalidAppend, stream)
	}
	if _, ok := s.ours(s.cfg.namespace + stream); !ok {
		return eventlog.AppendResult{}, fmt.Errorf("%w: stream %q is outside the log's prefixes %q", eventlog.ErrInvalidAppend, stream, s.cfg.prefixes)
	}
	data := make([]esdb.EventData, len(events))
	for i, e := range events {
		meta := e.Meta
		if meta.RecordedAt.IsZero() {
			meta.RecordedAt = s.cfg.now()
		}
		m, err := json.Marshal(meta)
		if err != nil {
			return eventlog.AppendResult{}, fmt.Errorf("%w: event %d metadata: %v", eventlog.ErrInvalidAppend, i, err)
		}
		data[i] = esdb.EventData{EventID: e.ID, EventType: e.Type, ContentType: esdb.ContentTypeJson, Data: e.Data, Metadata: m}
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return eventlog.AppendResult{}, err
	}
	res, err := c.AppendToStream(ctx, s.cfg.namespace+stream, esdb.AppendToStreamOptions{ExpectedRevision: revision(expected)}, data...)
	s.renew(c, err)
	if err != nil {
		if isCode(err, esdb.ErrorCodeWrongExpectedVersion) {
			return s.afterConflict(ctx, stream, expected, events)
		}
		return eventlog.AppendResult{}, s.wrap(ctx, fmt.Sprintf("append to %q", stream), err)
	}
	version := res.NextExpectedVersion + 1
	pos := eventlog.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}
	if pos.IsZero() || expected.IsAny() {
		// An idempotent answer (some servers give no position), or an
		// append with any version, which the server may have taken for a
		// retry of ids it found anywhere in the stream: read back.
		return s.readBack(ctx, stream, version, events)
	}
	return eventlog.AppendResult{Version: version, Position: pos}, nil
}

// revision maps an expected version to the server's expected revision.
func revision(e eventlog.ExpectedVersion) esdb.ExpectedRevision {
	switch {
	case e.IsAny():
		return esdb.Any{}
	case e.IsNoStream():
		return esdb.NoStream{}
	}
	v, _ := e.Version()
	return esdb.Revision(v - 1)
}

// readBack checks the events are in the stream, in order, ending at
// version, and returns their append result. With expected version Any the
// server answers "idempotent" when it finds every id in the stream, in any
// order or with gaps, which the port calls ErrDuplicateEventID.
func (s *Store) readBack(ctx context.Context, stream string, version uint64, events []eventlog.EventData) (eventlog.AppendResult, error) {
	n := uint64(len(events))
	if version < n {
		return eventlog.AppendResult{}, fmt.Errorf("%w: stream %q: the server found the events, but not as one append", eventlog.ErrDuplicateEventID, stream)
	}
	recs, err := s.readStream(ctx, stream, version-n+1, len(events))
	if err != nil {
		return eventlog.AppendResult{}, err
	}
	if len(recs) != len(events) {
		return eventlog.AppendResult{}, fmt.Errorf("eventstoredb: stream %q: idempotent append ending at version %d, but the stream has no such events", stream, version)
	}
	for i, e := range events {
		if recs[i].ID != e.ID {
			return eventlog.AppendResult{}, fmt.Errorf("%w: stream %q: the events are stored, but not in this order or not as one append",
				eventlog.ErrDuplicateEventID, stream)
		}
	}
	last := recs[len(recs)-1]
	return eventlog.AppendResult{Version: last.Version, Position: last.Position}, nil
}

// afterConflict decides a refused append: a retry of events already in
// the stream, in order, answers the first append's result; events partly
// in the stream are ErrDuplicateEventID; anything else is a conflict with
// the stream's actual version.
func (s *Store) afterConflict(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	recs, err := s.readStream(ctx, stream, 1, 0)
	if err != nil {
		return eventlog.AppendResult{}, err
	}
	at := -1
	for i, r := range recs {
		if r.ID == events[0].ID {
			at = i
			break
		}
	}
	if at >= 0 {
		if at+len(events) <= len(recs) {
			same := true
			for i, e := range events {
				if recs[at+i].ID != e.ID {
					same = false
					break
				}
			}
			if same {
				last := recs[at+len(events)-1]
				return eventlog.AppendResult{Version: last.Version, Position: last.Position}, nil
			}
		}
		return eventlog.AppendResult{}, fmt.Errorf("%w: stream %q: event %s is at version %d, but the append does not repeat the events from there",
			eventlog.ErrDuplicateEventID, stream, events[0].ID, recs[at].Version)
	}
	ids := make(map[[16]byte]uint64, len(recs))
	for _, r := range recs {
		ids[r.ID] = r.Version
	}
	for _, e := range events[1:] {
		if v, ok := ids[e.ID]; ok {
			return eventlog.AppendResult{}, fmt.Errorf("%w: stream %q: event %s is already at version %d", eventlog.ErrDuplicateEventID, stream, e.ID, v)
		}
	}
	return eventlog.AppendResult{}, &eventlog.ConflictError{Stream: stream, Expected: expected, Actual: uint64(len(recs))}
}

// ReadStream implements eventlog.Store. Each page of the read runs under
// the call timeout.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	return s.readStream(ctx, stream, from, limit)
}

func (s *Store) readStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Record, error) {
	if from == 0 {
		from = 1
	}
	var out []eventlog.Record
	for {
		want := uint64(readPage)
		if limit > 0 && limit-len(out) < readPage {
			want = uint64(limit - len(out))
		}
		n, found, err := s.readStreamPage(ctx, stream, from, want, func(rec eventlog.Record) {
			out = append(out, rec)
			from = rec.Version + 1
		})
		if err != nil {
			return nil, err
		}
		if !found || uint64(n) < want || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
	}
}

// readStreamPage reads up to count events of stream from version, under
// the call timeout, and calls fn for each; found is false when the stream
// does not exist.
func (s *Store) readStreamPage(ctx context.Context, stream string, from, count uint64, fn func(eventlog.Record)) (n int, found bool, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return 0, false, err
	}
	rs, err := c.ReadStream(ctx, s.cfg.namespace+stream,
		esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(from - 1)}, count)
	s.renew(c, err)
	if err != nil {
		return 0, false, s.wrap(ctx, fmt.Sprintf("read stream %q", stream), err)
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if isCode(err, esdb.ErrorCodeResourceNotFound) {
			return n, false, nil
		}
		if err != nil {
			return 0, false, s.wrap(ctx, fmt.Sprintf("read stream %q", stream), err)
		}
		rec, err := s.record(ev, stream)
		if err != nil {
			return 0, false, err
		}
		fn(rec)
		n++
	}
}

// ReadAll implements eventlog.Store. Each page of the read runs under the
// call timeout.
func (s *Store) ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error) {
	var out []eventlog.Record
	from := after
	for {
		n := 0
		var lastSeen eventlog.Position
		err := s.readAllPage(ctx, esdb.Forwards, from, readPage, func(ev *esdb.ResolvedEvent, pos eventlog.Position) (bool, error) {
			n++
			lastSeen = pos
			if !from.IsZero() && !from.Before(pos) {
				return true, nil // a read from P includes P
			}
			stream, ok := s.ours(ev.OriginalEvent().StreamID)
			if !ok {
				return true, nil
			}
			rec, err := s.record(ev, stream)
			if err != nil {
				return false, err
			}
			out = append(out, rec)
			return limit <= 0 || len(out) < limit, nil
		})
		if err != nil {
			return nil, err
		}
		if (limit > 0 && len(out) >= limit) || n < readPage {
			return out, nil
		}
		from = lastSeen
	}
}

// readAllPage reads up to count events of $all from `from` (Start or End
// when zero, as direction asks), under the call timeout, and calls fn for
// each until it returns false.
func (s *Store) readAllPage(ctx context.Context, dir esdb.Direction, from eventlog.Position, count uint64,
	fn func(*esdb.ResolvedEvent, eventlog.Position) (bool, error)) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var start esdb.AllPosition = esdb.Position{Commit: from.Commit, Prepare: from.Prepare}
	if from.IsZero() {
		start = esdb.Start{}
		if dir == esdb.Backwards {
			start = esdb.End{}
		}
	}
	c, err := s.conn()
	if err != nil {
		return err
	}
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: dir, From: start}, count)
	s.renew(c, err)
	if err != nil {
		return s.wrap(ctx, "read $all", err)
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.wrap(ctx, "read $all", err)
		}
		p := ev.OriginalEvent().Position
		more, err := fn(ev, eventlog.Position{Commit: p.Commit, Prepare: p.Prepare})
		if err != nil || !more {
			return err
		}
	}
}

// Head implements eventlog.Store: the position of the last event of our
// streams, found by reading $all backwards past system events and other
// namespaces' events.
func (s *Store) Head(ctx context.Context) (eventlog.Position, error) {
	from := eventlog.Start // End, backwards
	for {
		var head, lastSeen eventlog.Position
		found := false
		n := 0
		err := s.readAllPage(ctx, esdb.Backwards, from, readPage, func(ev *esdb.ResolvedEvent, pos eventlog.Position) (bool, error) {
			n++
			if !from.IsZero() && !pos.Before(from) {
				return true, nil // whether a backward read includes its start is not ours to rely on
			}
			lastSeen = pos
			if _, ok := s.ours(ev.OriginalEvent().StreamID); ok {
				head, found = pos, true
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return eventlog.Start, err
		}
		if found {
			return head, nil
		}
		if n < readPage || lastSeen.IsZero() {
			return eventlog.Start, nil
		}
		from = lastSeen
	}
}

// record converts a server event of our stream into a port record.
func (s *Store) record(ev *esdb.ResolvedEvent, stream string) (eventlog.Record, error) {
	e := ev.OriginalEvent()
	rec := eventlog.Record{
		ID: e.EventID, Stream: stream, Version: e.EventNumber + 1,
		Position: eventlog.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		Type:     e.EventType, Data: e.Data,
	}
	if err := json.Unmarshal(e.UserMetadata, &rec.Meta); err != nil {
		return eventlog.Record{}, fmt.Errorf("eventstoredb: stream %q version %d (event %s): metadata is not ours: %w",
			stream, rec.Version, e.EventID, err)
	}
	return rec, nil
}

// wrap turns a client error into the adapter's: the context's own error
// when it ended, ErrUnavailable when the server could not be reached.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil && (isCode(err, esdb.ErrorCodeDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("eventstoredb: %s: %w", op, ctx.Err())
	}
	// EOF: the connection went away under a call the client had just
	// started on it (the server stopped or crashed between the client's
	// last look at the connection and the call's first message); the call's
	// outcome is unknown, as with any other unavailability, and a retry
	// with the same event ids is safe.
	if isCode(err, esdb.ErrorUnavailable) || isCode(err, esdb.ErrorCodeDeadlineExceeded) || isCode(err, esdb.ErrorCodeNotLeader) ||
		isCode(err, esdb.ErrorCodeConnectionClosed) || isGRPC(err, codes.Unavailable) || isGRPC(err, codes.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
	}
	if isTooLarge(err) {
		return fmt.Errorf("%w: %s: larger than the server's maximum append size: %v", eventlog.ErrInvalidAppend, op, err)
	}
	return fmt.Errorf("eventstoredb: %s: %w", op, err)
}

// isCode reports whether err is a client error with code.
func isCode(err error, code esdb.ErrorCode) bool {
	var e *esdb.Error
	return errors.As(err, &e) && e.Code() == code
}

// isGRPC reports whether err carries the gRPC status code (the client
// passes some errors of streaming calls on as they come, not as *esdb.Error).
func isGRPC(err error, code codes.Code) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == code
}

// isTooLarge reports whether err is the server's refusal of an append over
// its maximum append size.
func isTooLarge(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "maximum-append-size-exceeded") || strings.Contains(msg, "maximum append size")
}

// Redact hides the password of a connection string.
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw {
			return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
		}
	}
	return url
}
