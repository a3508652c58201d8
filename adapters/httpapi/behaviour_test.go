package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/ledger"
	"github.com/accessledger/accessledger/queries"
)

// flaky wraps the command service: RegisterChild fails (or panics) the
// first `fail` times, then runs for real.
type flaky struct {
	Commands
	fail  atomic.Int32
	panic bool
	calls atomic.Int32
}

func (f *flaky) RegisterChild(ctx context.Context, m commands.Meta, c commands.RegisterChild) (commands.ChildRegistered, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		if f.panic {
			panic("secret panic detail")
		}
		return commands.ChildRegistered{}, errors.New("database exploded: secret internal detail")
	}
	return f.Commands.RegisterChild(ctx, m, c)
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	key := map[string]string{idempotencyKeyHeader: "key-" + uuid.NewString()}
	register := req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":"IDEM-1"}`, header: key}

	first := e.do(register)
	require.Equal(t, 201, first.status, string(first.body))
	require.Empty(t, first.header.Get(replayedHeader))
	head := e.head()

	again := e.do(register)
	require.Equal(t, 201, again.status)
	require.Equal(t, "true", again.header.Get(replayedHeader))
	require.Equal(t, string(first.body), string(again.body))
	require.Equal(t, "application/json", again.header.Get("Content-Type"))
	require.Equal(t, head, e.head(), "a replay appends nothing")

	// The same key with another request: 422.
	other := register
	other.body = `{"reference":"IDEM-2"}`
	e.do(other).problem(t, 422, codeInvalid)
	other = register
	other.path = "/v1/invitations"
	other.body = `{"email":"x@example.org","kind":"parent"}`
	e.do(other).problem(t, 422, codeInvalid)
	// Another caller has keys of its own.
	mine := register
	mine.sub = "worker-zed"
	mine.body = `{"reference":"IDEM-3"}` // another reference: one reference is one child (R17)
	require.Equal(t, 201, e.do(mine).status)
	require.NotEqual(t, head, e.head())
	head = e.head()

	// A refused command's answer is kept and replayed too.
	refused := req{method: "POST", path: "/v1/children/" + w.child + "/grants", role: domain.RoleWorker, sub: "worker-eve",
		body:   `{"account_id":"` + w.member + `","relationship":"parent","permissions":["view"],"reason":"r"}`,
		header: map[string]string{idempotencyKeyHeader: "refused-1"}}
	p1 := e.do(refused)
	p1.problem(t, 403, codeForbidden)
	p2 := e.do(refused)
	p2.problem(t, 403, codeForbidden)
	require.Equal(t, "true", p2.header.Get(replayedHeader))
	require.Equal(t, string(p1.body), string(p2.body))

	// A request refused before the command (malformed body) does not use
	// the key: once fixed, the same key runs the command.
	bad := req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":1}`,
		header: map[string]string{idempotencyKeyHeader: "fixed-later"}}
	e.do(bad).problem(t, 400, codeInvalid)
	bad.body = `{"reference":"FIXED"}`
	res := e.do(bad)
	require.Equal(t, 201, res.status)
	require.Empty(t, res.header.Get(replayedHeader))
	require.NotEqual(t, head, e.head())

	// Invalid keys.
	for _, k := range []string{"has space", strings.Repeat("k", idempotency.MaxKeyBytes+1), "ünï"} {
		r := register
		r.header = map[string]string{idempotencyKeyHeader: k}
		e.do(r).problem(t, 400, codeInvalid)
	}
	res = e.do(req{method: "GET", path: "/metrics"})
	require.Contains(t, string(res.body), `accessledger_commands_total{command="register_child",outcome="replayed"} 1`)
}

