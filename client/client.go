// Package client is the Go client of accessledger's HTTP API, for portal
// backends and workers' tools: one typed method per endpoint of
// docs/openapi.yaml, sending and reading the wire types of package api
// (generated from that document, as the server's are).
//
// What it does for the caller:
//
//   - Consistency tokens. Every command answers the position of its last
//     event; the client keeps the highest it has seen and sends it as
//     min_position with every later query (unless the call gives its own
//     with MinPosition, or the client was made with WithoutTokens), so a
//     portal reads its own writes from any replica.
//   - Retries. A request that got no answer, or got 502, 503 or 504, is
//     sent again (at most MaxAttempts times, with exponential backoff)
//     with the same Idempotency-Key: a command is never carried out twice.
//     Every command gets a key; give your own with IdempotencyKey to retry
//     across processes. A 503 "ledger_mismatch" is never retried.
//   - Typed errors. An error answer is a *Problem; errors.Is matches it
//     against ErrInvalid, ErrUnauthenticated, ErrForbidden, ErrNotFound,
//     ErrConflict, ErrAlreadyRegistered, ErrStale, ErrTooLarge,
//     ErrInternal and ErrLedgerMismatch by its code. A request that got
//     no answer is a *NetworkError.
//   - The watch stream. Watch delivers access changes and, after a dropped
//     connection, reconnects and resumes after the last change it
//     delivered; it fails with ErrGone when the server no longer holds the
//     changes after that position.
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/accessledger/accessledger/domain/eventlog"
)

// MaxAnswerBytes bounds how much of an answer the client reads.
const MaxAnswerBytes = 64 << 20

// Defaults of a Client.
const (
	DefaultMaxAttempts = 3
	DefaultRetryWait   = 250 * time.Millisecond
)

// Client is a client of one accessledger server. Set its exported fields
// before its first request.
type Client struct {
	base   *url.URL
	token  string
	http   *http.Client
	tokens bool // carry consistency tokens

	// MaxAttempts is how many times a request is sent at most (default
	// DefaultMaxAttempts).
	MaxAttempts int
	// RetryWait is the pause before the second attempt; it grows by half
	// again for each further attempt, with jitter (default
	// DefaultRetryWait; 0 retries at once).
	RetryWait time.Duration
	// UserAgent is sent with every request.
	UserAgent string

	mu   sync.Mutex
	last eventlog.Position // the highest position a command answered
}

// Option configures a Client made by New.
type Option func(*Client)

// WithHTTPClient sends the requests with hc (default: a client without a
// timeout of its own; bound the requests with their ctx).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithoutTokens stops the client carrying consistency tokens: queries
// then send min_position only when the call gives one.
func WithoutTokens() Option { return func(c *Client) { c.tokens = false } }

// New returns a client of the server at base (http or https, with an
// optional path prefix) that authenticates with the bearer token.
func New(base, token string, opts ...Option) (*Client, error) {
	u, err := parseServerURL(base)
	if err != nil {
		return nil, err
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	c := &Client{base: u, token: token, http: &http.Client{}, tokens: true,
		MaxAttempts: DefaultMaxAttempts, RetryWait: DefaultRetryWait, UserAgent: "accessledger-client"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// parseServerURL checks a server address: an absolute http(s) URL without
// query or fragment.
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)", RedactURL(s))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server %q must not have a query or fragment", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// RedactURL hides a password in a URL that may not even parse.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "xxxxx" + s[i:]
		}
	}
	return s
}

// checkToken refuses a token that cannot be a bearer token, without ever
// repeating it.
func checkToken(token string) error {
	if token == "" {
		return errors.New("the token is empty")
	}
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			return errors.New(`the token contains spaces or control characters (give the token alone, without "Bearer ")`)
		}
	}
	return nil
}

// Server is the server's address, with any password redacted.
func (c *Client) Server() string { return c.base.Redacted() }

// LastPosition is the highest position a command answered through this
// client ("" before the first): the consistency token its queries carry.
func (c *Client) LastPosition() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.IsZero() {
		return ""
	}
	return c.last.String()
}

// saw records a command's position token.
func (c *Client) saw(token string) {
	p, err := eventlog.ParsePosition(token)
	if err != nil || p.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.Before(p) {
		c.last = p
	}
}

// ---------------------------------------------------------------------------
// Calls

// CallOption changes one call.
type CallOption func(*call)

type call struct {
	key      string
	min      string
	minGiven bool
	raw      *[]byte
	replayed *bool
	timeout  time.Duration
}

// IdempotencyKey sends key as the command's Idempotency-Key (default: a
// new random key per call, reused by the call's retries).
func IdempotencyKey(key string) CallOption { return func(c *call) { c.key = key } }

