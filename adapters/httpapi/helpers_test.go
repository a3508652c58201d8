package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/syncbuf"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/ledger"
	"github.com/accessledger/accessledger/queries"
)

// env is a running engine behind the handler, with real components: the
// SQL event store, the command service, the projection runner with the
// read models and the ledger's tree, the ledger (verified at start), the
// access index, the security log, the idempotency store and the JWT
// verifier. Requests go through an httptest.Server, and every
// request and answer of a documented route is checked against
// docs/openapi.yaml (see contract_test.go).
type env struct {
	t        testing.TB
	db       *sqldb.DB
	store    eventlog.Store
	index    *accessindex.Index
	runner   *projections.Runner
	svc      *commands.Service
	registry *prometheus.Registry
	ledger   *ledger.Ledger
	srv      *httptest.Server
	secret   []byte
	ready    atomic.Bool
	logs     *syncBuffer
	contract *contract
}

// setup is what newEnv builds the handler from: its Config, and the
// Config of the query service it is given.
type setup struct {
	Config
	Q  queries.Config
	DB *sqldb.DB // the env's database (read models, event log)
	// WrapQueries, when not nil, wraps the query service made from Q.
	WrapQueries func(Queries) Queries
}

// envOption changes the setup before New.
type envOption func(*setup)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer = syncbuf.Buffer

// newEnv is an env whose event log is in memory (adapters/memstore) and
// whose read models, security log, idempotency keys and ledger tables are
// in the database at url.
func newEnv(t testing.TB, url string, opts ...envOption) *env {
	t.Helper()
	return newEnvOn(t, url, false, opts...)
}

// newSQLEnv is an env whose event log is the SQL store in the database at
// url, for the tests that change stored events behind the engine's back.
func newSQLEnv(t testing.TB, url string, opts ...envOption) *env {
	t.Helper()
	return newEnvOn(t, url, true, opts...)
}

func newEnvOn(t testing.TB, url string, sqlLog bool, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	db := sqltest.Open(t, url)
	require.NoError(t, sqlstore.Migrate(ctx, db))
	pg, lite := projections.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	pg, lite = securitylog.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, securitylog.Component, pg, lite))
	pg, lite = viewlog.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, viewlog.Component, pg, lite))
	pg, lite = idempotency.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, idempotency.Component, pg, lite))
	pg, lite = ledger.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, ledger.Component, pg, lite))
	var store interface {
		eventlog.Store
		Close() error
	} = closer{memstore.New()}
	if sqlLog {
		sq, err := sqlstore.New(ctx, db)
		require.NoError(t, err)
		store = sq
	}

	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := commands.New(store, securitylog.New(db), commands.Config{Logger: quiet, Eraser: keysDestroyed{}})
	require.NoError(t, err)
	runner, err := projections.NewRunner(db.DB, store,
		[]projections.Projection{accesshistory.New(), audit.New(), accounts.New(), ledger.New()},
		projections.WithLogger(quiet), projections.WithBatchSize(50))
	require.NoError(t, err)
	index := accessindex.New(accessindex.WithLogger(quiet))

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = runner.Run(runCtx) }()
	go func() { defer wg.Done(); _ = index.Run(runCtx, store) }()

	secret := bytes.Repeat([]byte{7}, auth.MinSecretBytes)
	verifier, err := auth.NewVerifier(secret, "", "", nil)
	require.NoError(t, err)
	led := newLedger(t, db, quiet)
	e := &env{t: t, db: db, store: store, index: index, runner: runner, svc: svc,
		registry: prometheus.NewRegistry(), ledger: led, secret: secret, logs: logs}
	e.ready.Store(true)
	cfg := setup{Config: Config{
		Commands:       svc,
		Auth:           verifier,
		Idempotency:    idempotency.New(db),
		Ready:          e.ready.Load,
		Registry:       e.registry,
		Collectors:     []prometheus.Collector{accessindex.PositionGauge(index), projections.Collector(runner.Status)},
		Logger:         log,
		WatchHeartbeat: 50 * time.Millisecond,
		WatchAlertPoll: 20 * time.Millisecond,
	}, DB: db, Q: queries.Config{
		Index: index, History: accesshistory.NewReader(db), Accounts: accounts.NewReader(db), Audit: audit.NewReader(db, nil),
		SecurityLog: securitylog.New(db), Views: viewlog.New(db), ChildRecords: queries.ChildrenFromLog(store), Refusals: securitylog.New(db),
		Progress: runner.Status, Logger: log, Ledger: led, LedgerLog: store, Policies: svc,
		MinPositionWait: 10 * time.Second, // reads after a command wait for the projections, also on a loaded machine
	}}
	for _, o := range opts {
		o(&cfg)
	}
	qs, err := queries.New(cfg.Q)
	require.NoError(t, err)
	cfg.Queries = qs
	if cfg.WrapQueries != nil {
		cfg.Queries = cfg.WrapQueries(qs)
	}
	h, err := New(cfg.Config)
	require.NoError(t, err)
	e.contract = newContract(t)
	e.srv = httptest.NewServer(e.contract.middleware(h))
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.srv.Close()
		cancel()
		wg.Wait()
		_ = store.Close()
		e.contract.check(t)
	})
	waitCtx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	require.NoError(t, runner.WaitCaughtUp(waitCtx))
	select {
	case <-index.Ready():
	case <-waitCtx.Done():
		t.Fatal("index not ready")
	}
	_, err = led.Guard(ctx, store, ledger.VerifyOptions{}) // the runner has made the tree's tables
	require.NoError(t, err)
	return e
}

