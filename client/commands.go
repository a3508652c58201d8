package client

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
)

// The commands (docs/openapi.yaml, tag commands). Each sends an
// Idempotency-Key (IdempotencyKey, or a new one per call that its retries
// reuse), and its answer's position becomes the consistency token of the
// client's later queries.

func (c *Client) command(ctx context.Context, method, path string, body, out any, opts []CallOption) error {
	return c.do(ctx, request{method: method, path: path, body: body, command: true}, out, opts)
}

// rfc3339 writes t as the API reads times: RFC 3339 in UTC.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// RegisterChild is POST /v1/children.
func (c *Client) RegisterChild(ctx context.Context, reference string, opts ...CallOption) (api.ChildRegistered, error) {
	var a api.ChildRegistered
	return a, c.command(ctx, http.MethodPost, "/v1/children", api.RegisterChildRequest{Reference: reference}, &a, opts)
}

// RegisterChildUntil is POST /v1/children with a retention date (R22): the
// child's record is erased when it comes (zero: none, as RegisterChild).
func (c *Client) RegisterChildUntil(ctx context.Context, reference string, retainUntil time.Time, opts ...CallOption) (api.ChildRegistered, error) {
	b := api.RegisterChildRequest{Reference: reference}
	if !retainUntil.IsZero() {
		u := rfc3339(retainUntil)
		b.RetainUntil = &u
	}
	var a api.ChildRegistered
	return a, c.command(ctx, http.MethodPost, "/v1/children", b, &a, opts)
}

// SetRetention is PUT /v1/children/{child_id}/retention (R22).
func (c *Client) SetRetention(ctx context.Context, child uuid.UUID, retainUntil time.Time, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPut, "/v1/children/"+child.String()+"/retention",
		api.SetRetentionRequest{RetainUntil: rfc3339(retainUntil), Reason: reason}, &a, opts)
}

// SetPolicy is PUT /v1/policy (R25): the settings req gives (nil ones are
// kept), in whole seconds, and an optional reason. A manager only.
func (c *Client) SetPolicy(ctx context.Context, req api.SetPolicyRequest, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPut, "/v1/policy", req, &a, opts)
}

// AllocateWorker is POST /v1/children/{child_id}/allocation.
func (c *Client) AllocateWorker(ctx context.Context, child uuid.UUID, workerID string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/allocation",
		api.AllocateWorkerRequest{WorkerID: workerID}, &a, opts)
}

// Invite is POST /v1/invitations.
func (c *Client) Invite(ctx context.Context, email string, kind api.AccountKind, opts ...CallOption) (api.Invited, error) {
	var a api.Invited
	return a, c.command(ctx, http.MethodPost, "/v1/invitations", api.InviteRequest{Email: email, Kind: kind}, &a, opts)
}

// Activate is POST /v1/accounts/{account_id}/activation (the service,
// when an invitee signs in with their identity).
func (c *Client) Activate(ctx context.Context, account uuid.UUID, identitySubject, email string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/activation",
		api.ActivateRequest{IdentitySubject: identitySubject, Email: email}, &a, opts)
}

// CloseAccount is POST /v1/accounts/{account_id}/close.
func (c *Client) CloseAccount(ctx context.Context, account uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/close", api.ReasonRequest{Reason: reason}, &a, opts)
}

// CancelInvitation is POST /v1/accounts/{account_id}/invitation/cancel
// (worker, R18).
func (c *Client) CancelInvitation(ctx context.Context, account uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/invitation/cancel", api.ReasonRequest{Reason: reason}, &a, opts)
}

// ReopenAccount is POST /v1/accounts/{account_id}/reopen (portals team,
// R18).
func (c *Client) ReopenAccount(ctx context.Context, account uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/reopen", api.ReasonRequest{Reason: reason}, &a, opts)
}

// RequestEmailChange is POST /v1/accounts/{account_id}/email-change-requests
// (worker, R18).
func (c *Client) RequestEmailChange(ctx context.Context, account uuid.UUID, email, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/email-change-requests",
		api.EmailChangeRequest{Email: email, Reason: reason}, &a, opts)
}

// ChangeEmail is PUT /v1/accounts/{account_id}/email (portals team, R18).
func (c *Client) ChangeEmail(ctx context.Context, account uuid.UUID, email string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPut, "/v1/accounts/"+account.String()+"/email", api.EmailRequest{Email: email}, &a, opts)
}

// CancelPlacement is POST
// /v1/children/{child_id}/placements/{placement_id}/cancel (the child's
// worker, R18).
func (c *Client) CancelPlacement(ctx context.Context, child, placement uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements/"+placement.String()+"/cancel",
		api.ReasonRequest{Reason: reason}, &a, opts)
}

