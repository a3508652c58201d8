package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/apitest"
	"github.com/accessledger/accessledger/internal/datagen"
)

// countyEnv asks for the county-scale benchmark (about 1,000,000 events,
// minutes to build), as projections' county measurements do.
const countyEnv = "ACCESSLEDGER_BENCH_COUNTY"

// BenchmarkChildPage renders the child's page of the console, server-side,
// for the child with the most access history of generated data (five
// years): the record, who can see it now, the history, the record views
// and alerts, and the timeline. The goal: under 100 ms on the
// county data.
func BenchmarkChildPage(b *testing.B) {
	scales := []datagen.Scale{datagen.Small}
	if os.Getenv(countyEnv) == "1" {
		scales = append(scales, datagen.County)
	}
	for _, sc := range scales {
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
			id := uuid.MustParse(child)
			cookie := sessionCookie(b, s)
			path := console.Prefix + "/children/" + id.String()
			get := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, s.URL+path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				s.Handler.ServeHTTP(rec, req)
				return rec
			}
			rec := get()
			require.Equal(b, http.StatusOK, rec.Code, rec.Body.String())
			size := rec.Body.Len()
			for b.Loop() {
				if rec := get(); rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
			b.ReportMetric(float64(intervals), "intervals")
			b.ReportMetric(float64(size), "page-bytes")
		})
	}
}

// sessionCookie signs an auditor in through a link and returns the
// session's cookie.
func sessionCookie(tb testing.TB, s *apitest.Server) *http.Cookie {
	link, err := console.MintLink(s.Secret, s.URL, domain.RoleAuditor, "auditor-bench", time.Minute, time.Now())
	require.NoError(tb, err)
	u, err := url.Parse(link.URL)
	require.NoError(tb, err)
	req := httptest.NewRequest(http.MethodPost, s.URL+console.Prefix+"/link",
		strings.NewReader(url.Values{"token": {u.Query().Get("token")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.Handler.ServeHTTP(rec, req)
	require.Equal(tb, http.StatusOK, rec.Code)
	for _, c := range rec.Result().Cookies() {
		if c.Name == console.SessionCookie {
			return c
		}
	}
	tb.Fatal("no session cookie")
	return nil
}
