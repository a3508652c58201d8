package accessctl

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// The client package against the fake server: what accessctl relies on
// (problems, retries with one key, network errors, refused settings).

func newTestClient(t *testing.T, f *fakeServer) *client.Client {
	t.Helper()
	c, err := client.New(f.URL, testToken)
	require.NoError(t, err)
	c.RetryWait = 0
	return c
}

func TestClientProblem(t *testing.T) {
	f := newFakeServer(t, testToken, fixed(reply{status: 409,
		body: `{"type":"https://x/conflict","title":"Conflict","status":409,"detail":"the placement has already ended","code":"conflict","instance":"/r/1"}`}))
	c := newTestClient(t, f)
	_, err := c.EndPlacement(context.Background(), uuid.MustParse(childID), uuid.MustParse(placementID),
		time.Date(2026, 2, 1, 18, 0, 0, 0, time.FixedZone("CET", 3600)), "r", client.IdempotencyKey("k"))
	var p *client.Problem
	require.ErrorAs(t, err, &p)
	require.ErrorIs(t, err, client.ErrConflict)
	require.Equal(t, client.Problem{Type: "https://x/conflict", Title: "Conflict", Status: 409, Detail: "the placement has already ended",
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
			_, err := c.ClearPhone(context.Background(), uuid.MustParse(accountID), client.IdempotencyKey("same"))
			var p *client.Problem
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
		c, err := client.New(f.URL, testToken, client.WithHTTPClient(&http.Client{Transport: closeSignal{answered}}))
		require.NoError(t, err)
		c.RetryWait = time.Hour
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { _, err := c.Policy(ctx); done <- err }()
		<-answered // the first answer has been read: the client now waits to retry
		cancel()
		var p *client.Problem
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
	_, err := c.Policy(context.Background())
	var ne *client.NetworkError
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
		_, err := client.New(tc.server, tc.token)
		require.ErrorContains(t, err, tc.want)
		require.NotContains(t, err.Error(), testToken)
	}
	c, err := client.New("https://u:pw@h/prefix/", testToken)
	require.NoError(t, err)
	require.Equal(t, "https://u:xxxxx@h/prefix", c.Server())
}

func TestShortEvent(t *testing.T) {
	id := uuid.MustParse(accountID)
	require.Equal(t, "-", shortEvent(nil))
	require.Equal(t, id.String(), shortEvent(&api.EventRef{EventID: id}))
	require.Equal(t, "t by a (worker)", shortEvent(&api.EventRef{EventID: id, Type: "t", Actor: "a", ActorRole: "worker"}))
	require.Equal(t, "t", shortEvent(&api.EventRef{EventID: id, Type: "t"}))
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
