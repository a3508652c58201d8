package main

// The harness of the end-to-end tests (e2e_test.go): it runs `accessd serve`
// in-process through run, on the embedded SQLite default or on PostgreSQL,
// and talks to it over real HTTP, as a portal backend, a worker's tool or an
// auditor would.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/eventstoredb"
	"github.com/accessledger/accessledger/adapters/eventstoredb/esdbtest"
	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
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
// On a shared store the flags name one master key, as every replica of a
// deployment must.
func eachBackend(t *testing.T, f func(t *testing.T, store []string)) {
	t.Parallel()
	for _, b := range e2eBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			flags := b.flags(t)
			if len(flags) > 0 {
				flags = append(flags, "--master-key", filepath.Join(privateDir(t), keystore.MasterKeyFileName))
			}
			f(t, flags)
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
	return startServerIn(t, privateDir(t), extraFlags...)
}

// startServerIn is startServer on the data directory dir.
func startServerIn(t *testing.T, dir string, extraFlags ...string) *e2eServer {
	t.Helper()
	s := &e2eServer{t: t, dir: dir, flags: extraFlags,
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

// wholeLogCheckedRE matches the ledger's log line of a check of the whole
// stored log: the start-up check of a start without snapshots, or the
// background check after a start from them.
var wholeLogCheckedRE = regexp.MustCompile(`msg="ledger: the log agrees with the stored tree and the published checkpoints" check="[^"]+" events=\d+ from_leaf=0 `)

// start runs serve on s's data directory and waits until it is ready and
// accepts commands (see wholeLogCheckedRE).
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
		// Ready is not yet accepting commands after a start from
		// snapshots: they answer 503 stale until the ledger has checked
		// the whole stored log, in the background (ADR 0014). Wait for
		// that check (from leaf 0), as a client retrying on 503 would.
		require.Eventually(t, func() bool { return wholeLogCheckedRE.MatchString(logs.String()) },
			e2eWait, 10*time.Millisecond, "the ledger never checked the whole log:\n%s", logs.String())
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
		if (f == "--event-store" || f == "--read-store" || f == "--master-key") && i+1 < len(s.flags) {
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

// privateDir is a new temporary directory of mode 0700, as serve wants its
// data directory (t.TempDir's follows the umask).
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	return dir
}
