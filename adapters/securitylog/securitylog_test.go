package securitylog_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/domain"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func open(t *testing.T, url string) *sqldb.DB {
	t.Helper()
	db := sqltest.Open(t, url)
	pg, lite := securitylog.Migrations()
	require.NoError(t, sqldb.Migrate(context.Background(), db, securitylog.Component, pg, lite))
	return db
}

func forEachBackend(t *testing.T, f func(t *testing.T, url func(testing.TB) string)) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			if b.Name == "postgres" {
				sqltest.Postgres(t) // skip (or fail) once here
			}
			f(t, b.URL)
		})
	}
}

func entry(actor, command string, at time.Time) securitylog.Entry {
	return securitylog.Entry{
		At: at, ActorID: actor, ActorRole: "worker", Command: command, Target: "child/" + uuid.NewString(),
		Code: "forbidden", Detail: "not the child's allocated worker", RequestID: "req-" + actor,
		CorrelationID: uuid.New(),
	}
}

// all reads every entry, page by page, checking the order and the cursor.
func all(t *testing.T, l *securitylog.Log, f securitylog.Filter) []securitylog.Entry {
	t.Helper()
	var out []securitylog.Entry
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10000)
		page, next, err := l.List(context.Background(), f)
		require.NoError(t, err)
		for _, e := range page {
			if len(out) > 0 {
				require.Less(t, e.ID, out[len(out)-1].ID, "newest first")
			}
			out = append(out, e)
		}
		if next == 0 {
			return out
		}
		require.Equal(t, page[len(page)-1].ID, next)
		f.After = next
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		db := open(t, url(t))
		pg, lite := securitylog.Migrations()
		require.NoError(t, sqldb.Migrate(context.Background(), db, securitylog.Component, pg, lite))
	})
}

func TestRecordAndList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		l := securitylog.New(open(t, url(t)))

		first := entry("worker-ann", "grant", t0.Add(123456789*time.Nanosecond).In(time.FixedZone("X", 3600)))
		second := entry("worker-bob", "revoke", t0.Add(time.Minute))
		second.CorrelationID = uuid.Nil
		second.RequestID, second.Target, second.Detail = "", "", ""
		require.NoError(t, l.Record(ctx, first))
		require.NoError(t, l.Record(ctx, second))

		got, next, err := l.List(ctx, securitylog.Filter{})
		require.NoError(t, err)
		require.Zero(t, next)
		require.Len(t, got, 2)
		require.Greater(t, got[0].ID, got[1].ID)

		// Times come back in UTC, to the microsecond; the rest as written.
		first.At = t0.Add(123456 * time.Microsecond)
		first.ID, second.ID = got[1].ID, got[0].ID
		require.Equal(t, []securitylog.Entry{second, first}, got)
	})
}

func TestFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		l := securitylog.New(open(t, url(t)))
		actors := []string{"worker-ann", "worker-bob", "carer-cat"}
		commands := []string{"grant", "revoke"}
		for i := range 30 {
			e := entry(actors[i%3], commands[i%2], t0.Add(time.Duration(i)*time.Hour))
			if i%5 == 0 {
				e.Code = "invalid"
			}
			require.NoError(t, l.Record(ctx, e))
		}
		count := func(f securitylog.Filter) int { return len(all(t, l, f)) }

		require.Equal(t, 30, count(securitylog.Filter{}))
		require.Equal(t, 30, count(securitylog.Filter{Limit: 7}))
		require.Equal(t, 30, count(securitylog.Filter{Limit: 1}))
		require.Equal(t, 10, count(securitylog.Filter{Actor: "worker-bob", Limit: 3}))
		require.Equal(t, 15, count(securitylog.Filter{Command: "revoke"}))
		require.Equal(t, 5, count(securitylog.Filter{Actor: "worker-ann", Command: "grant"})) // i%6 == 0
		require.Equal(t, 6, count(securitylog.Filter{Code: "invalid"}))
		require.Zero(t, count(securitylog.Filter{Actor: "nobody"}))

		// From inclusive, To exclusive.
		between := all(t, l, securitylog.Filter{From: t0.Add(10 * time.Hour), To: t0.Add(20 * time.Hour), Limit: 4})
		require.Len(t, between, 10)
		require.Equal(t, t0.Add(19*time.Hour), between[0].At)
		require.Equal(t, t0.Add(10*time.Hour), between[9].At)
		require.Equal(t, 20, count(securitylog.Filter{From: t0.Add(10 * time.Hour)}))
		require.Equal(t, 10, count(securitylog.Filter{To: t0.Add(10 * time.Hour)}))

		// A page of exactly the remaining entries says there is no more
		// only when nothing follows.
		page, next, err := l.List(ctx, securitylog.Filter{Limit: 30})
		require.NoError(t, err)
		require.Len(t, page, 30)
		require.Zero(t, next)
	})
}

func TestSubjectFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		l := securitylog.New(open(t, url(t)))
		child, other, account := uuid.New(), uuid.New(), uuid.New()
		c, o, a := child.String(), other.String(), account.String()
		targets := map[string]bool{ // target: about child (true) or not
			"child/" + c:                        true,
			"child/" + c + "/placement/" + o:    true,
			"child/" + c + "/grant/" + a:        true, // the child's and the account's
			"/v1/children/" + c:                 true,
			"/v1/children/" + c + "/history":    true,
			"child/" + c + "0":                  false, // not a path under it
			"child/" + o:                        false,
			"child/" + o + "/grant/" + a:        false, // the account's only
			"account/" + a:                      false,
			"account/" + a + "/phone":           false,
			"/v1/accounts/" + a + "/export":     false,
			"/v1/accounts/" + o:                 false,
			"child/" + o + "/grant/" + a + "/x": false,
			"/v1/children/" + o + "/grant/" + a: false, // a path, not a grant target
			"":                                  false,
		}
		aboutAccount := map[string]bool{
			"child/" + c + "/grant/" + a: true, "child/" + o + "/grant/" + a: true, "account/" + a: true,
			"account/" + a + "/phone": true, "/v1/accounts/" + a + "/export": true,
		}
		i := 0
		for target := range targets {
			e := entry("worker-ann", "grant", t0.Add(time.Duration(i)*time.Minute))
			e.Target = target
			require.NoError(t, l.Record(ctx, e))
			i++
		}
		got := func(f securitylog.Filter) map[string]bool {
			out := map[string]bool{}
			for _, e := range all(t, l, f) {
				out[e.Target] = true
			}
			return out
		}
		wantChild := map[string]bool{}
		for target, about := range targets {
			if about {
				wantChild[target] = true
			}
		}
		require.Equal(t, wantChild, got(securitylog.Filter{Child: &child, Limit: 2}))
		require.Equal(t, aboutAccount, got(securitylog.Filter{Account: &account}))
		// Filters combine with AND.
		require.Equal(t, map[string]bool{"child/" + c + "/grant/" + a: true}, got(securitylog.Filter{Child: &child, Account: &account}))
		require.Empty(t, got(securitylog.Filter{Child: &child, Actor: "nobody"}))
	})
}

func TestListValidation(t *testing.T) {
	l := securitylog.New(open(t, sqltest.SQLiteMemory(t)))
	for name, f := range map[string]securitylog.Filter{
		"negative cursor": {After: -1},
		"negative limit":  {Limit: -1},
		"limit too big":   {Limit: securitylog.MaxLimit + 1},
		"empty range":     {From: t0, To: t0},
		"reversed range":  {From: t0, To: t0.Add(-time.Second)},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := l.List(context.Background(), f)
			require.ErrorIs(t, err, securitylog.ErrInvalid)
			require.ErrorIs(t, err, domain.ErrInvalid)
		})
	}
}