// MinPosition makes a query wait for position token p ("" for none),
// instead of the token the client carries.
func MinPosition(p string) CallOption { return func(c *call) { c.min, c.minGiven = p, true } }

// Raw keeps the answer's bytes, exactly as the server sent them, in *b.
func Raw(b *[]byte) CallOption { return func(c *call) { c.raw = b } }

// Replayed sets *r when the server answered a command with the stored
// answer of an earlier request with the same Idempotency-Key (header
// Idempotent-Replayed: true): the command was not carried out again.
func Replayed(r *bool) CallOption { return func(c *call) { c.replayed = r } }

// Timeout names the deadline the caller put on ctx, for the text of a
// *NetworkError that it ends ("no answer within 5s").
func Timeout(d time.Duration) CallOption { return func(c *call) { c.timeout = d } }

func options(opts []CallOption) call {
	var c call
	for _, o := range opts {
		o(&c)
	}
	return c
}

// request is one request to send: a method, a path below the server's
// base, query parameters and a JSON body (nil: none).
type request struct {
	method string
	path   string
	query  url.Values
	body   any
	// command: sends an Idempotency-Key and records the answer's position;
	// query: sends the consistency token.
	command, query_ bool
	// raw: the media type of an answer kept as sent (text/plain for the
	// ledger's, application/zip for a CSV export); "" for JSON.
	raw string
}

// do sends r (with retries, as the package documentation says) and
// decodes a 2xx JSON answer into out (or, for a raw answer, keeps it in
// *out when out is a *[]byte).
func (c *Client) do(ctx context.Context, r request, out any, opts []CallOption) error {
	o := options(opts)
	u := *c.base
	u.Path = c.base.Path + r.path
	q := r.query
	if r.query_ {
		if min := c.minPosition(o); min != "" {
			if q == nil {
				q = url.Values{}
			}
			q.Set("min_position", min)
		}
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("encode the request: %w", err)
		}
	}
	var key string // commands only
	if r.command {
		if key = o.key; key == "" {
			key = newKey()
		}
	}
	policy := backoff.NewExponentialBackOff()
	policy.InitialInterval, policy.MaxInterval = c.RetryWait, 10*c.RetryWait
	if c.RetryWait <= 0 {
		policy.InitialInterval, policy.MaxInterval, policy.RandomizationFactor = time.Nanosecond, time.Nanosecond, 0
	}
	var last error // the last attempt's error, which a cancelled ctx must not hide
	status := 0    // the last answer's status
	data, err := backoff.Retry(ctx, func() ([]byte, error) {
		data, err := c.once(ctx, r, u.String(), key, payload, o, &status)
		last = err
		var perm *backoff.PermanentError
		if errors.As(err, &perm) {
			last = perm.Unwrap()
		}
		return data, err
	}, backoff.WithBackOff(policy), backoff.WithMaxTries(uint(max(c.MaxAttempts, 1))), backoff.WithMaxElapsedTime(0))
	if err != nil {
		if last != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return last
		}
		return err
	}
	if o.raw != nil {
		*o.raw = data
	}
	if r.raw != "" {
		if b, ok := out.(*[]byte); ok {
			*b = data
		}
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unreadable answer from %s %s (status %d): %w", r.method, RedactURL(u.String()), status, err)
	}
	if r.command {
		var pos struct {
			Position string `json:"position"`
		}
		if json.Unmarshal(data, &pos) == nil {
			c.saw(pos.Position)
		}
	}
	return nil
}

// minPosition is the consistency token a query of call o sends: the
// call's own (MinPosition), else the client's (unless WithoutTokens); ""
// for none.
func (c *Client) minPosition(o call) string {
	if o.minGiven || !c.tokens {
		return o.min
	}
	return c.LastPosition()
}

// once sends one attempt. Its error is wrapped with backoff.Permanent when
// another attempt cannot help.
func (c *Client) once(ctx context.Context, r request, target, key string, payload []byte, o call, status *int) ([]byte, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, backoff.Permanent(fmt.Errorf("build the request: %w", err))
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if r.raw != "" {
		req.Header.Set("Accept", r.raw+", application/problem+json")
	} else {
		req.Header.Set("Accept", "application/json, application/problem+json")
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &NetworkError{Server: c.Server(), Timeout: o.timeout, Err: err}
	}
	defer resp.Body.Close()
	*status = resp.StatusCode
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, &NetworkError{Server: c.Server(), Timeout: o.timeout, Err: err}
	}
	if len(data) > MaxAnswerBytes {
		return nil, backoff.Permanent(fmt.Errorf("the answer of %s %s is larger than %d bytes", r.method, RedactURL(target), MaxAnswerBytes))
	}
	if resp.StatusCode >= 400 {
		p := problemOf(resp, data)
		retry := resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable ||
			resp.StatusCode == http.StatusGatewayTimeout
		if !retry || p.Code == codeLedgerMismatch { // a tampered log does not heal by retrying
			return nil, backoff.Permanent(p)
		}
		return nil, p
	}
	if r.raw != "" {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != r.raw {
			return nil, backoff.Permanent(fmt.Errorf("unreadable answer from %s %s (status %d): %s, not %s", r.method,
				RedactURL(target), resp.StatusCode, firstNonEmpty(mt, "no content type"), r.raw))
		}
	}
	if o.replayed != nil {
		*o.replayed = strings.EqualFold(resp.Header.Get("Idempotent-Replayed"), "true")
	}
	return data, nil
}

