package main

// The harness of the end-to-end tests (e2e_test.go): it runs `accessd serve`
// in-process through run, on the embedded SQLite default or on PostgreSQL,
// and talks to it over real HTTP, as a portal backend, a worker's tool or an
// auditor would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/eventstoredb/esdbtest"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/engine"
)

// e2eWait bounds every wait of the harness (start, readiness, stop) and of
// the tests' require.Eventually.
const e2eWait = 30 * time.Second

// e2eBackend is an event store the suite runs on.
type e2eBackend struct {
	name string
	// flags returns the store flags of accessd serve: none for the
	// embedded default, --event-store with a fresh schema for PostgreSQL,
	// --event-store and --read-store for EventStoreDB.
	flags func(t *testing.T) []string
}

// e2eBackends lists the backends: the embedded SQLite default;
// PostgreSQL through sqltest.Postgres (skipped when
// ACCESSLEDGER_TEST_POSTGRES_DSN is unset, failed when it is set but the
// database cannot be reached); and EventStoreDB (the in-process test
// server, or the real one EVENTSTORE_TEST_URL names) with the read models
// in PostgreSQL.
func e2eBackends() []e2eBackend {
	return []e2eBackend{
		{name: "sqlite", flags: func(*testing.T) []string { return nil }},
		{name: "postgres", flags: func(t *testing.T) []string { return []string{"--event-store", sqltest.Postgres(t)} }},
		{name: "eventstoredb", flags: func(t *testing.T) []string {
			read := sqltest.Postgres(t)
			return []string{"--event-store", esdbURL(t), "--read-store", read}
		}},
	}
}

// esdbURL returns an EventStoreDB server no other test uses: a new
// in-process test server. (A real server is not used here: the engine
// keeps its streams unnamespaced, so tests sharing one would see each
// other's events.)
func esdbURL(t *testing.T) string {
	return esdbtest.Start(t).URL()
}

// eachBackend runs f in a parallel subtest per backend, handing it the
// backend's store flags; the test itself runs in parallel with the others.
func eachBackend(t *testing.T, f func(t *testing.T, store []string)) {
	t.Parallel()
	for _, b := range e2eBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.flags(t))
		})
	}
}

// e2eServer is one `accessd serve` running in this process on a data
// directory of its own.
type e2eServer struct {
	t      *testing.T
	dir    string   // --data-dir
	flags  []string // extra flags of serve (store, policy, ...)
	url    string   // http://127.0.0.1:PORT of the current run
	secret []byte
	client *http.Client

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan int
	logs    *syncBuffer
	running bool
	allLogs []string // logs of earlier runs
	// unready: start waits only until the server listens, not until it is
	// ready (a server that must refuse to become ready).
	unready bool
}

// listeningRE finds the address in serve's "listening" log line.
var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServer runs `accessd serve --data-dir DIR --addr 127.0.0.1:0
// extraFlags...` in a goroutine, finds its address in the "listening" log
// line, waits until GET /readyz answers 200, and reads the signing secret
// the server keeps in its data directory. At cleanup it stops the server
// (cancels its context) and requires exit code 0.
func startServer(t *testing.T, extraFlags ...string) *e2eServer {
	t.Helper()
	s := &e2eServer{t: t, dir: t.TempDir(), flags: extraFlags,
		client: &http.Client{Timeout: e2eWait, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server logs (tail):\n%s", tail(s.logText(), 60))
		}
	})
	s.start()
	return s
}

// start runs serve on s's data directory and waits until it is ready.
func (s *e2eServer) start() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	args := append([]string{"serve", "--data-dir", s.dir, "--addr", "127.0.0.1:0"}, s.flags...)
	go func() { done <- run(ctx, args, io.Discard, logs, noEnv) }()
	s.mu.Lock()
	s.cancel, s.done, s.logs, s.running = cancel, done, logs, true
	s.mu.Unlock()

	deadline := time.Now().Add(e2eWait)
	var addr string
	for addr == "" {
		if m := listeningRE.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			t.Fatalf("accessd serve exited with %d before listening:\n%s", code, logs.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("accessd serve did not log its address within %s:\n%s", e2eWait, logs.String())
		}
	}
	s.url = "http://" + addr
	if !s.unready {
		require.Eventually(t, func() bool {
			res, err := s.client.Get(s.url + "/readyz")
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			return res.StatusCode == http.StatusOK
		}, e2eWait, 10*time.Millisecond, "GET /readyz never answered 200:\n%s", logs.String())
	}
	secret, err := auth.LoadOrCreateSecret(s.dir)
	require.NoError(t, err)
	s.secret = secret
}

