package main

// The end-to-end harness's clients of the API: a token per role and
// subject, answers decoded into the wire types (see e2e_server_test.go).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
)

// ---- clients ----

// e2eClient calls the API with a token of one role and subject.
type e2eClient struct {
	s     *e2eServer
	role  domain.Role
	sub   string
	token string
}

// as returns a client with a one-hour token for sub in role, signed with
// the data directory's secret.
func (s *e2eServer) as(role domain.Role, sub string) *e2eClient {
	s.t.Helper()
	tok, err := auth.Mint(s.secret, auth.Claims{Subject: sub, Role: role, TTL: time.Hour}, time.Now())
	require.NoError(s.t, err)
	return &e2eClient{s: s, role: role, sub: sub, token: tok}
}

// anonymous returns a client without a token.
func (s *e2eServer) anonymous() *e2eClient { return &e2eClient{s: s} }

// e2eResp is one finished answer.
type e2eResp struct {
	t      *testing.T
	method string
	path   string
	status int
	header http.Header
	body   []byte
}

func (r *e2eResp) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.method, r.path, r.status, bytes.TrimSpace(r.body))
}

// json decodes the body as an object.
func (r *e2eResp) json() map[string]any {
	r.t.Helper()
	var m map[string]any
	require.NoError(r.t, json.Unmarshal(r.body, &m), r.String())
	return m
}

// decode decodes the body into v.
func (r *e2eResp) decode(v any) {
	r.t.Helper()
	require.NoError(r.t, json.Unmarshal(r.body, v), r.String())
}

// e2eProblem is an RFC 9457 answer of the API.
type e2eProblem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// problem requires a problem+json answer with status and code, and
// returns it.
func (r *e2eResp) problem(status int, code string) e2eProblem {
	r.t.Helper()
	require.Equal(r.t, status, r.status, r.String())
	require.Equal(r.t, "application/problem+json", r.header.Get("Content-Type"), r.String())
	var p e2eProblem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(r.t, dec.Decode(&p), r.String())
	require.Equal(r.t, code, p.Code, r.String())
	require.Equal(r.t, status, p.Status, r.String())
	require.Equal(r.t, "urn:accessledger:problem:"+code, p.Type, r.String())
	require.NotEmpty(r.t, p.Title, r.String())
	require.NotEmpty(r.t, p.Detail, r.String())
	return p
}

// do sends a request. body is nil (none), a string or []byte (sent as is,
// Content-Type application/json), or a value encoded as JSON. headers are
// name, value pairs; a "Content-Type" pair replaces the default.
func (c *e2eClient) do(method, path string, body any, headers ...string) *e2eResp {
	t := c.s.t
	t.Helper()
	r, err := c.try(method, path, body, headers...)
	require.NoError(t, err, "%s %s", method, path)
	return r
}

// try is do that returns the transport's error instead of failing.
func (c *e2eClient) try(method, path string, body any, headers ...string) (*e2eResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.s.url+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	return &e2eResp{t: c.s.t, method: method, path: path, status: res.StatusCode, header: res.Header, body: b}, nil
}

// must sends a request and requires status want; it returns the decoded
// JSON object.
func (c *e2eClient) must(method, path string, body any, want int) map[string]any {
	c.s.t.Helper()
	r := c.do(method, path, body)
	require.Equal(c.s.t, want, r.status, r.String())
	return r.json()
}