// newLedger returns a ledger of the tree in db with a new key, signing a
// checkpoint whenever asked for one (MaxAge 1ns); Guard has not run.
func newLedger(t testing.TB, db bun.IDB, log *slog.Logger) *ledger.Ledger {
	t.Helper()
	dir := t.TempDir()
	key, _, err := ledger.LoadOrCreateKey(filepath.Join(dir, ledger.KeyFileName))
	require.NoError(t, err)
	l, err := ledger.NewLedger(ledger.Config{DB: db, Key: key, Dir: filepath.Join(dir, "checkpoints"), MaxAge: time.Nanosecond,
		Instance: "test", Logger: log})
	require.NoError(t, err)
	return l
}

// token mints a bearer token for sub acting in role.
func (e *env) token(role domain.Role, sub string) string {
	tok, err := auth.Mint(e.secret, auth.Claims{Subject: sub, Role: role, TTL: time.Hour}, time.Now())
	require.NoError(e.t, err)
	return tok
}

// response is a finished answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), string(r.body))
	return m
}

// problem decodes a problem answer and checks its shape.
func (r response) problem(t *testing.T, status int, code string) Problem {
	t.Helper()
	require.Equal(t, status, r.status, string(r.body))
	require.Equal(t, problemContentType, r.header.Get("Content-Type"))
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p))
	require.Equal(t, code, string(p.Code), p.Detail)
	require.Equal(t, status, p.Status)
	require.Equal(t, problemTypePrefix+code, p.Type)
	require.NotEmpty(t, p.Title)
	require.NotEmpty(t, p.Detail)
	return p
}

// req describes a request.
type req struct {
	method, path string
	role         domain.Role // "" for no token
	sub          string
	body         string // sent with Content-Type application/json when not ""
	header       map[string]string
	rawToken     string // sent instead of a minted token when not ""
}

