package main

// End-to-end tests of operations: graceful shutdown, restarts and bad input.

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// ---- graceful shutdown, restarts, bad input ----

// TestGracefulShutdownLosesNoAcknowledgedCommand fires commands from
// several goroutines, stops the server (as SIGTERM does) in the middle,
// and after a restart on the same store finds the effect of every command
// the server acknowledged with a 2xx.
func TestGracefulShutdownLosesNoAcknowledgedCommand(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		worker := s.as(domain.RoleWorker, "worker-load")
		type ack struct {
			kind, id string
			pos      eventlog.Position
		}
		var (
			mu       sync.Mutex
			acks     []ack
			early    []string // failures before the stop began: none expected
			late     int      // no answer, or not a 2xx, once the stop began
			stopping atomic.Bool
			wg       sync.WaitGroup
		)
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if stopping.Load() {
				late++
				return
			}
			early = append(early, fmt.Sprintf(format, args...))
		}
		const goroutines, stopAfter, maxPerGoroutine = 6, 60, 1000
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range maxPerGoroutine {
					var (
						res  *e2eResp
						err  error
						kind string
					)
					if (g+i)%2 == 0 {
						kind = "child"
						res, err = worker.try("POST", "/v1/children", map[string]string{"reference": fmt.Sprintf("LOAD-%d-%d", g, i)})
					} else {
						kind = "account"
						res, err = worker.try("POST", "/v1/invitations", map[string]string{
							"email": fmt.Sprintf("load-%d-%d-%s@example.org", g, i, uuid.NewString()[:6]), "kind": "parent"})
					}
					if err != nil { // no answer: not acknowledged; the server is gone
						fail("no answer: %v", err)
						return
					}
					if res.status/100 != 2 {
						fail("%s", res)
						continue
					}
					var m map[string]any
					_ = json.Unmarshal(res.body, &m)
					p, perr := eventlog.ParsePosition(fmt.Sprint(m["position"]))
					id, _ := m[kind+"_id"].(string)
					if perr != nil || id == "" {
						fail("a 2xx answer without id or position: %s", res)
						continue
					}
					mu.Lock()
					acks = append(acks, ack{kind: kind, id: id, pos: p})
					mu.Unlock()
				}
			}()
		}
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acks) >= stopAfter || len(early) > 0
		}, e2eWait, time.Millisecond)
		stopping.Store(true)
		s.stop() // cancels the server's context; requires exit code 0
		wg.Wait()
		require.Empty(t, early, "commands failed before the shutdown")
		require.GreaterOrEqual(t, len(acks), stopAfter)
		t.Logf("%d commands acknowledged; %d requests got no answer or not a 2xx once the stop began", len(acks), late)

		s.start()
		w := newWorld(s)
		byPos := map[eventlog.Position]ack{}
		for _, a := range acks {
			_, dup := byPos[a.pos]
			require.False(t, dup, "two acknowledged commands with position %s", a.pos)
			byPos[a.pos] = a
			if w.last.Before(a.pos) {
				w.last = a.pos
			}
		}
		require.False(t, s.headPosition().Before(w.last), "the log's head is at or after every acknowledged position")
		entries := w.audit("")
		atPos := map[string]e2eAuditEntry{}
		for _, e := range entries {
			atPos[e.Position] = e
		}
		for _, a := range acks {
			e, ok := atPos[a.pos.String()]
			require.True(t, ok, "acknowledged %s %s at %s: not in the log after the restart", a.kind, a.id, a.pos)
			if a.kind == "child" {
				require.Equal(t, domain.TypeChildRegistered, e.Type)
				require.Equal(t, a.id, text(*e.ChildID))
			} else {
				require.Equal(t, domain.TypeAccountInvited, e.Type)
				require.Equal(t, a.id, text(*e.AccountID))
				v, _ := w.accountView(a.id)
				require.Equal(t, "invited", text(v.Status))
			}
		}
	})
}

// TestRestartKeepsStateAndIdempotencyKeys: after a restart the index is
// rebuilt from the log (same answers), and a retried command with the
// same Idempotency-Key gets the first answer and appends nothing.
func TestRestartKeepsStateAndIdempotencyKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		key := "e2e-" + uuid.NewString()
		body := map[string]string{"carer_account_id": carer.id, "started_at": rfc(now().Add(-day))}
		first := w.worker.do("POST", "/v1/children/"+child+"/placements", body, "Idempotency-Key", key)
		require.Equal(t, 201, first.status, first.String())
		w.note(first.json())
		before := w.check(carer.id, child, "record")
		requireAccess(t, before, true, "placement")
		head := s.head()

		s.restart() // the tokens stay valid: the secret is the data directory's
		after := w.check(carer.id, child, "record")
		require.Equal(t, before.Allowed, after.Allowed)
		require.Equal(t, text(before.Reason), text(after.Reason))
		require.Equal(t, before.Position, after.Position)

		again := w.worker.do("POST", "/v1/children/"+child+"/placements", body, "Idempotency-Key", key)
		require.Equal(t, 201, again.status, again.String())
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
		require.JSONEq(t, string(first.body), string(again.body))
		require.Equal(t, head, s.head(), "the retry appends nothing")
		// The same key for another request is refused.
		w.worker.do("POST", "/v1/children/"+child+"/placements", map[string]string{"carer_account_id": carer.id,
			"started_at": rfc(now())}, "Idempotency-Key", key).problem(422, "invalid")
	})
}