// stop cancels the server's context, as SIGTERM does, and requires it to
// exit with code 0 (a graceful shutdown). It does nothing when the server
// is not running.
func (s *e2eServer) stop() {
	s.t.Helper()
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	s.running = false
	cancel, done, logs := s.cancel, s.done, s.logs
	s.mu.Unlock()
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			s.t.Errorf("accessd serve exited with %d:\n%s", code, tail(logs.String(), 40))
		}
	case <-time.After(e2eWait):
		s.t.Errorf("accessd serve did not stop within %s:\n%s", e2eWait, tail(logs.String(), 40))
	}
	s.client.CloseIdleConnections()
	s.mu.Lock()
	s.allLogs = append(s.allLogs, logs.String())
	s.mu.Unlock()
}

// restart stops the server and runs it again on the same data directory
// and flags (it listens on a new port).
func (s *e2eServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// logText returns the logs of every run so far.
func (s *e2eServer) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	text := strings.Join(s.allLogs, "")
	if s.running {
		text += s.logs.String()
	}
	return text
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// storeFlags returns the --event-store and --read-store flags of the
// server, if any.
func (s *e2eServer) storeFlags() []string {
	var out []string
	for i, f := range s.flags {
		if (f == "--event-store" || f == "--read-store") && i+1 < len(s.flags) {
			out = append(out, f, s.flags[i+1])
		}
	}
	return out
}

// flag returns the value of the server's flag name, or "".
func (s *e2eServer) flag(name string) string {
	for i, f := range s.flags {
		if f == name && i+1 < len(s.flags) {
			return s.flags[i+1]
		}
	}
	return ""
}

// readStoreURL is the URL of the server's read store: --read-store, or the
// event store's database.
func (s *e2eServer) readStoreURL() string {
	if u := s.flag("--read-store"); u != "" {
		return u
	}
	if u := s.flag("--event-store"); u != "" {
		return u
	}
	return "sqlite:" + filepath.Join(s.dir, engine.DefaultDBName)
}

// isSQLite reports whether the server runs on the embedded default.
func (s *e2eServer) isSQLite() bool { return s.storeFlags() == nil }

// headRE and eventsRE read `accessd status`'s head position and event
// count.
var (
	headRE   = regexp.MustCompile(`(?m)^head: +(\S+)$`)
	eventsRE = regexp.MustCompile(`(?m)^events: (\d+)$`)
)

// status runs `accessd status` on the server's stores.
func (s *e2eServer) status() string {
	s.t.Helper()
	args := append([]string{"status", "--data-dir", s.dir, "--log-level", "error"}, s.storeFlags()...)
	code, out, errOut := runCmd(s.t, context.Background(), noEnv, args...)
	require.Equal(s.t, exitOK, code, errOut)
	return out
}

// headPosition returns the position of the last event of the server's
// log, read by `accessd status` from the store itself.
func (s *e2eServer) headPosition() eventlog.Position {
	s.t.Helper()
	out := s.status()
	m := headRE.FindStringSubmatch(out)
	require.NotNil(s.t, m, out)
	p, err := eventlog.ParsePosition(m[1])
	require.NoError(s.t, err)
	return p
}

// head returns the number of events in the server's event log, read from
// the store itself (not through the API, whose read models may lag): from
// `accessd status` for SQL (positions are dense), by reading the whole log
// for EventStoreDB (its positions are byte offsets).
func (s *e2eServer) head() uint64 {
	s.t.Helper()
	if u := s.flag("--event-store"); engine.IsEventStoreDB(u) {
		st, err := eventstoredb.Open(context.Background(), u, eventstoredb.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(s.t, err)
		defer st.Close()
		recs, err := st.ReadAll(context.Background(), eventlog.Start, 0)
		require.NoError(s.t, err)
		return uint64(len(recs))
	}
	out := s.status()
	m := eventsRE.FindStringSubmatch(out)
	require.NotNil(s.t, m, out)
	n, err := strconv.ParseUint(m[1], 10, 64)
	require.NoError(s.t, err)
	return n
}

// openDB opens the server's database directly (to break the audit trail
// behind the server's back); it is closed at cleanup.
func (s *e2eServer) openDB() *sqldb.DB {
	s.t.Helper()
	return sqltest.Open(s.t, s.readStoreURL())
}

// dbFiles returns the bytes of the embedded default's SQLite files (the
// database and its write-ahead log).
func (s *e2eServer) dbFiles() []byte {
	s.t.Helper()
	var all []byte
	for _, suffix := range []string{"", "-wal", "-journal"} {
		b, err := os.ReadFile(filepath.Join(s.dir, engine.DefaultDBName+suffix))
		if err == nil {
			all = append(all, b...)
		}
	}
	require.NotEmpty(s.t, all)
	return all
}

// ---- clients ----

// e2eClient calls the API with a token of one role and subject.
type e2eClient struct {
	s     *e2eServer
	role  domain.Role
	sub   string
	token string
}

// as returns a client with a one-hour token for sub in role, signed with
// the data directory's secret.
func (s *e2eServer) as(role domain.Role, sub string) *e2eClient {
	s.t.Helper()
	tok, err := auth.Mint(s.secret, auth.Claims{Subject: sub, Role: role, TTL: time.Hour}, time.Now())
	require.NoError(s.t, err)
	return &e2eClient{s: s, role: role, sub: sub, token: tok}
}

// anonymous returns a client without a token.
func (s *e2eServer) anonymous() *e2eClient { return &e2eClient{s: s} }

// e2eResp is one finished answer.
type e2eResp struct {
	t      *testing.T
	method string
	path   string
	status int
	header http.Header
	body   []byte
}

func (r *e2eResp) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.method, r.path, r.status, bytes.TrimSpace(r.body))
}

