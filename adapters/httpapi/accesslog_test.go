package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/queries"
)

// failingChecks is a query service whose checks fail with an internal
// error while fail is set.
type failingChecks struct {
	Queries
	fail atomic.Bool
}

func (f *failingChecks) Check(ctx context.Context, c queries.Caller, p queries.CheckParams) (api.CheckAnswer, error) {
	if f.fail.Load() {
		return api.CheckAnswer{}, errors.New("the index is on fire")
	}
	return f.Queries.Check(ctx, c, p)
}

// accessLine is one access-log line.
type accessLine struct {
	Level      string `json:"level"`
	RequestID  string `json:"request_id"`
	Route      string `json:"route"`
	Status     int    `json:"status"`
	Actor      string `json:"actor"`
	Code       string `json:"code"`
	SampledOne int    `json:"sampled_1_in"`
}

// accessLines returns the access-log lines logged since the first skip
// lines of the env's log, and the number of lines read.
func (e *env) accessLines(skip int) ([]accessLine, int) {
	e.t.Helper()
	var out []accessLine
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if n <= skip {
			continue
		}
		var l struct {
			Msg string `json:"msg"`
			accessLine
		}
		require.NoError(e.t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		if l.Msg == "http request" {
			out = append(out, l.accessLine)
		}
	}
	return out, n
}

// TestAccessLog: commands, refusals (4xx) and errors (5xx) are logged
// under every setting of the access log; the successful answers of a hot
// read (GET /v1/check) are logged as the mode says (all: each; sampled:
// the first and each N-th, marked with N; errors: none); a successful
// query of another route is always logged.
func TestAccessLog(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AccessLog
		// okChecks is how many of 7 successful checks are logged, and
		// with which sampled_1_in.
		okChecks, sampled int
	}{
		{"default (sampled, 1 in 100)", AccessLog{}, 1, DefaultAccessLogSampleEvery},
		{"all", AccessLog{Mode: AccessLogAll}, 7, 0},
		{"sampled 1 in 3", AccessLog{Mode: AccessLogSampled, SampleEvery: 3}, 3, 3}, // the 1st, 4th and 7th
		{"sampled 1 in 1", AccessLog{Mode: AccessLogSampled, SampleEvery: 1}, 7, 0},
		{"errors", AccessLog{Mode: AccessLogErrors}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fc *failingChecks
			e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) {
				c.AccessLog = tc.cfg
				c.Q.MinPositionWait = 50 * time.Millisecond
				c.WrapQueries = func(q Queries) Queries { fc = &failingChecks{Queries: q}; return fc }
			})
			w := e.buildWorld() // seven commands
			lines, seen := e.accessLines(0)
			require.Len(t, lines, 7, "every command is logged")
			for _, l := range lines {
				require.Equal(t, "INFO", l.Level)
				require.Equal(t, 0, l.SampledOne)
				require.NotEmpty(t, l.Actor)
			}

			check := "/v1/check?account_id=" + w.member + "&child_id=" + w.child + "&permission=view"
			for range 7 {
				require.Equal(t, true, e.ok(req{method: "GET", path: check, role: domain.RoleService}, 200)["allowed"])
			}
			lines, seen = e.accessLines(seen)
			require.Len(t, lines, tc.okChecks, "successful checks")
			for _, l := range lines {
				require.Equal(t, accessLine{Level: "INFO", RequestID: l.RequestID, Route: "GET /v1/check", Status: 200,
					Actor: "service-1", SampledOne: tc.sampled}, l)
			}

			// Refusals, errors and commands: each logged, whatever the mode.
			far := eventlog.At(1_000_000).String()
			e.do(req{method: "GET", path: check, role: domain.RoleManager}).problem(t, 403, codeForbidden)
			e.do(req{method: "GET", path: check}).problem(t, 401, codeUnauthenticated)
			e.do(req{method: "GET", path: "/v1/check?account_id=nope&child_id=" + w.child + "&permission=view", role: domain.RoleService}).
				problem(t, 400, codeInvalid)
			e.do(req{method: "GET", path: check + "&min_position=" + far, role: domain.RoleService}).problem(t, 503, codeStale)
			fc.fail.Store(true)
			e.do(req{method: "GET", path: check, role: domain.RoleService}).problem(t, 500, codeInternal)
			fc.fail.Store(false)
			e.do(req{method: "POST", path: "/v1/children/" + w.child + "/allocation", role: domain.RoleWorker, sub: w.worker,
				body: `{"worker_id":"worker-cy"}`}).problem(t, 403, codeForbidden)
			e.ok(req{method: "POST", path: "/v1/children", role: domain.RoleWorker, sub: w.worker, body: `{"reference":"NCC-0002"}`}, 201)
			e.ok(req{method: "GET", path: "/v1/audit", role: domain.RoleAuditor, sub: "auditor-al"}, 200) // not a hot read
			lines, _ = e.accessLines(seen)
			var got []accessLine
			for _, l := range lines {
				require.NotEmpty(t, l.RequestID)
				l.RequestID = ""
				got = append(got, l)
			}
			require.Equal(t, []accessLine{
				{Level: "INFO", Route: "GET /v1/check", Status: 403, Actor: "manager-1", Code: codeForbidden},
				{Level: "INFO", Route: "GET /v1/check", Status: 401, Code: codeUnauthenticated},
				{Level: "INFO", Route: "GET /v1/check", Status: 400, Actor: "service-1", Code: codeInvalid},
				{Level: "WARN", Route: "GET /v1/check", Status: 503, Actor: "service-1", Code: codeStale},
				{Level: "ERROR", Route: "GET /v1/check", Status: 500, Actor: "service-1", Code: codeInternal},
				{Level: "INFO", Route: "POST /v1/children/{child_id}/allocation", Status: 403, Actor: w.worker, Code: codeForbidden},
				{Level: "INFO", Route: "POST /v1/children", Status: 201, Actor: w.worker},
				{Level: "INFO", Route: "GET /v1/audit", Status: 200, Actor: "auditor-al"},
			}, got)
		})
	}
}

