package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/apitest"
)

// contract is an http.RoundTripper that checks every request the client
// sends against docs/openapi.yaml before sending it: a path, parameter or
// body the document does not have fails the test.
type contract struct {
	next           http.RoundTripper
	expectFailures bool // TestContractCatchesStrays
	mu             sync.Mutex
	seen           map[string]bool // operationIds sent
	failures       []string
	find           func(*http.Request) (*openapi3filter.RequestValidationInput, error)
}

func (c *contract) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

func newContract(t *testing.T) *contract {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("../docs/openapi.yaml")
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()))
	doc.Servers = nil // any host: the test server's port is not the document's
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	c := &contract{next: http.DefaultTransport, seen: map[string]bool{}}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !t.Failed() && !c.expectFailures {
			require.Empty(t, c.failures, "requests the document does not allow")
		}
	})
	c.find = func(r *http.Request) (*openapi3filter.RequestValidationInput, error) {
		route, params, err := router.FindRoute(r)
		if err != nil {
			return nil, err
		}
		return &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}, nil
	}
	return c
}

func (c *contract) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	check := r.Clone(r.Context())
	check.Body = io.NopCloser(bytes.NewReader(body))
	in, err := c.find(check)
	if err != nil {
		c.fail("%s %s is not in docs/openapi.yaml: %v", r.Method, r.URL, err)
	} else {
		if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
			c.fail("%s %s does not validate against docs/openapi.yaml: %v", r.Method, r.URL, err)
		}
		c.mu.Lock()
		c.seen[in.Route.Operation.OperationID] = true
		c.mu.Unlock()
	}
	return c.next.RoundTrip(r)
}

// TestContractCatchesStrays: the contract check fails a request with a
// path, a parameter or a body the document does not have.
func TestContractCatchesStrays(t *testing.T) {
	c := newContract(t)
	c.expectFailures = true
	c.next = roundTripper(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 599, Body: io.NopCloser(bytes.NewReader(nil)), Header: http.Header{}}, nil
	})
	hc := &http.Client{Transport: c}
	for _, r := range []struct{ method, url, body string }{
		{"GET", "http://x/v1/nowhere", ""},
		{"GET", "http://x/v1/check?account_id=" + uuid.NewString() + "&child_id=" + uuid.NewString() + "&permission=fly", ""},
		{"POST", "http://x/v1/children", `{"reference":"R","colour":"blue"}`},
	} {
		req, err := http.NewRequest(r.method, r.url, bytes.NewReader([]byte(r.body)))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
	}
	require.Len(t, c.failures, 3, "%v", c.failures)
}

// newClient returns a client of s acting as sub in role, whose requests
// are checked against the document.
func newClient(t *testing.T, s *apitest.Server, c *contract, role domain.Role, sub string) *client.Client {
	t.Helper()
	cl, err := client.New(s.URL, s.Token(t, role, sub), client.WithHTTPClient(&http.Client{Transport: c}))
	require.NoError(t, err)
	cl.RetryWait = time.Millisecond
	return cl
}