// TestBadInputAppendsNothing: malformed requests of every kind are refused
// with a 4xx problem and the right code, and none appends anything.
func TestBadInputAppendsNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, store []string) {
		s := startServer(t, store...)
		w := newWorld(s)
		child := w.registerChild()
		carer := w.account(string(domain.KindFosterCarer))
		member := w.account(string(domain.KindNetworkMember))
		pl := w.place(child, carer.id, now().Add(-day))
		w.grant(w.worker, child, member.id, "network_member", []string{"view"}, "friend")
		head := s.head()
		seclog := len(w.securityLog(""))

		// A body of exactly 64 KiB + 1 byte, valid JSON.
		oversized := func(field string) []byte {
			prefix, suffix := `{"`+field+`":"`, `"}`
			return []byte(prefix + strings.Repeat("a", 64<<10+1-len(prefix)-len(suffix)) + suffix)
		}
		require.Len(t, oversized("reference"), 64<<10+1)
		grants := "/v1/children/" + child + "/grants"
		place := "/v1/children/" + child + "/placements"
		end := place + "/" + pl + "/end"
		invite := "/v1/invitations"
		phone := "/v1/accounts/" + carer.id + "/phone"
		tests := []struct {
			name         string
			c            *e2eClient
			method, path string
			body         any
			headers      []string
			status       int
			code         string
		}{
			{"oversized register", w.worker, "POST", "/v1/children", oversized("reference"), nil, 413, "too_large"},
			{"oversized grant reason", w.worker, "POST", grants, oversized("reason"), nil, 413, "too_large"},
			{"oversized invitation", w.worker, "POST", invite, oversized("email"), nil, 413, "too_large"},
			{"oversized no content length", w.worker, "POST", "/v1/children", &chunked{oversized("reference")}, nil, 413, "too_large"},
			{"malformed", w.worker, "POST", "/v1/children", `{"reference":`, nil, 400, "invalid"},
			{"empty", w.worker, "POST", "/v1/children", ``, nil, 400, "invalid"},
			{"not an object", w.worker, "POST", "/v1/children", `["NCC-1"]`, nil, 400, "invalid"},
			{"two values", w.worker, "POST", "/v1/children", `{"reference":"a"}{"reference":"b"}`, nil, 400, "invalid"},
			{"wrong type", w.worker, "POST", "/v1/children", `{"reference":42}`, nil, 400, "invalid"},
			{"wrong type in array", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":[1],"reason":"r"}`, nil, 400, "invalid"},
			{"permissions not an array", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":"view,record","reason":"r"}`, nil, 400, "invalid"},
			{"null required", w.worker, "POST", "/v1/children", `{"reference":null}`, nil, 400, "invalid"},
			{"missing field", w.worker, "POST", invite, `{"email":"a@example.org"}`, nil, 400, "invalid"},
			{"unknown field", w.worker, "POST", "/v1/children", `{"reference":"a","worker_id":"me"}`, nil, 400, "invalid"},
			{"field in another case", w.worker, "POST", "/v1/children", `{"Reference":"a"}`, nil, 400, "invalid"},
			{"duplicate field", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":["view"],"reason":"a","reason":"b"}`, nil, 400, "invalid"},
			{"deeply nested", w.worker, "POST", "/v1/children", `{"reference":"a","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, nil, 400, "invalid"},
			{"invalid UTF-8", w.worker, "POST", "/v1/children", []byte("{\"reference\":\"\xff\xfe\"}"), nil, 400, "invalid"},
			{"lone surrogate", w.worker, "POST", "/v1/children", `{"reference":"a\ud800b"}`, nil, 400, "invalid"},
			{"NUL", w.worker, "POST", "/v1/children", `{"reference":"a\u0000b"}`, nil, 400, "invalid"},
			{"escape character", w.worker, "POST", grants, `{"account_id":"` + member.id + `","relationship":"network_member","permissions":["view","record"],"reason":"\u001b[31mred"}`, nil, 400, "invalid"},
			{"right-to-left override", w.worker, "POST", "/v1/children/" + child + "/grants/" + member.id + "/revoke", `{"reason":"fine\u202egnp.exe"}`, nil, 400, "invalid"},
			{"bidi isolate in email", w.worker, "POST", invite, "{\"email\":\"a\u2067b@example.org\",\"kind\":\"parent\"}", nil, 400, "invalid"},
			{"replacement character", w.worker, "POST", "/v1/children", "{\"reference\":\"a\ufffdb\"}", nil, 400, "invalid"},
			{"not JSON content type", w.worker, "POST", "/v1/children", `{"reference":"a"}`, []string{"Content-Type", "text/plain"}, 415, "invalid"},
			{"form content type", w.worker, "POST", "/v1/children", `reference=a`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "invalid"},
			{"latin-1 charset", w.worker, "POST", "/v1/children", `{"reference":"a"}`, []string{"Content-Type", "application/json; charset=iso-8859-1"}, 415, "invalid"},
			{"bad path id", w.worker, "POST", "/v1/children/not-a-uuid/placements", `{"carer_account_id":"` + carer.id + `","started_at":"2026-01-01T00:00:00Z"}`, nil, 400, "invalid"},
			{"nil uuid", w.worker, "POST", place, `{"carer_account_id":"00000000-0000-0000-0000-000000000000","started_at":"2026-01-01T00:00:00Z"}`, nil, 400, "invalid"},
			{"braced uuid", w.worker, "POST", place, `{"carer_account_id":"{` + carer.id + `}","started_at":"2026-01-01T00:00:00Z"}`, nil, 400, "invalid"},
			{"time without zone", w.worker, "POST", end, `{"ended_at":"2026-01-01T00:00:00","reason":"r"}`, nil, 400, "invalid"},
			{"time in words", w.worker, "POST", end, `{"ended_at":"yesterday","reason":"r"}`, nil, 400, "invalid"},
			{"impossible date", w.worker, "POST", end, `{"ended_at":"2026-02-30T00:00:00Z","reason":"r"}`, nil, 400, "invalid"},
			{"year out of range", w.worker, "POST", end, `{"ended_at":"0001-01-01T00:00:00Z","reason":"r"}`, nil, 400, "invalid"},
			{"bad email", w.worker, "POST", invite, `{"email":"not-an-email","kind":"parent"}`, nil, 400, "invalid"},
			{"bad kind", w.worker, "POST", invite, `{"email":"k@example.org","kind":"Parent"}`, nil, 400, "invalid"},
			{"bad phone", w.service, "PUT", phone, `{"phone":"call me"}`, nil, 400, "invalid"},
			{"bad idempotency key", w.worker, "POST", "/v1/children", `{"reference":"a"}`, []string{"Idempotency-Key", strings.Repeat("k", 300)}, 400, "invalid"},
			{"no token", s.anonymous(), "POST", "/v1/children", `{"reference":"a"}`, nil, 401, "unauthenticated"},
			{"forged token", &e2eClient{s: s, token: w.worker.token[:len(w.worker.token)-2] + "xx"}, "POST", "/v1/children", `{"reference":"a"}`, nil, 401, "unauthenticated"},
			{"wrong method", w.worker, "DELETE", "/v1/children", nil, nil, 405, "invalid"},
			{"unknown path", w.worker, "POST", "/v1/children/" + child + "/adoptions", `{}`, nil, 404, "not_found"},
			{"unknown query parameter", w.worker, "POST", "/v1/children?force=true", `{"reference":"a"}`, nil, 400, "invalid"},
		}
		for _, tc := range tests {
			res := tc.c.do(tc.method, tc.path, tc.body, tc.headers...)
			require.Equal(t, tc.status, res.status, "%s: %s", tc.name, res)
			res.problem(tc.status, tc.code)
		}
		require.Equal(t, head, s.head(), "bad input appends nothing")
		// The commands the service refused (email, kind, phone) are in the
		// security log.
		require.GreaterOrEqual(t, len(w.securityLog("")), seclog+3)
	})
}

// chunked is a body of unknown length (sent chunked, without
// Content-Length).
type chunked struct{ b []byte }

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.b)
	c.b = c.b[n:]
	return n, nil
}

// TestServeAccessLogFlag: --access-log reaches the HTTP API. With errors,
// a successful check leaves no access-log line; a refused check and a
// command each leave theirs. (The modes themselves are httpapi's
// TestAccessLog.)
func TestServeAccessLogFlag(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--access-log", "errors")
	w := newWorld(s)
	child := w.registerChild()
	carer := w.account(string(domain.KindFosterCarer))
	requireAccess(t, w.check(carer.id, child, "view"), false, "no_relationship")
	w.manager.do("GET", "/v1/check?account_id="+carer.id+"&child_id="+child+"&permission=view", nil).problem(403, "forbidden")
	var checks, commands []string
	for _, line := range strings.Split(s.logText(), "\n") {
		if !strings.Contains(line, `msg="http request"`) {
			continue
		}
		switch {
		case strings.Contains(line, `route="GET /v1/check"`):
			checks = append(checks, line)
		case strings.Contains(line, `route="POST /v1/children"`):
			commands = append(commands, line)
		}
	}
	require.Len(t, checks, 1, "only the refused check: %q", checks)
	require.Contains(t, checks[0], "status=403")
	require.Contains(t, checks[0], "code=forbidden")
	require.Len(t, commands, 1)
	require.Contains(t, commands[0], "status=201")
}
