package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func newTestClient(t *testing.T, f *fakeServer) *Client {
	t.Helper()
	c, err := NewClient(f.URL, testToken, nil)
	require.NoError(t, err)
	c.RetryWait = 0
	return c
}

func TestClientProblem(t *testing.T) {
	f := newFakeServer(t, testToken, fixed(reply{status: 409,
		body: `{"type":"https://x/conflict","title":"Conflict","status":409,"detail":"the placement has already ended","code":"conflict","instance":"/r/1"}`}))
	c := newTestClient(t, f)
	_, err := c.EndPlacement(context.Background(), "k", uuid.MustParse(childID), uuid.MustParse(placementID),
		PlacementEnd{EndedAt: time.Date(2026, 2, 1, 18, 0, 0, 0, time.FixedZone("CET", 3600)), Reason: "r"})
	var p *Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, Problem{Type: "https://x/conflict", Title: "Conflict", Status: 409, Detail: "the placement has already ended",
		Code: "conflict", Instance: "/r/1"}, *p)
	require.Equal(t, "Conflict: the placement has already ended (code conflict, status 409)", err.Error())
	reqs := f.requests()
	require.Len(t, reqs, 1, "a 4xx is not retried")
	require.JSONEq(t, `{"ended_at":"2026-02-01T17:00:00Z","reason":"r"}`, reqs[0].RawBody)
	require.Equal(t, "k", reqs[0].IdempotencyKey)
}

func TestClientRetries(t *testing.T) {
	for _, tc := range []struct {
		status   int
		attempts int
	}{
		{http.StatusServiceUnavailable, 3},
		{http.StatusBadGateway, 3},
		{http.StatusGatewayTimeout, 3},
		{http.StatusInternalServerError, 1},
		{http.StatusTooManyRequests, 1},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			f := newFakeServer(t, testToken, fixed(reply{status: tc.status, body: `{"title":"x","status":` + jsonNumber(tc.status) + `,"code":"internal"}`}))
			c := newTestClient(t, f)
			_, err := c.ClearPhone(context.Background(), "same", uuid.MustParse(accountID))
			var p *Problem
			require.ErrorAs(t, err, &p)
			require.Equal(t, tc.status, p.Status)
			reqs := f.requests()
			require.Len(t, reqs, tc.attempts)
			for _, r := range reqs {
				require.Equal(t, "same", r.IdempotencyKey)
			}
		})
	}
	t.Run("a cancelled context stops retrying", func(t *testing.T) {
		f := newFakeServer(t, testToken, fixed(reply{status: 503, body: `{"title":"x","status":503}`}))
		answered := make(chan struct{}, 1)
		c, err := NewClient(f.URL, testToken, &http.Client{Transport: closeSignal{answered}})
		require.NoError(t, err)
		c.RetryWait = time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { _, err := c.Policy(ctx, ""); done <- err }()
		<-answered // the first answer has been read: the client now waits to retry
		cancel()
		var p *Problem
		require.ErrorAs(t, <-done, &p, "the last answer is returned")
		require.Len(t, f.requests(), 1)
	})
}

// closeSignal is a transport that signals when an answer's body is closed.
type closeSignal struct{ closed chan<- struct{} }

func (s closeSignal) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = signalBody{resp.Body, s.closed}
	}
	return resp, err
}

type signalBody struct {
	io.ReadCloser
	closed chan<- struct{}
}

func (b signalBody) Close() error {
	err := b.ReadCloser.Close()
	b.closed <- struct{}{}
	return err
}

func TestClientNetworkError(t *testing.T) {
	f := newFakeServer(t, testToken, nil)
	c := newTestClient(t, f)
	f.Close()
	_, err := c.Policy(context.Background(), "")
	var ne *NetworkError
	require.ErrorAs(t, err, &ne)
	require.Contains(t, ne.Error(), "cannot reach the server at "+f.URL)
}

func TestNewClientRefuses(t *testing.T) {
	for _, tc := range []struct{ server, token, want string }{
		{"ftp://h", "t", "is not an http:// or https:// URL"},
		{"http://", "t", "is not an http:// or https:// URL"},
		{"http://h#x", "t", "must not have a query or fragment"},
		{"http://h", "", "the token is empty"},
		{"http://h", "Bearer " + testToken, "contains spaces"},
		{"http://h", testToken + "\n", "control characters"},
	} {
		_, err := NewClient(tc.server, tc.token, nil)
		require.ErrorContains(t, err, tc.want)
		require.NotContains(t, err.Error(), testToken)
	}
	c, err := NewClient("https://u:pw@h/prefix/", testToken, nil)
	require.NoError(t, err)
	require.Equal(t, "https://u:xxxxx@h/prefix", c.Server())
}

