package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/cputime"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
	"github.com/accessledger/accessledger/projections/projtest"
	"github.com/accessledger/accessledger/queries"
)

// The HTTP benchmarks measure what the API adds on top of the access index:
// the real handler (httpapi.New, as accessd builds it: the outer handler
// with its request id, access log and metrics, the mux, bearer token
// verification by adapters/auth, query parsing, JSON answers) serving
// requests through httptest.NewRecorder, with no network. The requests are
// built before the timer (a server's request parsing is not measured); each
// operation gets a new recorder. The index is built once, from a generated
// history of benchChildren children.

// benchChildren is the size of the generated history: about 21,000 records
// and 6,700 pairs, built in about a second.
const benchChildren = 2_000

// benchIndex is an index of a generated history and what the benchmarks
// ask it about, built once.
type benchIndex struct {
	ix       *accessindex.Index
	at       time.Time // the decision time of every request: the history's end
	pairs    [][2]uuid.UUID
	accounts []uuid.UUID // accounts with at least one pair
	children []uuid.UUID
}

var sharedIndex = sync.OnceValue(func() *benchIndex {
	fail := func(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
	w := projtest.New(fail)
	rng := rand.New(rand.NewPCG(7, 11))
	day := 24 * time.Hour
	carers := make([]uuid.UUID, benchChildren/3)
	for i := range carers {
		carers[i] = w.Carer()
	}
	members := make([]uuid.UUID, 2*benchChildren)
	for i := range members {
		members[i] = w.Member()
	}
	w.Advance(400 * day)
	bi := &benchIndex{}
	seen := map[uuid.UUID]bool{}
	pair := func(acct, child uuid.UUID) {
		bi.pairs = append(bi.pairs, [2]uuid.UUID{acct, child})
		if !seen[acct] {
			seen[acct] = true
			bi.accounts = append(bi.accounts, acct)
		}
	}
	for i := range benchChildren {
		w.Advance(time.Minute)
		c := w.RegisterChild()
		bi.children = append(bi.children, c)
		fi := rng.IntN(len(carers))
		first := carers[fi]
		p := w.Place(c, first, w.Now.Add(-time.Duration(rng.IntN(300)+60)*day))
		pair(first, c)
		switch i % 3 {
		case 0: // moved on long ago, placed with another carer
			w.End(c, p, w.Now.Add(-30*day))
			next := carers[(fi+1+rng.IntN(len(carers)-1))%len(carers)]
			w.Place(c, next, w.Now.Add(-25*day))
			pair(next, c)
		case 1: // moved on recently: the carer is in the grace period
			w.End(c, p, w.Now.Add(-2*day))
		}
		for k := range rng.IntN(3) + 1 {
			m := members[(2*i+k)%len(members)]
			w.Grant(c, m, domain.PermView)
			pair(m, c)
			if rng.IntN(5) == 0 {
				w.Revoke(c, m)
			}
		}
	}
	bi.at = w.Now
	bi.ix = accessindex.New(accessindex.WithLogger(slog.New(slog.DiscardHandler)))
	if err := bi.ix.Apply(w.Records...); err != nil {
		panic(err)
	}
	rng.Shuffle(len(bi.pairs), func(i, j int) { bi.pairs[i], bi.pairs[j] = bi.pairs[j], bi.pairs[i] })
	rng.Shuffle(len(bi.accounts), func(i, j int) { bi.accounts[i], bi.accounts[j] = bi.accounts[j], bi.accounts[i] })
	rng.Shuffle(len(bi.children), func(i, j int) { bi.children[i], bi.children[j] = bi.children[j], bi.children[i] })
	return bi
})

// benchHandler is the API's handler on the shared index, with the access
// log written as JSON at level info (accessd's default) to io.Discard, and
// a bearer token of role.
func benchHandler(b *testing.B, role domain.Role) (http.Handler, string, *benchIndex) {
	return benchHandlerOn(b, role, sqltest.SQLiteMemory(b))
}

// benchHandlerOn is benchHandler with its read store (the view log) at
// url.
func benchHandlerOn(b *testing.B, role domain.Role, url string) (http.Handler, string, *benchIndex) {
	return benchHandlerWith(b, role, url, nil)
}

// benchHandlerWith is benchHandlerOn with the handler's Config changed by
// configure (when not nil) before httpapi.New.
func benchHandlerWith(b *testing.B, role domain.Role, url string, configure func(*httpapi.Config)) (http.Handler, string, *benchIndex) {
	bi := sharedIndex()
	ctx := context.Background()
	db := sqltest.Open(b, url)
	require.NoError(b, sqlstore.Migrate(ctx, db))
	pg, lite := viewlog.Migrations()
	require.NoError(b, sqldb.Migrate(ctx, db, viewlog.Component, pg, lite))
	pg, lite = securitylog.Migrations() // a view without access is in the security log
	require.NoError(b, sqldb.Migrate(ctx, db, securitylog.Component, pg, lite))
	store, err := sqlstore.New(ctx, db)
	require.NoError(b, err)
	b.Cleanup(func() { _ = store.Close() })
	quiet := slog.New(slog.DiscardHandler)
	svc, err := commands.New(store, noRefusals{}, commands.Config{Logger: quiet})
	require.NoError(b, err)

	secret := bytes.Repeat([]byte{7}, auth.MinSecretBytes)
	verifier, err := auth.NewVerifier(secret, "", "", nil)
	require.NoError(b, err)
	tok, err := auth.Mint(secret, auth.Claims{Subject: "portal-backend", Role: role, TTL: time.Hour}, time.Now())
	require.NoError(b, err)

	qs, err := queries.New(queries.Config{
		Index: bi.ix, History: accesshistory.NewReader(db), Accounts: accounts.NewReader(db), Audit: audit.NewReader(db, nil),
		SecurityLog: securitylog.New(db), Views: viewlog.New(db), ChildRecords: queries.ChildrenFromLog(store), Refusals: noRefusals{},
		Progress: func() []projections.Status { return nil }, Clock: func() time.Time { return bi.at }, Logger: quiet,
	})
	require.NoError(b, err)
	cfg := httpapi.Config{
		Commands:    svc,
		Queries:     qs,
		Auth:        verifier,
		Idempotency: idempotency.New(db),
		Ready:       func() bool { return true },
		Registry:    prometheus.NewRegistry(),
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if configure != nil {
		configure(&cfg)
	}
	h, err := httpapi.New(cfg)
	require.NoError(b, err)
	return h, "Bearer " + tok, bi
}

type noRefusals struct{}

func (noRefusals) RecordRefusal(context.Context, commands.Refusal) error { return nil }

// requests builds one GET request per target.
func requests(bearer string, paths []string) []*http.Request {
	out := make([]*http.Request, len(paths))
	for i, p := range paths {
		r := httptest.NewRequest(http.MethodGet, p, nil)
		r.Header.Set("Authorization", bearer)
		out[i] = r
	}
	return out
}

// serve answers r and fails the benchmark unless the answer is 200.
func serve(tb testing.TB, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		tb.Errorf("%s: %d %s", r.URL, rec.Code, rec.Body)
	}
	return rec
}

// benchRequests serves reqs in turn, sequentially or with b.RunParallel.
// Sequentially it also reports cpu-ns/op: the process's CPU time (the
// collector's included) per request, which other work on the machine
// disturbs far less than ns/op.
func benchRequests(b *testing.B, h http.Handler, reqs []*http.Request, parallel bool) {
	b.ReportAllocs()
	if !parallel {
		i := 0
		cpu := cputime.Process()
		for b.Loop() {
			serve(b, h, reqs[i%len(reqs)])
			i++
		}
		b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		return
	}
	var start atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(7919)) // each goroutine starts elsewhere
		for pb.Next() {
			serve(b, h, reqs[i%len(reqs)])
			i++
		}
	})
}