// TestRecordRefusesBadEntries: the fields the engine fills must be clean;
// nothing is stored when they are not.
func TestRecordRefusesBadEntries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		l := securitylog.New(open(t, url(t)))
		good := entry("worker-ann", "grant", t0)
		tests := []struct {
			name   string
			change func(e *securitylog.Entry)
		}{
			{"no time", func(e *securitylog.Entry) { e.At = time.Time{} }},
			{"time out of range", func(e *securitylog.Entry) { e.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
			{"time too early", func(e *securitylog.Entry) { e.At = time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC) }},
			{"no actor", func(e *securitylog.Entry) { e.ActorID = "" }},
			{"blank actor", func(e *securitylog.Entry) { e.ActorID = " \t" }},
			{"no role", func(e *securitylog.Entry) { e.ActorRole = "" }},
			{"no command", func(e *securitylog.Entry) { e.Command = "" }},
			{"no code", func(e *securitylog.Entry) { e.Code = "" }},
			{"actor too long", func(e *securitylog.Entry) { e.ActorID = strings.Repeat("a", securitylog.MaxActorID+1) }},
			{"role too long", func(e *securitylog.Entry) { e.ActorRole = strings.Repeat("r", securitylog.MaxActorRole+1) }},
			{"command too long", func(e *securitylog.Entry) { e.Command = strings.Repeat("c", securitylog.MaxCommand+1) }},
			{"code too long", func(e *securitylog.Entry) { e.Code = strings.Repeat("c", securitylog.MaxCode+1) }},
			{"actor with NUL", func(e *securitylog.Entry) { e.ActorID = "worker\x00ann" }},
			{"actor invalid UTF-8", func(e *securitylog.Entry) { e.ActorID = "worker\xffann" }},
			{"command with newline", func(e *securitylog.Entry) { e.Command = "grant\nrevoke" }},
			{"code with escape", func(e *securitylog.Entry) { e.Code = "\x1b[31mforbidden" }},
			{"role with C1 control", func(e *securitylog.Entry) { e.ActorRole = "worker\u0085" }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := good
				tt.change(&e)
				require.ErrorIs(t, l.Record(ctx, e), securitylog.ErrInvalid)
			})
		}
		got, _, err := l.List(ctx, securitylog.Filter{})
		require.NoError(t, err)
		require.Empty(t, got, "a refused entry stores nothing")

		// At the bounds it is accepted.
		e := good
		e.ActorID = strings.Repeat("a", securitylog.MaxActorID)
		e.Command = strings.Repeat("c", securitylog.MaxCommand)
		require.NoError(t, l.Record(ctx, e))
	})
}