// TestIdempotency_5xxAbandonsTheKey: a command that fails with a 5xx does not
// keep its answer: a retry with the same key runs the command again.
func TestIdempotency_5xxAbandonsTheKey(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run(fmt.Sprintf("panic=%v", panics), func(t *testing.T) {
			f := &flaky{panic: panics}
			f.fail.Store(1)
			e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { f.Commands = c.Commands; c.Commands = f })
			before := e.head()
			r := req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: `{"reference":"R-500"}`,
				header: map[string]string{idempotencyKeyHeader: "k-500"}}
			res := e.do(r)
			p := res.problem(t, 500, codeInternal)
			require.Equal(t, "internal error", p.Detail, "no internal detail leaks")
			require.NotContains(t, string(res.body), "secret")
			require.Equal(t, before, e.head())
			require.Contains(t, e.logs.String(), "secret", "the log has the detail")

			res = e.do(r)
			require.Equal(t, 201, res.status, string(res.body))
			require.Empty(t, res.header.Get(replayedHeader))
			require.EqualValues(t, 2, f.calls.Load())
			res = e.do(r)
			require.Equal(t, "true", res.header.Get(replayedHeader))
			require.EqualValues(t, 2, f.calls.Load())
		})
	}
}

// waitSpy reports every WaitFor call of the index.
type waitSpy struct {
	queries.Index
	called chan struct{}
}

func (s waitSpy) WaitFor(ctx context.Context, min eventlog.Position, timeout time.Duration) (eventlog.Position, error) {
	select {
	case s.called <- struct{}{}:
	default:
	}
	return s.Index.WaitFor(ctx, min, timeout)
}

// TestMinPosition_Stale: every query waits for a min_position the engine
// does not reach, then answers 503 "stale".
func TestMinPosition_Stale(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { c.Q.MinPositionWait = 300 * time.Millisecond })
	w := e.buildWorld()
	far := eventlog.At(1_000_000).String()
	for _, path := range []string{
		"/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view&min_position=" + far,
		"/v1/accounts/" + w.member + "/children?min_position=" + far,
		"/v1/children/" + w.child + "/viewers?min_position=" + far,
		"/v1/children/" + w.child + "/history?min_position=" + far,
		"/v1/children/" + w.child + "/history?as_of=" + far,
		"/v1/accounts/" + w.member + "/history?min_position=" + far,
		"/v1/accounts/" + w.member + "?min_position=" + far,
		"/v1/accounts?min_position=" + far,
		"/v1/audit?min_position=" + far,
		"/v1/audit/verify?min_position=" + far,
		"/v1/security-log?min_position=" + far,
		"/v1/policy?min_position=" + far,
	} {
		// Each path waits its 300 ms on its own: run them side by side.
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res := e.do(req{method: "GET", path: path, role: domain.RoleAuditor})
			if strings.HasPrefix(path, "/v1/accounts/"+w.member+"/children") || strings.HasPrefix(path, "/v1/check") {
				res = e.do(req{method: "GET", path: path, role: domain.RoleService})
			}
			p := res.problem(t, 503, codeStale)
			require.Contains(t, p.Detail, "position", path)
			require.Equal(t, "1", res.header.Get("Retry-After"))
			require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "it waited")
		})
	}
}

// TestMinPosition_Waits: a query whose min_position the engine reaches while
// it waits answers as soon as the position is applied, at that position or
// later; and a command's token makes the next read see the command.
func TestMinPosition_Waits(t *testing.T) {
	spy := waitSpy{called: make(chan struct{}, 1)}
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) {
		c.Q.MinPositionWait = 20 * time.Second
		spy.Index = c.Q.Index
		c.Q.Index = spy
	})
	w := e.buildWorld()
	next := e.head()
	next.Commit++
	next.Prepare++
	done := make(chan response)
	go func() {
		done <- e.do(req{method: "GET", path: "/v1/accounts/" + w.member + "?min_position=" + next.String(), role: domain.RoleAuditor})
	}()
	select { // the query is waiting
	case <-spy.called:
	case <-time.After(10 * time.Second):
		t.Fatal("the query did not wait")
	}
	require.True(t, e.index.Position().Before(next))
	e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/grants/" + w.member + "/revoke", role: domain.RoleWorker, sub: w.worker,
		body: `{"reason":"review"}`}, 200)
	res := <-done
	require.Equal(t, 200, res.status, string(res.body))
	got, err := eventlog.ParsePosition(res.json(t)["position"].(string))
	require.NoError(t, err)
	require.False(t, got.Before(next))

	// A command's token makes the next read see the command.
	pr := e.ok(req{method: "POST", path: "/v1/accounts/" + w.member + "/close", role: domain.RolePortalsTeam, body: `{"reason":"done"}`}, 200)
	a := e.ok(req{method: "GET", path: "/v1/accounts/" + w.member + "?min_position=" + pr["position"].(string), role: domain.RoleAuditor}, 200)
	require.Equal(t, "closed", a["status"])
	c := e.ok(req{method: "GET", path: "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view&min_position=" + pr["position"].(string), role: domain.RoleService}, 200)
	require.Equal(t, false, c["allowed"])
	require.Equal(t, "account_closed", c["reason"])
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	id, event, data string
	comment         string
}