// json decodes the body as an object.
func (r *e2eResp) json() map[string]any {
	r.t.Helper()
	var m map[string]any
	require.NoError(r.t, json.Unmarshal(r.body, &m), r.String())
	return m
}

// decode decodes the body into v.
func (r *e2eResp) decode(v any) {
	r.t.Helper()
	require.NoError(r.t, json.Unmarshal(r.body, v), r.String())
}

// e2eProblem is an RFC 9457 answer of the API.
type e2eProblem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// problem requires a problem+json answer with status and code, and
// returns it.
func (r *e2eResp) problem(status int, code string) e2eProblem {
	r.t.Helper()
	require.Equal(r.t, status, r.status, r.String())
	require.Equal(r.t, "application/problem+json", r.header.Get("Content-Type"), r.String())
	var p e2eProblem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(r.t, dec.Decode(&p), r.String())
	require.Equal(r.t, code, p.Code, r.String())
	require.Equal(r.t, status, p.Status, r.String())
	require.Equal(r.t, "urn:accessledger:problem:"+code, p.Type, r.String())
	require.NotEmpty(r.t, p.Title, r.String())
	require.NotEmpty(r.t, p.Detail, r.String())
	return p
}

// do sends a request. body is nil (none), a string or []byte (sent as is,
// Content-Type application/json), or a value encoded as JSON. headers are
// name, value pairs; a "Content-Type" pair replaces the default.
func (c *e2eClient) do(method, path string, body any, headers ...string) *e2eResp {
	t := c.s.t
	t.Helper()
	r, err := c.try(method, path, body, headers...)
	require.NoError(t, err, "%s %s", method, path)
	return r
}

// try is do that returns the transport's error instead of failing.
func (c *e2eClient) try(method, path string, body any, headers ...string) (*e2eResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.s.url+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	return &e2eResp{t: c.s.t, method: method, path: path, status: res.StatusCode, header: res.Header, body: b}, nil
}

// must sends a request and requires status want; it returns the decoded
// JSON object.
func (c *e2eClient) must(method, path string, body any, want int) map[string]any {
	c.s.t.Helper()
	r := c.do(method, path, body)
	require.Equal(c.s.t, want, r.status, r.String())
	return r.json()
}

// ---- a small world driven through the API ----

// e2eWorld holds the actors of a scenario and the consistency token of its
// last command: every query passes it as min_position, so it reads its own
// writes.
type e2eWorld struct {
	t       *testing.T
	s       *e2eServer
	worker  *e2eClient // the allocated worker of the children it registers
	manager *e2eClient
	service *e2eClient
	portals *e2eClient
	auditor *e2eClient
	last    eventlog.Position
}

func newWorld(s *e2eServer) *e2eWorld {
	suffix := uuid.NewString()[:8]
	return &e2eWorld{t: s.t, s: s,
		worker:  s.as(domain.RoleWorker, "worker-ann-"+suffix),
		manager: s.as(domain.RoleManager, "manager-bo-"+suffix),
		service: s.as(domain.RoleService, "portal-backend"),
		portals: s.as(domain.RolePortalsTeam, "portals-cy-"+suffix),
		auditor: s.as(domain.RoleAuditor, "auditor-di-"+suffix),
	}
}