// newKey returns a random Idempotency-Key.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ---------------------------------------------------------------------------
// Errors

// The problem codes of the API; errors.Is(err, ErrX) matches a *Problem
// with that code.
var (
	ErrInvalid           = errors.New("invalid")
	ErrUnauthenticated   = errors.New("unauthenticated")
	ErrForbidden         = errors.New("forbidden")
	ErrNotFound          = errors.New("not_found")
	ErrConflict          = errors.New("conflict")
	ErrAlreadyRegistered = errors.New("already_registered")
	ErrStale             = errors.New("stale")
	ErrTooLarge          = errors.New("too_large")
	ErrInternal          = errors.New("internal")
	ErrLedgerMismatch    = errors.New("ledger_mismatch")
)

const codeLedgerMismatch = "ledger_mismatch"

var byCode = map[string]error{}

func init() {
	for _, e := range []error{ErrInvalid, ErrUnauthenticated, ErrForbidden, ErrNotFound, ErrConflict,
		ErrAlreadyRegistered, ErrStale, ErrTooLarge, ErrInternal, ErrLedgerMismatch} {
		byCode[e.Error()] = e
	}
}

// Problem is an error answer: the server's RFC 9457 problem document, or,
// when the body is not one (a proxy's page), a Problem made from the
// status. Code is one of the API's problem codes (ErrX's text), or empty.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code,omitempty"`
	// Instance is the problem's optional instance URI.
	Instance string `json:"instance,omitempty"`
	// ChildID, on already_registered from RegisterChild, is the child that
	// holds the reference (R17).
	ChildID string `json:"child_id,omitempty"`
}

// Error renders the problem as "<title>: <detail> (code <code>, status
// <status>)", leaving out the parts the server did not send.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.Title)
	if p.Detail != "" && p.Detail != p.Title {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if p.Code != "" {
		fmt.Fprintf(&b, " (code %s, status %d)", p.Code, p.Status)
	} else {
		fmt.Fprintf(&b, " (status %d)", p.Status)
	}
	return b.String()
}

// Is matches the sentinel of p's code.
func (p *Problem) Is(target error) bool { return p.Code != "" && byCode[p.Code] == target }

// NetworkError is a request that got no answer from the server.
type NetworkError struct {
	Server  string        // the server's address (redacted)
	Timeout time.Duration // the deadline that passed, when it was a timeout and the call named it
	Err     error
}

func (e *NetworkError) Error() string {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		if e.Timeout > 0 {
			return fmt.Sprintf("no answer from %s within %s (see --timeout)", e.Server, e.Timeout)
		}
		return fmt.Sprintf("no answer from %s in time", e.Server)
	}
	if errors.Is(e.Err, context.Canceled) {
		return fmt.Sprintf("request to %s cancelled", e.Server)
	}
	err := e.Err
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Sprintf("cannot reach the server at %s: %v", e.Server, err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// problemOf reads an error answer: the problem document when the body is
// one, else a Problem made from the status and the start of the body.
func problemOf(resp *http.Response, data []byte) *Problem {
	var p Problem
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(data, &p) == nil && p.Title != "" {
		if p.Status == 0 {
			p.Status = resp.StatusCode
		}
		return &p
	}
	p = Problem{Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode}
	if p.Title == "" {
		p.Title = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	detail := strings.TrimSpace(string(data))
	if i := strings.IndexByte(detail, '\n'); i >= 0 {
		detail = strings.TrimSpace(detail[:i])
	}
	if len(detail) > 200 {
		detail = detail[:200] + "…"
	}
	if mt != "" && mt != "text/plain" {
		detail = "" // an HTML page says nothing useful on one line
	}
	p.Detail = detail
	return &p
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// CheckServer reports whether s is a server address New accepts: an
// absolute http(s) URL without query or fragment.
func CheckServer(s string) error {
	_, err := parseServerURL(s)
	return err
}

// CheckToken reports whether token can be a bearer token (never repeating
// it in the error).
func CheckToken(token string) error { return checkToken(token) }