// readSSE parses events from r into ch until r ends.
func readSSE(r io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

// openWatch opens a watch stream as the service; cancel ends it.
func (e *env) openWatch(query string, header map[string]string) (*http.Response, <-chan sseEvent, context.CancelFunc) {
	e.t.Helper()
	return e.openWatchAs(domain.RoleService, query, header)
}

// openWatchAs opens a watch stream as role; cancel ends it.
func (e *env) openWatchAs(role domain.Role, query string, header map[string]string) (*http.Response, <-chan sseEvent, context.CancelFunc) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hr, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/watch"+query, nil)
	require.NoError(e.t, err)
	hr.Header.Set("Authorization", "Bearer "+e.token(role, string(role)+"-watch"))
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(hr)
	require.NoError(e.t, err)
	ch := make(chan sseEvent, 100)
	if res.StatusCode == 200 {
		go readSSE(res.Body, ch)
	} else {
		close(ch)
	}
	e.t.Cleanup(func() { cancel(); _ = res.Body.Close() })
	return res, ch, cancel
}

// nextAccess returns the next "access" event, failing after a timeout.
func nextAccess(t *testing.T, ch <-chan sseEvent) (sseEvent, map[string]any) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "stream ended")
			if ev.event != "access" {
				continue
			}
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(ev.data), &m))
			// The data is a WatchEvent of docs/openapi.yaml.
			schema := loadDoc(t).Components.Schemas["WatchEvent"].Value
			require.NoError(t, schema.VisitJSON(m, openapi3.EnableJSONSchema2020()), ev.data)
			return ev, m
		case <-timeout:
			t.Fatal("no access event")
		}
	}
}