// note keeps a command's consistency token (the latest one seen).
func (w *e2eWorld) note(m map[string]any) string {
	w.t.Helper()
	tok, ok := m["position"].(string)
	require.True(w.t, ok, "no position in %v", m)
	p, err := eventlog.ParsePosition(tok)
	require.NoError(w.t, err)
	if w.last.Before(p) {
		w.last = p
	}
	return tok
}

// cmd sends a command as c, requires status want and notes its position.
func (w *e2eWorld) cmd(c *e2eClient, method, path string, body any, want int) map[string]any {
	w.t.Helper()
	m := c.must(method, path, body, want)
	w.note(m)
	return m
}

// q appends min_position (the world's last token) to a query path.
func (w *e2eWorld) q(path string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "min_position=" + w.last.String()
}

// get runs a query as c with min_position and requires 200.
func (w *e2eWorld) get(c *e2eClient, path string) *e2eResp {
	w.t.Helper()
	r := c.do("GET", w.q(path), nil)
	require.Equal(w.t, http.StatusOK, r.status, r.String())
	return r
}

func (w *e2eWorld) registerChild() string {
	w.t.Helper()
	return w.registerChildBy(w.worker)
}

func (w *e2eWorld) registerChildBy(c *e2eClient) string {
	w.t.Helper()
	m := w.cmd(c, "POST", "/v1/children", map[string]string{"reference": "NCC-" + uuid.NewString()[:6]}, http.StatusCreated)
	return m["child_id"].(string)
}

// e2eAccount is an invited account.
type e2eAccount struct {
	id, email, subject string
	expiresAt          time.Time
}

// invite invites a new email address for an account of kind.
func (w *e2eWorld) invite(kind string) e2eAccount {
	w.t.Helper()
	return w.inviteEmail(strings.ReplaceAll(kind, "_", "-")+"-"+uuid.NewString()[:12]+"@example.org", kind)
}

// inviteEmail invites email for an account of kind, as the world's worker.
func (w *e2eWorld) inviteEmail(email, kind string) e2eAccount {
	w.t.Helper()
	m := w.cmd(w.worker, "POST", "/v1/invitations", map[string]string{"email": email, "kind": kind}, http.StatusCreated)
	exp, err := time.Parse(time.RFC3339Nano, m["expires_at"].(string))
	require.NoError(w.t, err)
	return e2eAccount{id: m["account_id"].(string), email: email, subject: "idp|" + uuid.NewString(), expiresAt: exp}
}

// activate reports the invitee's first sign-in, as the service.
func (w *e2eWorld) activate(a e2eAccount) {
	w.t.Helper()
	w.cmd(w.service, "POST", "/v1/accounts/"+a.id+"/activation",
		map[string]string{"identity_subject": a.subject, "email": a.email}, http.StatusOK)
}

// account invites and activates an account of kind.
func (w *e2eWorld) account(kind string) e2eAccount {
	w.t.Helper()
	a := w.invite(kind)
	w.activate(a)
	return a
}

// place places child with carer from startedAt, as the world's worker.
func (w *e2eWorld) place(child, carer string, startedAt time.Time) string {
	w.t.Helper()
	return w.placeBy(w.worker, child, carer, startedAt)
}

func (w *e2eWorld) placeBy(c *e2eClient, child, carer string, startedAt time.Time) string {
	w.t.Helper()
	m := w.cmd(c, "POST", "/v1/children/"+child+"/placements",
		map[string]string{"carer_account_id": carer, "started_at": rfc(startedAt)}, http.StatusCreated)
	return m["placement_id"].(string)
}

// endPlacement ends a placement at endedAt and returns grace_until.
func (w *e2eWorld) endPlacement(c *e2eClient, child, placement string, endedAt time.Time, reason string) time.Time {
	w.t.Helper()
	m := w.cmd(c, "POST", "/v1/children/"+child+"/placements/"+placement+"/end",
		map[string]string{"ended_at": rfc(endedAt), "reason": reason}, http.StatusOK)
	return parseRFC(w.t, m["grace_until"].(string))
}

// grant grants account access to child's record, as c.
func (w *e2eWorld) grant(c *e2eClient, child, account, relationship string, perms []string, reason string) {
	w.t.Helper()
	w.cmd(c, "POST", "/v1/children/"+child+"/grants", map[string]any{"account_id": account,
		"relationship": relationship, "permissions": perms, "reason": reason}, http.StatusOK)
}

// e2eCheck is the answer of GET /v1/check.
type e2eCheck = api.CheckAnswer