// TestOddText: odd but valid Unicode is kept byte for byte on both
// engines; free text with NUL or invalid UTF-8 is cleaned, not refused;
// overlong free text is cut at a character boundary.
func TestOddText(t *testing.T) {
	odd := []string{
		"Zoë 🧒🏽 \u202eevil\u202c",                    // emoji with skin tone, RTL override
		"e\u0301\u0301\u0301 n\u0303",                // combining marks
		"👩‍👩‍👧‍👦 \u200b\u200d\ufeff",                 // ZWJ sequence, zero-width characters
		"子ども 𠜎𠜱 \U0010FFFD",                          // CJK, astral plane, last plane
		"tab\tand\nnewline and 'quotes' \"; DROP --", // SQL-looking text
		"\\x00 not a NUL, ? and $1 placeholders",     // placeholders bun must not touch
	}
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		l := securitylog.New(open(t, url(t)))
		for i, s := range odd {
			e := entry("actor-"+strings.Fields(s)[0], "grant", t0.Add(time.Duration(i)*time.Second))
			if strings.ContainsAny(s, "\t\n") {
				e.ActorID = "worker-ann"
			}
			e.Target, e.Detail, e.RequestID = s, s, s
			require.NoError(t, l.Record(ctx, e))
			got, _, err := l.List(ctx, securitylog.Filter{Limit: 1})
			require.NoError(t, err)
			require.Equal(t, s, got[0].Detail)
			require.Equal(t, s, got[0].Target)
			require.Equal(t, s, got[0].RequestID)
			require.Equal(t, e.ActorID, got[0].ActorID)
		}

		// NUL and invalid UTF-8 in free text are replaced, not refused.
		e := entry("worker-ann", "grant", t0)
		e.Target = "child/\x00\xff\xfe"
		e.Detail = "bad \x00 byte and \xc3\x28 sequence"
		e.RequestID = "\xff"
		require.NoError(t, l.Record(ctx, e))
		got, _, err := l.List(ctx, securitylog.Filter{Limit: 1})
		require.NoError(t, err)
		require.Equal(t, "child/\uFFFD\uFFFD", got[0].Target) // a run of invalid bytes becomes one U+FFFD
		require.Equal(t, "bad \uFFFD byte and \uFFFD( sequence", got[0].Detail)
		require.Equal(t, "\uFFFD", got[0].RequestID)

		// Overlong detail: cut at a character boundary, within the bound.
		for _, unit := range []string{"a", "é", "€", "🧒", "e\u0301"} {
			e := entry("worker-ann", "grant", t0)
			e.Detail = strings.Repeat(unit, 3000)
			e.Target = strings.Repeat(unit, 1000)
			require.NoError(t, l.Record(ctx, e))
			got, _, err := l.List(ctx, securitylog.Filter{Limit: 1})
			require.NoError(t, err)
			for _, c := range []struct {
				got, full string
				max       int
			}{{got[0].Detail, e.Detail, securitylog.MaxDetail}, {got[0].Target, e.Target, securitylog.MaxTarget}} {
				require.LessOrEqual(t, len(c.got), c.max, unit)
				require.Greater(t, len(c.got), c.max-8, unit)
				require.True(t, utf8.ValidString(c.got), unit)
				require.True(t, strings.HasSuffix(c.got, "…"), unit)
				require.True(t, strings.HasPrefix(c.full, strings.TrimSuffix(c.got, "…")), unit)
			}
		}
		// Exactly at the bound: kept whole.
		e = entry("worker-ann", "grant", t0)
		e.Detail = strings.Repeat("€", securitylog.MaxDetail/3) + "ab"
		require.Len(t, e.Detail, securitylog.MaxDetail)
		require.NoError(t, l.Record(ctx, e))
		got, _, err = l.List(ctx, securitylog.Filter{Limit: 1})
		require.NoError(t, err)
		require.Equal(t, e.Detail, got[0].Detail)
	})
}

// TestConcurrentWriters: writers on several goroutines (several
// connections on the file and PostgreSQL backends) lose nothing and get
// distinct ids.
func TestConcurrentWriters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		l := securitylog.New(open(t, url(t)))
		const writers, each = 8, 25
		start := make(chan struct{})
		errs := make(chan error, writers*each)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range each {
					e := entry(fmt.Sprintf("writer-%d", w), "grant", t0.Add(time.Duration(i)*time.Second))
					e.Detail = fmt.Sprintf("attempt %d by writer %d ✋", i, w)
					errs <- l.Record(ctx, e)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}

		got := all(t, l, securitylog.Filter{Limit: 33})
		require.Len(t, got, writers*each)
		seen := map[string]bool{}
		for _, e := range got {
			seen[e.Detail] = true
		}
		require.Len(t, seen, writers*each)
		for w := range writers {
			mine := all(t, l, securitylog.Filter{Actor: fmt.Sprintf("writer-%d", w)})
			require.Len(t, mine, each)
			// One writer's entries are in its own order.
			for i, e := range mine {
				require.Equal(t, fmt.Sprintf("attempt %d by writer %d ✋", each-1-i, w), e.Detail)
			}
		}
	})
}

// TestRecordInTransaction: a Log on a transaction writes with it.
func TestRecordInTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, url func(testing.TB) string) {
		ctx := context.Background()
		db := open(t, url(t))
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, securitylog.New(tx).Record(ctx, entry("worker-ann", "grant", t0)))
		require.NoError(t, tx.Rollback())
		got, _, err := securitylog.New(db).List(ctx, securitylog.Filter{})
		require.NoError(t, err)
		require.Empty(t, got)
	})
}