func TestWatch(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t))
	w := e.buildWorld()
	res, ch, cancel := e.openWatch("", nil)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	require.NotEmpty(t, res.Header.Get(requestIDHeader))

	// Heartbeats while idle.
	gotHeartbeat := false
	for !gotHeartbeat {
		select {
		case ev := <-ch:
			gotHeartbeat = strings.HasPrefix(ev.comment, "heartbeat ")
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat")
		}
	}
	// A change: the grant is revoked.
	rv := e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/grants/" + w.member + "/revoke", role: domain.RoleWorker, sub: w.worker,
		body: `{"reason":"review"}`}, 200)
	ev, m := nextAccess(t, ch)
	require.Equal(t, rv["position"], ev.id)
	require.Equal(t, rv["position"], m["position"])
	require.Equal(t, w.member, m["account_id"])
	require.Equal(t, w.child, m["child_id"])
	require.Equal(t, "revoked", m["reason"])
	require.Empty(t, m["permissions"])
	require.Equal(t, 1, watchStreams(t, e))
	cancel()
	require.Eventually(t, func() bool { return watchStreams(t, e) == 0 }, 5*time.Second, 10*time.Millisecond,
		"the stream ends when the client disconnects")

	// From a position: the grant made in the world, then the revoke; and on
	// a reconnect with Last-Event-ID, only what came after it.
	start, err := eventlog.ParsePosition(w.lastPosition)
	require.NoError(t, err)
	before := eventlog.At(start.Commit - 1).String()
	_, ch, cancel = e.openWatch("?after="+before, nil)
	ev, m = nextAccess(t, ch)
	require.Equal(t, w.lastPosition, ev.id)
	require.Equal(t, "grant", m["reason"])
	require.Equal(t, []any{"view"}, m["permissions"])
	ev, m = nextAccess(t, ch)
	require.Equal(t, "revoked", m["reason"])
	cancel()
	_, ch, cancel = e.openWatch("", map[string]string{"Last-Event-ID": w.lastPosition})
	_, m = nextAccess(t, ch)
	require.Equal(t, "revoked", m["reason"])
	cancel()

	// Closing an account changes several pairs at one position: only the
	// last change of the position carries the id.
	second := e.ok(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":"NCC-0002"}`}, 201)
	e.ok(req{method: "POST", path: "/v1/children/" + second["child_id"].(string) + "/placements", role: domain.RoleWorker, sub: w.worker,
		body: `{"carer_account_id":"` + w.carer + `","started_at":"2026-01-01T00:00:00Z"}`}, 201)
	beforeClose := e.head()
	cl := e.ok(req{method: "POST", path: "/v1/accounts/" + w.carer + "/close", role: domain.RolePortalsTeam, body: `{"reason":"moved away"}`}, 200)
	_, ch, cancel = e.openWatch("?after="+beforeClose.String(), nil)
	ev1, m1 := nextAccess(t, ch)
	ev2, m2 := nextAccess(t, ch)
	require.Equal(t, cl["position"], m1["position"])
	require.Equal(t, cl["position"], m2["position"])
	require.Equal(t, "account_closed", m1["reason"])
	require.Equal(t, "account_closed", m2["reason"])
	require.NotEqual(t, m1["child_id"], m2["child_id"])
	require.Empty(t, ev1.id)
	require.Equal(t, cl["position"], ev2.id)
	cancel()

	// Refusals.
	e.do(req{method: "GET", path: "/v1/watch", role: domain.RoleWorker}).problem(t, 403, codeForbidden)
	e.do(req{method: "GET", path: "/v1/watch?after=x", role: domain.RoleService}).problem(t, 400, codeInvalid)
	e.do(req{method: "GET", path: "/v1/watch", role: domain.RoleService, header: map[string]string{"Last-Event-ID": "nope"}}).problem(t, 400, codeInvalid)
}

// tooOld is an index whose change feed has forgotten everything before
// position 5.
type tooOld struct{ queries.Index }

func (x tooOld) Changes(after eventlog.Position) ([]accessindex.Change, eventlog.Position, <-chan struct{}, error) {
	if after.Before(eventlog.At(5)) {
		return nil, x.Position(), nil, fmt.Errorf("%w: gone", accessindex.ErrTooOld)
	}
	return x.Index.Changes(after)
}

func TestWatch_TooOld(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { c.Q.Index = tooOld{c.Q.Index} })
	e.buildWorld()
	e.do(req{method: "GET", path: "/v1/watch?after=1", role: domain.RoleService}).problem(t, 410, codeConflict)
	res, _, cancel := e.openWatch("?after=5", nil)
	defer cancel()
	require.Equal(t, 200, res.StatusCode)
}

func watchStreams(t *testing.T, e *env) int {
	t.Helper()
	mfs, err := e.registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == metricWatchStreams {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	t.Fatal("no watch gauge")
	return 0
}

func TestPanicIsInternal(t *testing.T) {
	f := &flaky{panic: true}
	f.fail.Store(1)
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { f.Commands = c.Commands; c.Commands = f })
	res := e.do(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: `{"reference":"P"}`})
	p := res.problem(t, 500, codeInternal)
	require.Equal(t, "internal error", p.Detail)
	require.NotContains(t, string(res.body), "secret")
	require.Contains(t, e.logs.String(), "panic serving request")
	// The server goes on.
	require.Equal(t, 201, e.do(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, body: `{"reference":"P"}`}).status)
}