// check asks, as the service, whether account may do perm on child's
// record, now or at the optional time.
func (w *e2eWorld) check(account, child, perm string, at ...time.Time) e2eCheck {
	w.t.Helper()
	return w.checkQuery("account_id=" + account + "&child_id=" + child + "&permission=" + perm + atParam(at))
}

// checkCarer asks whether account may do perm on carer's own carer record.
func (w *e2eWorld) checkCarer(account, carer, perm string, at ...time.Time) e2eCheck {
	w.t.Helper()
	return w.checkQuery("account_id=" + account + "&carer_id=" + carer + "&permission=" + perm + atParam(at))
}

func (w *e2eWorld) checkQuery(q string) e2eCheck {
	w.t.Helper()
	var a e2eCheck
	w.get(w.service, "/v1/check?"+q).decode(&a)
	return a
}

func atParam(at []time.Time) string {
	if len(at) == 0 {
		return ""
	}
	return "&at=" + url.QueryEscape(rfc(at[0]))
}

// requireAccess requires the check's answer.
func requireAccess(t *testing.T, a e2eCheck, allowed bool, reason string, msg ...any) {
	t.Helper()
	require.Equal(t, allowed, a.Allowed, "%+v %v", a, msg)
	require.Equal(t, reason, text(a.Reason), "%+v %v", a, msg)
}

// e2eAuditEntry is an entry of GET /v1/audit.
type e2eAuditEntry = api.AuditEntry

// audit reads every audit entry matching the filter query (e.g.
// "child_id=..."), following the "next" cursor.
func (w *e2eWorld) audit(filter string) []e2eAuditEntry {
	w.t.Helper()
	var all []e2eAuditEntry
	after := ""
	for page := 0; page < 1000; page++ {
		q := "/v1/audit?limit=1000"
		if filter != "" {
			q += "&" + filter
		}
		if after != "" {
			q += "&after=" + after
		}
		var a api.AuditPage
		w.get(w.auditor, q).decode(&a)
		all = append(all, a.Entries...)
		if a.Next == nil {
			return all
		}
		after = *a.Next
	}
	w.t.Fatal("audit: too many pages")
	return nil
}

// auditOf returns the entries of type typ among entries.
func auditOf(entries []e2eAuditEntry, typ string) []e2eAuditEntry {
	var out []e2eAuditEntry
	for _, e := range entries {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// e2eInterval is an interval of GET /v1/children/{id}/history.
type e2eInterval = api.Interval

// history reads a child's (or with path "/v1/accounts/ID/history", an
// account's) access history; params are extra query parameters.
func (w *e2eWorld) history(path, params string) []e2eInterval {
	w.t.Helper()
	if params != "" {
		path += "?" + params
	}
	var h api.ChildHistory // an account's history has the same intervals
	w.get(w.auditor, path).decode(&h)
	return h.Intervals
}

// intervalsOf returns the intervals of account.
func intervalsOf(ivs []e2eInterval, account string) []e2eInterval {
	var out []e2eInterval
	for _, iv := range ivs {
		if iv.AccountID.String() == account {
			out = append(out, iv)
		}
	}
	return out
}

// e2eAccountView is the answer of GET /v1/accounts/{id}.
type e2eAccountView = api.Account

func (w *e2eWorld) accountView(id string, params ...string) (e2eAccountView, *e2eResp) {
	w.t.Helper()
	path := "/v1/accounts/" + id
	if len(params) > 0 {
		path += "?" + strings.Join(params, "&")
	}
	r := w.get(w.auditor, path)
	var v e2eAccountView
	r.decode(&v)
	return v, r
}

// e2eSecurityEntry is an entry of GET /v1/security-log.
type e2eSecurityEntry = api.SecurityLogEntry

// securityLog reads the security log (newest first, one page of 1000).
func (w *e2eWorld) securityLog(filter string) []e2eSecurityEntry {
	w.t.Helper()
	path := "/v1/security-log?limit=1000"
	if filter != "" {
		path += "&" + filter
	}
	var a api.SecurityLogPage
	w.get(w.auditor, path).decode(&a)
	return a.Entries
}

// ---- times ----

// rfc formats t as RFC 3339 in UTC with microseconds (the engine's
// precision).
func rfc(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) }

func parseRFC(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v
}

// now is the wall clock in UTC to the microsecond.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

const day = 24 * time.Hour

// text is v as the wire writes it (a typed string, a UUID), to compare
// the typed answers with the strings the tests hold.
func text(v any) string { return fmt.Sprint(v) }

// strs converts a list of typed strings (e.g. api.Permissions) to plain
// strings.
func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}
