package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
)

// The ledger's routes (R23). They take no consistency token: a checkpoint
// or a proof names its own tree size. Check what they answer with the
// ledger's public key (golang.org/x/mod/sumdb/note and tlog), trusting
// nothing the server says.

func (c *Client) ledger(ctx context.Context, path string, v url.Values, text bool, out any, opts []CallOption) error {
	r := request{method: http.MethodGet, path: path, query: v}
	if text {
		r.raw = "text/plain"
	}
	return c.do(ctx, r, out, opts)
}

// LedgerCheckpoint is GET /v1/ledger/checkpoint: the ledger's current
// signed checkpoint, a signed note, as sent.
func (c *Client) LedgerCheckpoint(ctx context.Context, opts ...CallOption) ([]byte, error) {
	var b []byte
	return b, c.ledger(ctx, "/v1/ledger/checkpoint", nil, true, &b, opts)
}

// LedgerPublicKey is GET /v1/ledger/public-key: the verifier key of the
// ledger's checkpoints, one line, as sent.
func (c *Client) LedgerPublicKey(ctx context.Context, opts ...CallOption) ([]byte, error) {
	var b []byte
	return b, c.ledger(ctx, "/v1/ledger/public-key", nil, true, &b, opts)
}

// InclusionQuery names the event whose inclusion to prove: by Event or by
// Position (a position token; exactly one), in the tree of TreeSize leaves
// (0: the current checkpoint's).
type InclusionQuery struct {
	Event    uuid.UUID
	Position string
	TreeSize int64
}

// InclusionProof is GET /v1/ledger/proof/inclusion.
func (c *Client) InclusionProof(ctx context.Context, q InclusionQuery, opts ...CallOption) (api.InclusionProof, error) {
	v := url.Values{}
	if q.Event != uuid.Nil {
		v.Set("event_id", q.Event.String())
	} else {
		v.Set("position", q.Position)
	}
	if q.TreeSize > 0 {
		v.Set("tree_size", strconv.FormatInt(q.TreeSize, 10))
	}
	var a api.InclusionProof
	return a, c.ledger(ctx, "/v1/ledger/proof/inclusion", v, false, &a, opts)
}

// ConsistencyProof is GET /v1/ledger/proof/consistency from the tree of
// from leaves to the tree of to leaves (0: the current checkpoint's size).
func (c *Client) ConsistencyProof(ctx context.Context, from, to int64, opts ...CallOption) (api.ConsistencyProof, error) {
	v := url.Values{"from_size": {strconv.FormatInt(from, 10)}}
	if to > 0 {
		v.Set("to_size", strconv.FormatInt(to, 10))
	}
	var a api.ConsistencyProof
	return a, c.ledger(ctx, "/v1/ledger/proof/consistency", v, false, &a, opts)
}

// Health is GET /healthz; Ready is GET /readyz (ErrStale while the engine
// catches up, ErrLedgerMismatch after the ledger found the log tampered
// with).
func (c *Client) Health(ctx context.Context) (api.Status, error) {
	var a api.Status
	return a, c.do(ctx, request{method: http.MethodGet, path: "/healthz"}, &a, nil)
}

// Ready is GET /readyz.
func (c *Client) Ready(ctx context.Context) (api.Status, error) {
	var a api.Status
	return a, c.do(ctx, request{method: http.MethodGet, path: "/readyz"}, &a, nil)
}