func (e *env) do(r req) response {
	e.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, e.srv.URL+r.path, body)
	require.NoError(e.t, err)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	switch {
	case r.rawToken != "":
		hr.Header.Set("Authorization", "Bearer "+r.rawToken)
	case r.role != "":
		sub := r.sub
		if sub == "" {
			sub = string(r.role) + "-1"
		}
		hr.Header.Set("Authorization", "Bearer "+e.token(r.role, sub))
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(hr)
	require.NoError(e.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// ok sends r and requires status want, returning the decoded JSON body.
func (e *env) ok(r req, want int) map[string]any {
	e.t.Helper()
	res := e.do(r)
	require.Equal(e.t, want, res.status, "%s %s: %s", r.method, r.path, res.body)
	return res.json(e.t)
}

// head returns the event log's head.
func (e *env) head() eventlog.Position {
	p, err := e.store.Head(context.Background())
	require.NoError(e.t, err)
	return p
}

// waitFor waits until the index and every read model have applied p.
func (e *env) waitFor(p eventlog.Position) {
	e.t.Helper()
	_, err := e.index.WaitFor(context.Background(), p, 10*time.Second)
	require.NoError(e.t, err)
	require.Eventually(e.t, func() bool {
		for _, st := range e.runner.Status() {
			if st.Position.Before(p) {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// world is a small scenario built through the API: a child with a worker,
// a foster carer placed with it, and a network member with a grant.
type world struct {
	worker, manager  string
	child            string
	carer, member    string
	placement        string
	lastPosition     string
	carerEmail       string
	memberEmail      string
	carerSubject     string
	memberSubject    string
	startedAt        time.Time
	registerPosition string
}

func (e *env) buildWorld() world {
	e.t.Helper()
	w := world{worker: "worker-ann", manager: "manager-bo", carerEmail: "carer-" + uuid.NewString()[:8] + "@example.org",
		memberEmail: "gran-" + uuid.NewString()[:8] + "@example.org", carerSubject: "idp|" + uuid.NewString(),
		memberSubject: "idp|" + uuid.NewString(), startedAt: time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)}
	ch := e.ok(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":"NCC-0001"}`}, 201)
	w.child, w.registerPosition = ch["child_id"].(string), ch["position"].(string)
	inv := e.ok(req{method: "POST", path: "/v1/invitations", role: domain.RoleWorker, sub: w.worker,
		body: `{"email":"` + w.carerEmail + `","kind":"foster_carer"}`}, 201)
	w.carer = inv["account_id"].(string)
	inv = e.ok(req{method: "POST", path: "/v1/invitations", role: domain.RoleWorker, sub: w.worker,
		body: `{"email":"` + w.memberEmail + `","kind":"network_member"}`}, 201)
	w.member = inv["account_id"].(string)
	e.ok(req{method: "POST", path: "/v1/accounts/" + w.carer + "/activation", role: domain.RoleService,
		body: `{"identity_subject":"` + w.carerSubject + `","email":"` + w.carerEmail + `"}`}, 200)
	e.ok(req{method: "POST", path: "/v1/accounts/" + w.member + "/activation", role: domain.RoleService,
		body: `{"identity_subject":"` + w.memberSubject + `","email":"` + w.memberEmail + `"}`}, 200)
	pl := e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/placements", role: domain.RoleWorker, sub: w.worker,
		body: `{"carer_account_id":"` + w.carer + `","started_at":"` + w.startedAt.Format(time.RFC3339) + `"}`}, 201)
	w.placement = pl["placement_id"].(string)
	g := e.ok(req{method: "POST", path: "/v1/children/" + w.child + "/grants", role: domain.RoleWorker, sub: w.worker,
		body: `{"account_id":"` + w.member + `","relationship":"guardian","permissions":["view"],"reason":"grandmother, agreed at review"}`}, 200)
	w.lastPosition = g["position"].(string)
	p, err := eventlog.ParsePosition(w.lastPosition)
	require.NoError(e.t, err)
	e.waitFor(p)
	return w
}

// mintWith mints a token under another secret.
func mintWith(t *testing.T, secret []byte, role domain.Role, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(secret, auth.Claims{Subject: "someone", Role: role, TTL: ttl}, time.Now())
	require.NoError(t, err)
	return tok
}

// mintAt mints a one-hour token issued at issued.
func mintAt(t *testing.T, secret []byte, role domain.Role, issued time.Time) string {
	t.Helper()
	tok, err := auth.Mint(secret, auth.Claims{Subject: "someone", Role: role, TTL: time.Hour}, issued)
	require.NoError(t, err)
	return tok
}

// closer gives the in-memory store the Close of the SQL one.
type closer struct{ *memstore.Store }

func (closer) Close() error { return nil }

// keysDestroyed is the erase commands' Eraser here: the log has no
// personal-data layer in these tests (adapters/personaldata and the
// end-to-end tests show what erasure removes).
type keysDestroyed struct{}

func (keysDestroyed) EraseAccount(context.Context, uuid.UUID) error { return nil }
func (keysDestroyed) EraseChild(context.Context, uuid.UUID) error   { return nil }