// checkRequests are GET /v1/check of every pair of the index (placements,
// grace periods, grants and revoked grants), in a random order.
func checkRequests(b *testing.B) (http.Handler, []*http.Request) {
	return checkRequestsWith(b, nil)
}

// checkRequestsWith is checkRequests on a handler whose Config configure
// changes (when not nil).
func checkRequestsWith(b *testing.B, configure func(*httpapi.Config)) (http.Handler, []*http.Request) {
	h, tok, bi := benchHandlerWith(b, domain.RoleService, sqltest.SQLiteMemory(b), configure)
	paths := make([]string, len(bi.pairs))
	for i, p := range bi.pairs {
		paths[i] = "/v1/check?account_id=" + p[0].String() + "&child_id=" + p[1].String() + "&permission=view"
	}
	reqs := requests(tok, paths)
	// The answers are the index's.
	for _, i := range []int{0, 1, 2, len(reqs) - 1} {
		var got struct {
			Allowed bool   `json:"allowed"`
			Reason  string `json:"reason"`
		}
		require.NoError(b, json.Unmarshal(serve(b, h, reqs[i]).Body.Bytes(), &got))
		want := bi.ix.Check(bi.pairs[i][0], bi.pairs[i][1], domain.View, bi.at)
		require.Equal(b, want.Allowed, got.Allowed)
		require.Equal(b, string(want.Reason), got.Reason)
	}
	return h, reqs
}