// EraseAccount is POST /v1/accounts/{account_id}/erasure (dpo, R22).
func (c *Client) EraseAccount(ctx context.Context, account uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/erasure", api.ReasonRequest{Reason: reason}, &a, opts)
}

// EraseChild is POST /v1/children/{child_id}/erasure (dpo, R22).
func (c *Client) EraseChild(ctx context.Context, child uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/erasure", api.ReasonRequest{Reason: reason}, &a, opts)
}

// StartPlacement is POST /v1/children/{child_id}/placements.
func (c *Client) StartPlacement(ctx context.Context, child, carer uuid.UUID, startedAt time.Time, opts ...CallOption) (api.PlacementStarted, error) {
	var a api.PlacementStarted
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements",
		api.StartPlacementRequest{CarerAccountID: carer.String(), StartedAt: rfc3339(startedAt)}, &a, opts)
}

// EndPlacement is POST /v1/children/{child_id}/placements/{placement_id}/end
// (reason may be empty).
func (c *Client) EndPlacement(ctx context.Context, child, placement uuid.UUID, endedAt time.Time, reason string, opts ...CallOption) (api.PlacementEnded, error) {
	var a api.PlacementEnded
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements/"+placement.String()+"/end",
		api.EndPlacementRequest{EndedAt: rfc3339(endedAt), Reason: reason}, &a, opts)
}

// EndGrace is POST /v1/children/{child_id}/placements/{placement_id}/end-grace (R6).
func (c *Client) EndGrace(ctx context.Context, child, placement uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/placements/"+placement.String()+"/end-grace",
		api.ReasonRequest{Reason: reason}, &a, opts)
}

// Grant is POST /v1/children/{child_id}/grants (R7): an open-ended grant,
// due for review at the answer's review_by (R19).
func (c *Client) Grant(ctx context.Context, child, account uuid.UUID, relationship api.GrantRequestRelationship,
	permissions []api.GrantRequestPermissions, reason string, opts ...CallOption) (api.GrantMade, error) {
	return c.GrantUntil(ctx, child, account, relationship, permissions, reason, time.Time{}, opts...)
}

// GrantUntil is Grant of a grant that ends by itself at expiresAt (R19);
// a zero expiresAt makes it open-ended.
func (c *Client) GrantUntil(ctx context.Context, child, account uuid.UUID, relationship api.GrantRequestRelationship,
	permissions []api.GrantRequestPermissions, reason string, expiresAt time.Time, opts ...CallOption) (api.GrantMade, error) {
	req := api.GrantRequest{AccountID: account.String(), Relationship: relationship, Permissions: permissions, Reason: reason}
	if !expiresAt.IsZero() {
		s := rfc3339(expiresAt)
		req.ExpiresAt = &s
	}
	var a api.GrantMade
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/grants", req, &a, opts)
}

// ReviewGrant is POST /v1/children/{child_id}/grants/{account_id}/review
// (R19): the child's worker confirms an open-ended grant after its review.
func (c *Client) ReviewGrant(ctx context.Context, child, account uuid.UUID, reason string, opts ...CallOption) (api.GrantReviewed, error) {
	var a api.GrantReviewed
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/grants/"+account.String()+"/review",
		api.ReasonRequest{Reason: reason}, &a, opts)
}

// Revoke is POST /v1/children/{child_id}/grants/{account_id}/revoke.
func (c *Client) Revoke(ctx context.Context, child, account uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/children/"+child.String()+"/grants/"+account.String()+"/revoke",
		api.ReasonRequest{Reason: reason}, &a, opts)
}

// RequestPhoneReset is POST /v1/accounts/{account_id}/phone-reset-requests (R11).
func (c *Client) RequestPhoneReset(ctx context.Context, account uuid.UUID, reason string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/phone-reset-requests",
		api.ReasonRequest{Reason: reason}, &a, opts)
}

// ClearPhone is POST /v1/accounts/{account_id}/phone/clear (R11).
func (c *Client) ClearPhone(ctx context.Context, account uuid.UUID, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPost, "/v1/accounts/"+account.String()+"/phone/clear", api.EmptyRequest{}, &a, opts)
}

// EnrolPhone is PUT /v1/accounts/{account_id}/phone (the service, R11).
func (c *Client) EnrolPhone(ctx context.Context, account uuid.UUID, phone string, opts ...CallOption) (api.PositionAnswer, error) {
	var a api.PositionAnswer
	return a, c.command(ctx, http.MethodPut, "/v1/accounts/"+account.String()+"/phone", api.EnrolPhoneRequest{Phone: phone}, &a, opts)
}
