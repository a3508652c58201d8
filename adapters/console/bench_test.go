package console_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/apitest"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/internal/datagen"
	"github.com/accessledger/accessledger/internal/engine"
)

// dataDirEnv names the data directory of a deployment (`accessd generate
// --scale county --data-dir DIR`, then one `accessd serve` to build its read
// models) whose child page BenchmarkChildPageOfADeployment renders through
// the engine as accessd serve builds it.
const dataDirEnv = "ACCESSLEDGER_BENCH_CONSOLE_DATA_DIR"

// BenchmarkChildPageOfADeployment renders the console's child page of the
// deployment in dataDirEnv (the county data: the goal is under
// 100 ms), for its child with the most access history, through the engine
// accessd serve runs: SQLite store and read models on disk.
func BenchmarkChildPageOfADeployment(b *testing.B) {
	dir := os.Getenv(dataDirEnv)
	if dir == "" {
		b.Skipf("set %s to a data directory made by accessd generate and served once", dataDirEnv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &engine.Config{DataDir: dir}
	e, err := engine.Open(ctx, cfg, engine.Options{Instance: "bench"}, quiet)
	require.NoError(b, err)
	defer e.Close()
	cmds, err := commands.New(e.Stores.Log, securitylog.New(e.ReadDB), commands.Config{Logger: quiet, Eraser: e.Stores.Log, IDs: e.Stores.IDs})
	require.NoError(b, err)
	secret, err := auth.LoadOrCreateSecret(dir)
	require.NoError(b, err)
	verifier, err := auth.NewVerifier(secret, "", "", nil)
	require.NoError(b, err)
	ready := make(chan struct{})
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- e.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		b.Fatalf("engine stopped: %v", err)
	}
	b.Logf("%s: ready in %s", dir, time.Since(start).Round(time.Millisecond))
	h, err := engine.APIHandler(e, cmds, verifier, engine.DefaultMinPositionWait, func() bool { return true }, nil, quiet,
		engine.WithConsole(console.Config{LinkSecret: secret}))
	require.NoError(b, err)
	var child string
	var intervals int
	require.NoError(b, e.ReadDB.NewRaw("SELECT child_id, count(*) FROM access_history GROUP BY child_id ORDER BY count(*) DESC LIMIT 1").
		Scan(ctx, &child, &intervals))
	benchChildPage(b, secret, "http://127.0.0.1", h, uuid.MustParse(child), intervals)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		b.Fatal(err)
	}
}

// BenchmarkChildPage renders the child's page of the console, server-side,
// for the child with the most access history of generated data (five
// years): the record, who can see it now, the history, the record views
// and alerts, and the timeline: on the small data set (the same five
// years per child as the county's, in memory). The county's own figure is
// BenchmarkChildPageOfADeployment's.
func BenchmarkChildPage(b *testing.B) {
	for _, sc := range []datagen.Scale{datagen.Small} {
		b.Run(sc.Name, func(b *testing.B) {
			s := apitest.StartWith(b, apitest.Options{Console: &console.Config{},
				Seed: func(ctx context.Context, store *memstore.Store) error {
					_, err := datagen.Generate(ctx, sc, datagen.StoreSink(store), datagen.Options{Seed: 1})
					return err
				}})
			var child string
			var intervals int
			require.NoError(b, s.DB.NewRaw("SELECT child_id, count(*) FROM access_history GROUP BY child_id ORDER BY count(*) DESC LIMIT 1").
				Scan(context.Background(), &child, &intervals))
			benchChildPage(b, s.Secret, s.URL, s.Handler, uuid.MustParse(child), intervals)
		})
	}
}

// benchChildPage signs an auditor in and renders the child's page b.N
// times.
func benchChildPage(b *testing.B, secret []byte, base string, h http.Handler, id uuid.UUID, intervals int) {
	cookie := sessionCookie(b, secret, base, h)
	path := console.Prefix + "/children/" + id.String()
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, base+path, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := get()
	require.Equal(b, http.StatusOK, rec.Code, rec.Body.String())
	size := rec.Body.Len()
	cpu := cputime.Process()
	for b.Loop() {
		if rec := get(); rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
	// The process's CPU per page: on a loaded machine it moves far less
	// than the time per page (the engine's own goroutines count too).
	b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(intervals), "intervals")
	b.ReportMetric(float64(size), "page-bytes")
}

// sessionCookie signs an auditor in through a link and returns the
// session's cookie.
func sessionCookie(tb testing.TB, secret []byte, base string, h http.Handler) *http.Cookie {
	link, err := console.MintLink(secret, base, domain.RoleAuditor, "auditor-bench", time.Minute, time.Now())
	require.NoError(tb, err)
	u, err := url.Parse(link.URL)
	require.NoError(tb, err)
	req := httptest.NewRequest(http.MethodPost, base+console.Prefix+"/link",
		strings.NewReader(url.Values{"token": {u.Query().Get("token")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(tb, http.StatusOK, rec.Code)
	for _, c := range rec.Result().Cookies() {
		if c.Name == console.SessionCookie {
			return c
		}
	}
	tb.Fatal("no session cookie")
	return nil
}