// BenchmarkHTTPCheck is one GET /v1/check through the handler. Compare with
// accessindex's BenchmarkCheck: the difference is the HTTP layer.
func BenchmarkHTTPCheck(b *testing.B) {
	h, reqs := checkRequests(b)
	benchRequests(b, h, reqs, false)
}

// BenchmarkHTTPCheckParallel is BenchmarkHTTPCheck from GOMAXPROCS
// goroutines.
func BenchmarkHTTPCheckParallel(b *testing.B) {
	h, reqs := checkRequests(b)
	benchRequests(b, h, reqs, true)
}

// BenchmarkHTTPCheckAccessLog is BenchmarkHTTPCheck with the access log
// on and off (issue 18 item 5), the log written as JSON at level info to
// io.Discard (so the cost of the write itself is not measured):
//
//   - log=json: every request's line (httpapi.AccessLogAll; accessd's
//     default before the access log's settings);
//   - log=sampled: one successful check in DefaultAccessLogSampleEvery
//     (the default);
//   - log=errors: no successful check;
//   - log=off: slog.DiscardHandler (no level enabled).
func BenchmarkHTTPCheckAccessLog(b *testing.B) {
	mode := func(m httpapi.AccessLogMode) func(*httpapi.Config) {
		return func(c *httpapi.Config) { c.AccessLog.Mode = m }
	}
	for _, tc := range []struct {
		name string
		cfg  func(*httpapi.Config)
	}{
		{"log=off", func(c *httpapi.Config) { c.Logger = slog.New(slog.DiscardHandler) }},
		{"log=json", mode(httpapi.AccessLogAll)},
		{"log=sampled", mode(httpapi.AccessLogSampled)},
		{"log=errors", mode(httpapi.AccessLogErrors)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, reqs := checkRequestsWith(b, tc.cfg)
			benchRequests(b, h, reqs, false)
		})
	}
}

// BenchmarkHTTPChildren is one GET /v1/accounts/{id}/children of an
// account with at least one pair (a carer or a network member).
func BenchmarkHTTPChildren(b *testing.B) {
	h, tok, bi := benchHandler(b, domain.RoleService)
	paths := make([]string, len(bi.accounts))
	for i, a := range bi.accounts {
		paths[i] = "/v1/accounts/" + a.String() + "/children"
	}
	reqs := requests(tok, paths)
	var got struct {
		Children []json.RawMessage `json:"children"`
	}
	require.NoError(b, json.Unmarshal(serve(b, h, reqs[0]).Body.Bytes(), &got))
	es, _ := bi.ix.ChildrenOf(bi.accounts[0], bi.at)
	require.Len(b, got.Children, len(es))
	benchRequests(b, h, reqs, false)
}

// BenchmarkHTTPViewers is one GET /v1/children/{id}/viewers (as a worker).
func BenchmarkHTTPViewers(b *testing.B) {
	h, tok, bi := benchHandler(b, domain.RoleWorker)
	paths := make([]string, len(bi.children))
	for i, c := range bi.children {
		paths[i] = "/v1/children/" + c.String() + "/viewers"
	}
	reqs := requests(tok, paths)
	var got struct {
		Viewers []json.RawMessage `json:"viewers"`
	}
	require.NoError(b, json.Unmarshal(serve(b, h, reqs[0]).Body.Bytes(), &got))
	es, _ := bi.ix.ViewersOf(bi.children[0], bi.at)
	require.Len(b, got.Viewers, len(es))
	require.NotEmpty(b, es)
	benchRequests(b, h, reqs, false)
}