func TestAnswerDecoding(t *testing.T) {
	t.Run("position and cursor: string, number or null", func(t *testing.T) {
		var a struct {
			P1, P2, P3 Position
			C          Cursor
		}
		require.NoError(t, json.Unmarshal([]byte(`{"P1":"12.13","P2":42,"P3":null,"C":7}`), &a))
		require.Equal(t, Position("12.13"), a.P1)
		require.Equal(t, Position("42"), a.P2)
		require.Equal(t, Position(""), a.P3)
		require.Equal(t, Cursor("7"), a.C)
		require.Error(t, json.Unmarshal([]byte(`{"P1":{}}`), &a))
	})
	t.Run("durations", func(t *testing.T) {
		for in, want := range map[string]time.Duration{
			`"168h0m0s"`: 168 * time.Hour, `"P7D"`: 7 * 24 * time.Hour, `"P2W"`: 14 * 24 * time.Hour,
			`"PT1H30M"`: 90 * time.Minute, `"P1DT12H"`: 36 * time.Hour, `"PT0.5S"`: 500 * time.Millisecond,
			`900`: 15 * time.Minute, `null`: 0,
		} {
			var d Duration
			require.NoError(t, json.Unmarshal([]byte(in), &d), in)
			require.Equal(t, want, time.Duration(d), in)
		}
		for _, bad := range []string{`"P"`, `"PT"`, `"P1DT"`, `"PT1HT1M"`, `"P1H"`, `"P-1D"`, `"T1H"`, `"7 days"`, `true`} {
			var d Duration
			require.Error(t, json.Unmarshal([]byte(bad), &d), bad)
		}
	})
	t.Run("event refs", func(t *testing.T) {
		var in []*EventRef
		require.NoError(t, json.Unmarshal([]byte(`[null,"e1",{"id":"e2","type":"t","actor_id":"a","actor_role":"worker"},{"event_id":"e3","actor":"b"}]`), &in))
		require.Equal(t, []*EventRef{nil, {EventID: "e1"}, {EventID: "e2", Type: "t", Actor: "a", ActorRole: "worker"},
			{EventID: "e3", Actor: "b"}}, in)
		require.Equal(t, "-", shortEvent(in[0]))
		require.Equal(t, "e1", shortEvent(in[1]))
		require.Equal(t, "t by a (worker)", shortEvent(in[2]))
	})
	t.Run("first broken: object or seq", func(t *testing.T) {
		var v struct{ A, B *Broken }
		require.NoError(t, json.Unmarshal([]byte(`{"A":{"seq":5,"reason":"gap"},"B":7}`), &v))
		require.Equal(t, &Broken{Seq: 5, Reason: "gap"}, v.A)
		require.Equal(t, &Broken{Seq: 7}, v.B)
	})
	t.Run("security log entries: the server's names and alternatives", func(t *testing.T) {
		var l SecurityLog
		require.NoError(t, json.Unmarshal([]byte(`{"entries":[{"at":"2026-01-02T00:00:00Z","actor_id":"w-2","detail":"d"},`+
			`{"when":"2026-01-01T00:00:00Z","actor":"w-1","reason":"not allocated","command":"grant"}],"next":"4","position":"3"}`), &l))
		require.Equal(t, []SecurityEntry{{At: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Actor: "w-2", Detail: "d"},
			{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Actor: "w-1", Command: "grant", Detail: "not allocated"}}, l.Entries)
		require.Equal(t, Cursor("4"), l.Next)
		require.Equal(t, Position("3"), l.Position)
	})
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour: "7 days", time.Hour + 30*time.Minute: "1 hour 30 minutes", time.Second: "1 second",
		1500 * time.Millisecond: "1 second 500ms", 0: "0s",
	} {
		require.Equal(t, want, humanDuration(d))
	}
}

func TestCellCleansControlCharacters(t *testing.T) {
	require.Equal(t, "a b c", cell("a\tb\nc"))
	require.Equal(t, "-", cell(""))
	require.Equal(t, "x [31my", cell("x\x1b[31my"))
}