// TestAgainstTheRealServer calls every endpoint through the client: the
// requests validate against the document, the answers decode into the
// wire types, and the client carries the consistency token of its
// commands into its queries.
func TestAgainstTheRealServer(t *testing.T) {
	ctx := context.Background()
	s := apitest.Start(t, nil)
	c := newContract(t)
	worker := newClient(t, s, c, domain.RoleWorker, "worker-ann")
	service := newClient(t, s, c, domain.RoleService, "portal")
	auditor := newClient(t, s, c, domain.RoleAuditor, "auditor-cy")
	manager := newClient(t, s, c, domain.RoleManager, "manager-bo")
	portals := newClient(t, s, c, domain.RolePortalsTeam, "portals")

	require.Empty(t, worker.LastPosition())
	child, err := worker.RegisterChild(ctx, "NCC-1")
	require.NoError(t, err)
	require.Equal(t, child.Position, worker.LastPosition())
	carer, err := worker.Invite(ctx, "carer@example.org", api.AccountKindFosterCarer)
	require.NoError(t, err)
	member, err := worker.Invite(ctx, "gran@example.org", api.AccountKindNetworkMember)
	require.NoError(t, err)
	_, err = service.Activate(ctx, carer.AccountID, "idp|carer", "carer@example.org")
	require.NoError(t, err)
	_, err = service.Activate(ctx, member.AccountID, "idp|gran", "gran@example.org")
	require.NoError(t, err)
	started := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	pl, err := worker.StartPlacement(ctx, child.ChildID, carer.AccountID, started)
	require.NoError(t, err)
	granted, err := worker.Grant(ctx, child.ChildID, member.AccountID, api.GrantRequestRelationshipGuardian,
		[]api.GrantRequestPermissions{api.GrantRequestPermissionsView}, "grandmother")
	require.NoError(t, err)
	require.Equal(t, granted.Position, worker.LastPosition())

	// The worker's own reads see its writes: its token travels with them.
	viewers, err := worker.Viewers(ctx, child.ChildID, time.Time{})
	require.NoError(t, err)
	require.Len(t, viewers.Viewers, 2)
	rec, err := worker.Child(ctx, child.ChildID, time.Time{})
	require.NoError(t, err)
	require.Equal(t, "NCC-1", *rec.Reference)
	require.False(t, rec.Erased)
	require.Equal(t, pl.PlacementID, rec.Placements[0].PlacementID)
	require.Equal(t, api.PlacementRecordFieldsStatus("open"), rec.Placements[0].Status)

	// Another client waits for a token given explicitly.
	ans, err := service.Check(ctx, client.CheckQuery{Account: member.AccountID, Child: child.ChildID, Permission: api.PermissionView},
		client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.True(t, ans.Allowed)
	require.Equal(t, api.ReasonGrant, ans.Reason)
	ans, err = service.Check(ctx, client.CheckQuery{Account: carer.AccountID, Carer: carer.AccountID, Permission: api.PermissionRecord})
	require.NoError(t, err)
	require.Equal(t, api.ReasonOwnRecord, ans.Reason)
	// Many checks at one position, the token in the body; an unknown id
	// is its item's not_found.
	many, err := service.Checks(ctx, []client.CheckItem{
		{Account: member.AccountID, Child: child.ChildID, Permission: api.PermissionView},
		{Account: uuid.New(), Child: child.ChildID, Permission: api.PermissionView},
		{Account: carer.AccountID, Carer: carer.AccountID, Permission: api.PermissionRecord},
		{Account: member.AccountID, Child: child.ChildID, Permission: api.PermissionRecord},
	}, time.Now().Add(time.Minute), client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Equal(t, granted.Position, many.Position)
	var reasons []api.CheckResultReason
	var allowed []bool
	for _, r := range many.Results {
		reasons, allowed = append(reasons, r.Reason), append(allowed, r.Allowed)
	}
	require.Equal(t, []api.CheckResultReason{api.CheckResultReasonGrant, api.CheckResultReasonNotFound,
		api.CheckResultReasonOwnRecord, api.CheckResultReasonGrant}, reasons)
	require.Equal(t, []bool{true, false, true, false}, allowed)
	kids, err := service.Children(ctx, carer.AccountID, time.Time{}, client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Equal(t, child.ChildID, kids.Children[0].ChildID)
	acct, err := service.Account(ctx, member.AccountID, time.Time{}, client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Equal(t, api.AccountStatusActive, acct.Status)
	list, err := portals.Accounts(ctx, client.AccountFilter{Kind: api.AccountKindFosterCarer}, client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Len(t, list.Accounts, 1)

	hist, err := auditor.ChildHistory(ctx, child.ChildID, client.HistoryQuery{}, client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Len(t, hist.Intervals, 2)
	ahist, err := auditor.AccountHistory(ctx, member.AccountID, client.HistoryQuery{At: time.Now()}, client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Len(t, ahist.Intervals, 1)
	page, err := auditor.Audit(ctx, client.AuditFilter{Child: child.ChildID, Limit: 2}, client.MinPosition(granted.Position))
	require.NoError(t, err)
	require.Len(t, page.Entries, 2)
	require.NotNil(t, page.Next)
	page, err = auditor.Audit(ctx, client.AuditFilter{Child: child.ChildID, After: *page.Next})
	require.NoError(t, err)
	require.NotEmpty(t, page.Entries)
	v, err := auditor.VerifyAudit(ctx, nil)
	require.NoError(t, err)
	require.True(t, v.Ok)
	v, err = auditor.VerifyAudit(ctx, &client.Anchor{Seq: 1, Hash: page.Entries[0].PrevHash})
	require.NoError(t, err)
	require.False(t, v.Ok, "a wrong anchor is a broken trail, not an error")
	pol, err := manager.Policy(ctx)
	require.NoError(t, err)
	require.Equal(t, 7*24*3600, pol.GracePeriod)

	// The remaining commands.
	_, err = service.EnrolPhone(ctx, member.AccountID, "+44 7700 900123")
	require.NoError(t, err)
	_, err = worker.RequestPhoneReset(ctx, member.AccountID, "lost phone")
	require.NoError(t, err)
	_, err = portals.ClearPhone(ctx, member.AccountID)
	require.NoError(t, err)
	_, err = worker.Revoke(ctx, child.ChildID, member.AccountID, "review")
	require.NoError(t, err)
	ended, err := worker.EndPlacement(ctx, child.ChildID, pl.PlacementID, time.Now().Add(-time.Hour), "moved")
	require.NoError(t, err)
	require.True(t, ended.GraceUntil.After(time.Now()))
	_, err = worker.EndGrace(ctx, child.ChildID, pl.PlacementID, "safeguarding")
	require.NoError(t, err)
	_, err = manager.AllocateWorker(ctx, child.ChildID, "worker-dee")
	require.NoError(t, err)
	closed, err := portals.CloseAccount(ctx, member.AccountID, "asked to leave")
	require.NoError(t, err)

	// A refusal, in the security log.
	_, err = worker.Grant(ctx, child.ChildID, member.AccountID, api.GrantRequestRelationshipParent,
		[]api.GrantRequestPermissions{api.GrantRequestPermissionsView}, "x")
	require.ErrorIs(t, err, client.ErrForbidden)
	sec, err := auditor.SecurityLog(ctx, client.SecurityFilter{Command: "grant"}, client.MinPosition(closed.Position))
	require.NoError(t, err)
	require.Len(t, sec.Entries, 1)

	// Record views (R20): neither may view the record now, so both views
	// raise alerts.
	views, err := service.RecordViews(ctx, []api.RecordView{
		{AccountID: carer.AccountID.String(), ChildID: child.ChildID.String(), Permission: "view", ViewedAt: time.Now().UTC().Format(time.RFC3339Nano)},
		{AccountID: member.AccountID.String(), ChildID: child.ChildID.String(), Permission: "view", ViewedAt: time.Now().UTC().Format(time.RFC3339Nano)},
	}, client.MinPosition(closed.Position))
	require.NoError(t, err)
	require.Len(t, views.Views, 2)
	require.False(t, views.Views[1].Allowed)
	cv, err := auditor.ChildViews(ctx, child.ChildID, client.ViewsFilter{Limit: 1})
	require.NoError(t, err)
	require.Len(t, cv.Views, 1)
	require.NotNil(t, cv.Next)
	cv, err = auditor.ChildViews(ctx, child.ChildID, client.ViewsFilter{After: *cv.Next})
	require.NoError(t, err)
	require.Len(t, cv.Views, 1)
	av, err := auditor.AccountViews(ctx, member.AccountID, client.ViewsFilter{From: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.Len(t, av.Views, 1)
	alerts, err := auditor.Alerts(ctx, client.ViewsFilter{})
	require.NoError(t, err)
	require.Len(t, alerts.Alerts, 2, "the carer's grace was ended early, the member's account closed")
	require.Equal(t, views.Views[1].ViewID, alerts.Alerts[1].ViewID)

	// The ledger, checked with its key alone elsewhere (accessctl ledger).
	s.CaughtUp(t)
	note, err := auditor.LedgerCheckpoint(ctx)
	require.NoError(t, err)
	require.Contains(t, string(note), s.Key.Origin())
	key, err := manager.LedgerPublicKey(ctx)
	require.NoError(t, err)
	require.Equal(t, s.Key.VerifierKey+"\n", string(key))
	proof, err := auditor.InclusionProof(ctx, client.InclusionQuery{Position: closed.Position})
	require.NoError(t, err)
	require.NotEmpty(t, proof.LeafData)
	cons, err := auditor.ConsistencyProof(ctx, 1, 0)
	require.NoError(t, err)
	require.Equal(t, 1, cons.FromSize)
	_, err = service.Health(ctx)
	require.NoError(t, err)
	ready, err := service.Ready(ctx)
	require.NoError(t, err)
	require.Equal(t, api.StatusStatusReady, ready.Status)

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, op := range []string{"register_child", "allocate_worker", "invite", "activate", "close_account", "start_placement",
		"end_placement", "end_grace", "grant", "revoke", "request_phone_reset", "clear_phone", "enrol_phone", "check",
		"account_children", "child_viewers", "child_history", "account_history", "get_child", "get_account", "list_accounts",
		"audit_list", "audit_verify", "security_log", "policy", "ledger_checkpoint", "ledger_public_key",
		"ledger_inclusion_proof", "ledger_consistency_proof", "healthz", "readyz",
		"record_views", "child_views", "account_views", "alerts"} {
		require.True(t, c.seen[op], "the client never called %s", op)
	}
}

// TestTokensAreCarried: a query after a command sends the command's
// position as min_position, unless the call names its own or the client
// carries none.
func TestTokensAreCarried(t *testing.T) {
	ctx := context.Background()
	s := apitest.Start(t, nil)
	var mu sync.Mutex
	var sent []string
	spy := roundTripper(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		sent = append(sent, r.URL.Query().Get("min_position"))
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return sent[len(sent)-1]
	}
	worker, err := client.New(s.URL, s.Token(t, domain.RoleWorker, "w"), client.WithHTTPClient(&http.Client{Transport: spy}))
	require.NoError(t, err)
	child, err := worker.RegisterChild(ctx, "R-1")
	require.NoError(t, err)
	require.Empty(t, last(), "a command carries no token")
	_, err = worker.Viewers(ctx, child.ChildID, time.Time{})
	require.NoError(t, err)
	require.Equal(t, child.Position, last())
	_, err = worker.Viewers(ctx, child.ChildID, time.Time{}, client.MinPosition(""))
	require.NoError(t, err)
	require.Empty(t, last(), "the call's own (empty) token wins")

	plain, err := client.New(s.URL, s.Token(t, domain.RoleWorker, "w"), client.WithoutTokens(),
		client.WithHTTPClient(&http.Client{Transport: spy}))
	require.NoError(t, err)
	_, err = plain.RegisterChild(ctx, "R-2")
	require.NoError(t, err)
	_, err = plain.Viewers(ctx, child.ChildID, time.Time{})
	require.NoError(t, err)
	require.Empty(t, last())
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRetriesReuseTheKey: a command whose first attempts meet a 503 (a
// proxy before the engine) is sent again with the same Idempotency-Key,
// and is carried out once.
func TestRetriesReuseTheKey(t *testing.T) {
	ctx := context.Background()
	var failures atomic.Int32
	failures.Store(2)
	var mu sync.Mutex
	var keys []string
	s := apitest.Start(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				mu.Lock()
				keys = append(keys, r.Header.Get("Idempotency-Key"))
				mu.Unlock()
				if failures.Add(-1) >= 0 {
					http.Error(w, "<html>upstream unavailable</html>", http.StatusServiceUnavailable)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	worker, err := client.New(s.URL, s.Token(t, domain.RoleWorker, "w"))
	require.NoError(t, err)
	worker.RetryWait = time.Millisecond
	child, err := worker.RegisterChild(ctx, "R-1")
	require.NoError(t, err)
	require.Len(t, keys, 3)
	require.NotEmpty(t, keys[0])
	require.Equal(t, keys[0], keys[1])
	require.Equal(t, keys[0], keys[2])

	// Given explicitly, the key makes a retry in another process safe.
	var replayed bool
	again, err := worker.RegisterChild(ctx, "R-1", client.IdempotencyKey(keys[0]), client.Replayed(&replayed))
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, child, again)
	require.Len(t, s.Log(t), 1, "one child registered")

	// A 503 that outlasts the attempts is the problem.
	failures.Store(10)
	_, err = worker.RegisterChild(ctx, "R-2")
	var p *client.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, http.StatusServiceUnavailable, p.Status)
}

// TestTypedErrors: every problem code is matched by its sentinel.
func TestTypedErrors(t *testing.T) {
	ctx := context.Background()
	s := apitest.Start(t, nil)
	worker, err := client.New(s.URL, s.Token(t, domain.RoleWorker, "w"))
	require.NoError(t, err)
	_, err = worker.Child(ctx, uuid.New(), time.Time{})
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = worker.Audit(ctx, client.AuditFilter{})
	require.ErrorIs(t, err, client.ErrForbidden)
	_, err = worker.RegisterChild(ctx, "")
	require.ErrorIs(t, err, client.ErrInvalid)
	_, err = worker.Check(ctx, client.CheckQuery{Account: uuid.New(), Child: uuid.New(), Permission: api.PermissionView},
		client.MinPosition("not a token"))
	require.ErrorIs(t, err, client.ErrInvalid)
	stranger, err := client.New(s.URL, "not-a-token")
	require.NoError(t, err)
	_, err = stranger.Policy(ctx)
	require.ErrorIs(t, err, client.ErrUnauthenticated)
	var p *client.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, 401, p.Status)
	require.False(t, errors.Is(err, client.ErrForbidden))

	down, err := client.New("http://127.0.0.1:1", "t")
	require.NoError(t, err)
	down.RetryWait = 0
	_, err = down.Policy(ctx)
	var ne *client.NetworkError
	require.ErrorAs(t, err, &ne)
	require.Contains(t, err.Error(), "cannot reach the server at http://127.0.0.1:1")
}

// TestWatchResumes: a watch follows the changes, and after the server
// drops its connection resumes after the last position it delivered.
func TestWatchResumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var drops atomic.Int32
	drops.Store(1)
	var afters []string
	var mu sync.Mutex
	s := apitest.Start(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/watch" {
				mu.Lock()
				afters = append(afters, r.URL.Query().Get("after"))
				mu.Unlock()
				if drops.Load() > 0 {
					// Let the stream run until it carried one change, then cut it.
					rc, cancelStream := context.WithCancel(r.Context())
					defer cancelStream()
					next.ServeHTTP(&cutAfterOne{ResponseWriter: w, cancel: cancelStream, drops: &drops}, r.WithContext(rc))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	worker, err := client.New(s.URL, s.Token(t, domain.RoleWorker, "w"))
	require.NoError(t, err)
	service, err := client.New(s.URL, s.Token(t, domain.RoleService, "portal"))
	require.NoError(t, err)
	service.RetryWait = time.Millisecond

	child, err := worker.RegisterChild(ctx, "R-1")
	require.NoError(t, err)
	var ids []uuid.UUID
	for i := range 3 {
		inv, err := worker.Invite(ctx, "carer"+string(rune('a'+i))+"@example.org", api.AccountKindFosterCarer)
		require.NoError(t, err)
		_, err = service.Activate(ctx, inv.AccountID, "idp|"+inv.AccountID.String(), "carer"+string(rune('a'+i))+"@example.org")
		require.NoError(t, err)
		ids = append(ids, inv.AccountID)
	}
	got := make(chan api.WatchEvent, 16)
	done := make(chan error, 1)
	go func() {
		done <- service.Watch(ctx, child.Position, func(e api.WatchEvent) error {
			got <- e
			return nil
		})
	}()
	for _, id := range ids {
		_, err := worker.StartPlacement(ctx, child.ChildID, id, time.Now().Add(-time.Hour))
		require.NoError(t, err)
	}
	seen := map[uuid.UUID]bool{}
	for len(seen) < len(ids) {
		select {
		case e := <-got:
			require.Equal(t, child.ChildID, e.ChildID)
			require.Equal(t, api.ReasonPlacement, e.Reason)
			seen[e.AccountID] = true
		case <-ctx.Done():
			t.Fatalf("saw %d of %d placements", len(seen), len(ids))
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(afters), 2, "the watch reconnected")
	require.Equal(t, child.Position, afters[0])
	require.NotEqual(t, afters[0], afters[1], "it resumed after what it had delivered")

	// A position the server no longer holds is ErrGone.
	_, err = client.New(s.URL, "x")
	require.NoError(t, err)
}

// cutAfterOne ends a watch stream once it has written one change.
type cutAfterOne struct {
	http.ResponseWriter
	cancel func()
	drops  *atomic.Int32
}

func (c *cutAfterOne) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	if bytes.Contains(b, []byte("event: access")) && c.drops.Add(-1) >= 0 {
		c.cancel()
	}
	return n, err
}

func (c *cutAfterOne) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *cutAfterOne) Unwrap() http.ResponseWriter { return c.ResponseWriter }