// BenchmarkChecks checks the same n pairs of the index through the handler
// two ways: how=single sends n GET /v1/check (one op is the n requests),
// how=batch one POST /v1/checks of the n (issue 16: at least 10x the
// throughput of single checks). checks/s and ns/check are per pair.
func BenchmarkChecks(b *testing.B) {
	h, tok, bi := benchHandler(b, domain.RoleService)
	for _, n := range []int{100, 1_000} {
		pairs := bi.pairs[:n]
		paths := make([]string, n)
		items := make([]string, n)
		for i, p := range pairs {
			paths[i] = "/v1/check?account_id=" + p[0].String() + "&child_id=" + p[1].String() + "&permission=view"
			items[i] = `{"account_id":"` + p[0].String() + `","child_id":"` + p[1].String() + `","permission":"view"}`
		}
		body := []byte(`{"checks":[` + strings.Join(items, ",") + `]}`)
		singles := requests(tok, paths)
		batch := httptest.NewRequest(http.MethodPost, "/v1/checks", nil)
		batch.Header.Set("Authorization", tok)
		batch.Header.Set("Content-Type", "application/json")
		post := func() *httptest.ResponseRecorder {
			batch.Body = io.NopCloser(bytes.NewReader(body))
			return serve(b, h, batch)
		}
		// The batch answers what the single checks answer, at one position.
		var got struct {
			Results []struct {
				Allowed bool   `json:"allowed"`
				Reason  string `json:"reason"`
			} `json:"results"`
			Position string `json:"position"`
		}
		require.NoError(b, json.Unmarshal(post().Body.Bytes(), &got))
		require.Len(b, got.Results, n)
		for i, p := range pairs {
			want := bi.ix.Check(p[0], p[1], domain.View, bi.at)
			require.Equal(b, want.Allowed, got.Results[i].Allowed)
			require.Equal(b, string(want.Reason), got.Results[i].Reason)
			require.Equal(b, want.Position.String(), got.Position)
		}
		report := func(b *testing.B) {
			checks := float64(b.N * n)
			b.ReportMetric(checks/b.Elapsed().Seconds(), "checks/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/checks, "ns/check")
		}
		b.Run(fmt.Sprintf("n=%d/how=single", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, r := range singles {
					serve(b, h, r)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("n=%d/how=batch", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				post()
			}
			report(b)
		})
	}
}

// BenchmarkHTTPCheckWhileRecordingViews is BenchmarkHTTPCheck while the
// same handler records views (R20) at a county's peak: 200 views/s, as a
// batch of 20 every 100 ms (POST /v1/views, each view decided by the index
// and kept in the read store's view log), on each backend; "idle" is the
// same without views. It reports the checks' p50 and p99 latency and the
// views kept. Checks read the in-memory index only: the view log's writes
// share no lock with them.
func BenchmarkHTTPCheckWhileRecordingViews(b *testing.B) {
	for _, be := range sqltest.Backends() {
		if be.Name == "sqlite-memory" {
			continue
		}
		for _, ingest := range []bool{false, true} {
			name := be.Name + "/idle"
			if ingest {
				name = be.Name + "/200-views-per-s"
			}
			b.Run(name, func(b *testing.B) {
				h, tok, bi := benchHandlerOn(b, domain.RoleService, be.URL(b))
				paths := make([]string, len(bi.pairs))
				for i, p := range bi.pairs {
					paths[i] = "/v1/check?account_id=" + p[0].String() + "&child_id=" + p[1].String() + "&permission=view"
				}
				reqs := requests(tok, paths)
				var kept atomic.Int64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				if ingest {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tick := time.NewTicker(100 * time.Millisecond)
						defer tick.Stop()
						at := bi.at.Format(time.RFC3339Nano)
						for n := 0; ; n++ {
							var body bytes.Buffer
							body.WriteString(`{"views":[`)
							for k := range 20 {
								p := bi.pairs[(n*20+k)%len(bi.pairs)]
								if k > 0 {
									body.WriteByte(',')
								}
								fmt.Fprintf(&body, `{"account_id":%q,"child_id":%q,"permission":"view","viewed_at":%q}`, p[0], p[1], at)
							}
							body.WriteString(`]}`)
							r := httptest.NewRequest(http.MethodPost, "/v1/views", &body)
							r.Header.Set("Authorization", tok)
							r.Header.Set("Content-Type", "application/json")
							rec := httptest.NewRecorder()
							h.ServeHTTP(rec, r)
							if rec.Code != http.StatusOK {
								b.Errorf("POST /v1/views: %d %s", rec.Code, rec.Body)
								return
							}
							kept.Add(20)
							select {
							case <-stop:
								return
							case <-tick.C:
							}
						}
					}()
				}
				b.ReportAllocs()
				lat := make([]time.Duration, 0, 1<<16)
				i := 0
				for b.Loop() {
					t := time.Now()
					serve(b, h, reqs[i%len(reqs)])
					if len(lat) < cap(lat) {
						lat = append(lat, time.Since(t))
					}
					i++
				}
				close(stop)
				wg.Wait()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				b.ReportMetric(float64(kept.Load()), "views")
			})
		}
	}
}