func TestProblemFor(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{domain.ErrInvalid, 400, codeInvalid},
		{&domain.FieldError{Field: "f", Problem: "p"}, 400, codeInvalid},
		{fmt.Errorf("wrapped: %w", domain.ErrChildNotFound), 404, codeNotFound},
		{domain.ErrNotAllocated, 403, codeForbidden},
		{domain.ErrPlacementOverlap, 409, codeConflict},
		{domain.ErrAlreadyRegistered, 409, codeAlreadyRegistered},
		{fmt.Errorf("x: %w: %w", commands.ErrConflictRetries, eventlog.ErrConflict), 409, codeConflict},
		{fmt.Errorf("%w: bad signature", auth.ErrUnauthenticated), 401, codeUnauthenticated},
		{fmt.Errorf("%w: at 3", accessindex.ErrStale), 503, codeStale},
		{&http.MaxBytesError{Limit: MaxBodyBytes}, 413, codeTooLarge},
		{eventlog.ErrInvalidPosition, 400, codeInvalid},
		{idempotency.ErrKeyReused, 422, codeInvalid},
		{idempotency.ErrInProgress, 409, codeConflict},
		{idempotency.ErrInvalidKey, 400, codeInvalid},
		{errUnsupportedMediaType, 415, codeInvalid},
		{errMethodNotAllowed{allow: "GET"}, 405, codeInvalid},
		{context.Canceled, 503, codeInternal},
		{fmt.Errorf("append: %w: dial 10.0.0.7:2113: connection refused", eventlog.ErrUnavailable), 503, codeInternal},
		{errors.New("pq: connection refused at 10.0.0.7"), 500, codeInternal},
		{fmt.Errorf("%w: edited at position 2 (leaf 1): event x of child-secret", ledger.ErrMismatch), 503, codeLedgerMismatch},
		{&queries.Mismatch{First: ledger.Problem{Kind: ledger.KindMissing, LeafIndex: 4, Position: eventlog.At(5), HasPosition: true}, Known: true},
			503, codeLedgerMismatch},
		{&queries.NotFound{Detail: "no leaf"}, 404, codeNotFound},
		{&queries.Pending{Detail: "retry"}, 503, codeStale},
		{&queries.Invalid{Detail: "bad filter"}, 400, codeInvalid},
		{&queries.Forbidden{Role: domain.RoleWorker, Query: queries.QueryAuditList, Label: "GET /v1/audit"}, 403, codeForbidden},
		{queries.ErrNotReady, 503, codeStale},
		{queries.ErrLedgerOff, 503, codeInternal},
		{fmt.Errorf("sign: %w", ledger.ErrNotVerified), 503, codeStale},
		{errLedgerOff, 503, codeInternal},
	} {
		p := problemFor(tc.err)
		require.Equal(t, tc.status, p.Status, "%v", tc.err)
		require.Equal(t, tc.code, string(p.Code), "%v", tc.err)
		require.Equal(t, problemTypePrefix+tc.code, p.Type)
		require.Equal(t, titles[tc.code], p.Title)
		if tc.code == codeInternal {
			require.NotContains(t, p.Detail, "10.0.0.7")
		}
		require.NotContains(t, p.Detail, "child-secret", "a mismatch's detail never shows the event")
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{WatchHeartbeat: -1}.Validate()
	require.Error(t, err)
	for _, want := range []string{"Commands", "Queries", "Auth", "Idempotency", "Ready", "WatchHeartbeat"} {
		require.Contains(t, err.Error(), want)
	}
	_, err = New(Config{})
	require.Error(t, err)
}

// TestSecondNewOnOneRegistry: metrics cannot be registered twice.
func TestSecondNewOnOneRegistry(t *testing.T) {
	var captured *setup
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) { captured = c })
	cfg := captured.Config
	_, err := New(cfg)
	require.Error(t, err)
	cfg.Registry = nil
	h, err := New(cfg)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Contains(t, rec.Body.String(), "go_goroutines", "its own registry has the Go collector")
	_ = e
}