// TestAccessLogConfig: a bad mode or sample rate is a configuration error
// naming its field; the modes parse by name.
func TestAccessLogConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg AccessLog
		bad string
	}{
		{AccessLog{}, ""},
		{AccessLog{Mode: AccessLogErrors}, ""},
		{AccessLog{Mode: AccessLogSampled, SampleEvery: MaxAccessLogSampleEvery}, ""},
		{AccessLog{Mode: "some"}, "AccessLog.Mode"},
		{AccessLog{SampleEvery: -1}, "AccessLog.SampleEvery"},
		{AccessLog{SampleEvery: MaxAccessLogSampleEvery + 1}, "AccessLog.SampleEvery"},
	} {
		err := Config{AccessLog: tc.cfg}.Validate() // and the missing services
		require.Error(t, err)
		if tc.bad == "" {
			require.NotContains(t, err.Error(), "AccessLog", "%+v", tc.cfg)
			continue
		}
		require.ErrorContains(t, err, tc.bad)
	}
	for _, m := range AccessLogModes {
		got, err := ParseAccessLogMode(string(m))
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := ParseAccessLogMode("none")
	require.ErrorContains(t, err, "all, sampled, errors")
}

// TestAccessLogOfTheConsole: the console's pages are not hot reads: each
// request is logged, also with the access log at errors.
func TestAccessLogOfTheConsole(t *testing.T) {
	e := newEnv(t, sqltest.SQLiteMemory(t), func(c *setup) {
		c.AccessLog = AccessLog{Mode: AccessLogErrors}
		c.Console = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("console")) })
	})
	for range 3 {
		require.Equal(t, 200, e.do(req{method: "GET", path: "/console/"}).status)
	}
	lines, _ := e.accessLines(0)
	require.Len(t, lines, 3)
	for _, l := range lines {
		require.Equal(t, "/console/", l.Route)
		require.Equal(t, 200, l.Status)
	}
}
