package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/accessledger/accessledger/api"
)

// Errors of Watch.
var (
	// ErrGone: the server no longer holds the changes after the position
	// the watch asked for (410). Read the full lists again (Children,
	// Viewers) and watch after their position.
	ErrGone = errors.New("the changes after this position are no longer kept")
	// ErrReset: the server ended the stream because the watcher fell too
	// far behind, or because the ledger found the log tampered with; the
	// error's text carries the server's detail.
	ErrReset = errors.New("the server reset the watch stream")
)

// maxEventBytes bounds one server-sent event's line.
const maxEventBytes = 1 << 20

// Watch follows the access changes (GET /v1/watch, the service's role)
// after position token after ("": from now on), calling handle for each
// change, in order, from one goroutine. When the connection drops, or the
// server shuts down, it reconnects with backoff and resumes after the last
// position it delivered completely (the changes of a position after it may
// be delivered again: handle must be idempotent, as a cache update is).
// It returns ctx.Err() when ctx is done, handle's error, an error wrapping
// ErrGone or ErrReset, or a *Problem the server will answer again (401,
// 403, 400).
func (c *Client) Watch(ctx context.Context, after string, handle func(api.WatchEvent) error) error {
	policy := backoff.NewExponentialBackOff()
	policy.InitialInterval, policy.MaxInterval = max(c.RetryWait, time.Millisecond), max(10*c.RetryWait, time.Second)
	for {
		delivered, err := c.watchOnce(ctx, after, func(e api.WatchEvent, id string) error {
			if err := handle(e); err != nil {
				return err
			}
			if id != "" {
				after = id
			}
			return nil
		})
		if delivered {
			policy.Reset()
		}
		var retry *retryable
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &retry):
		case err != nil:
			return err
		}
		t := time.NewTimer(policy.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// retryable marks a watch that ended in a way a reconnect can mend.
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// watchOnce runs one connection of a watch. It reports whether it
// delivered anything, and ends with a *retryable when a reconnect may help.
func (c *Client) watchOnce(ctx context.Context, after string, deliver func(api.WatchEvent, string) error) (bool, error) {
	u := *c.base
	u.Path = c.base.Path + "/v1/watch"
	if after != "" {
		u.RawQuery = url.Values{"after": {after}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, fmt.Errorf("build the request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream, application/problem+json")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, &retryable{&NetworkError{Server: c.Server(), Err: err}}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data := make([]byte, 64<<10)
		n, _ := resp.Body.Read(data)
		p := problemOf(resp, data[:n])
		switch {
		case resp.StatusCode == http.StatusGone:
			return false, fmt.Errorf("%w (after %s): %w", ErrGone, after, p)
		case resp.StatusCode >= 500 && p.Code != codeLedgerMismatch:
			return false, &retryable{p}
		}
		return false, p
	}
	delivered := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventBytes)
	var event, id string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			err := dispatch(event, id, data.String(), deliver)
			switch {
			case errors.Is(err, errShutdown):
				return delivered, &retryable{err}
			case err != nil:
				return delivered, err
			}
			delivered = delivered || event == "access"
			event, id = "", ""
			data.Reset()
		case strings.HasPrefix(line, ":"): // a comment: the greeting, heartbeats
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "id":
				id = value
			case "data":
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(value)
			}
		}
	}
	err = sc.Err()
	if err == nil {
		err = errors.New("the server closed the stream")
	}
	return delivered, &retryable{&NetworkError{Server: c.Server(), Err: err}}
}

// errShutdown is a stream the server ended as it stopped.
var errShutdown = errors.New("the server is shutting down")

// dispatch handles one complete server-sent event.
func dispatch(event, id, data string, deliver func(api.WatchEvent, string) error) error {
	switch event {
	case "access":
		var e api.WatchEvent
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("unreadable watch event %q: %w", data, err)
		}
		return deliver(e, id)
	case "reset":
		var r api.WatchReset
		_ = json.Unmarshal([]byte(data), &r)
		return fmt.Errorf("%w after position %s: %s", ErrReset, r.Position, r.Detail)
	case "shutdown":
		return errShutdown
	}
	return nil // an event this client does not know, or a lone retry: line
}
