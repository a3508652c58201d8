package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/accessledger/accessledger/adapters/idempotency"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/google/uuid"
)

// Header names of the idempotency protocol.
const (
	idempotencyKeyHeader = "Idempotency-Key"
	replayedHeader       = "Idempotent-Replayed"
)

// storeTimeout bounds the idempotency store's Finish and Abandon, which
// run even when the request was cancelled.
const storeTimeout = 10 * time.Second

// answer is a command's successful answer: its status and JSON body.
type answer struct {
	status int
	body   any
}

func ok(body any) answer      { return answer{status: http.StatusOK, body: body} }
func created(body any) answer { return answer{status: http.StatusCreated, body: body} }

func positionOf(p eventlog.Position) api.PositionAnswer {
	return api.PositionAnswer{Position: p.String()}
}

// fingerprint identifies a request for the idempotency store: method, path
// and the SHA-256 of the body's bytes.
func fingerprint(r *http.Request, body []byte) string {
	sum := sha256.Sum256(body)
	return r.Method + " " + r.URL.Path + " " + hex.EncodeToString(sum[:])
}

// runCommand is the one path of every command: read and decode the body
// into dst (a pointer to the command's body struct), call parse (path values
// and the body's ids and times; nil for none), run the Idempotency-Key
// protocol, call exec, and answer. With a key, the answer of a request that
// reached exec is stored (any 2xx or 4xx) and replayed to a retry of the
// same request with the header Idempotent-Replayed: true; a 5xx answer (or
// a panic) abandons the key, so a retry runs the command again. Requests
// refused before exec (body, key) touch no key.
func (s *server) runCommand(w http.ResponseWriter, r *http.Request, actor domain.Actor, name string, dst any,
	parse func() error, exec func(ctx context.Context, meta commands.Meta) (answer, error)) (err error) {
	defer func() {
		if err != nil {
			s.metrics.command(name, string(problemFor(err).Code))
		}
	}()
	raw, err := readBody(w, r)
	if err != nil {
		return err
	}
	if err := decodeBody(raw, dst); err != nil {
		return err
	}
	if parse != nil {
		if err := parse(); err != nil {
			return err
		}
	}
	keys := r.Header.Values(idempotencyKeyHeader)
	if len(keys) > 1 {
		return errInvalid("more than one %s header", idempotencyKeyHeader)
	}
	ctx := r.Context()
	meta := commands.Meta{Actor: actor, RequestID: requestID(ctx)}
	if len(keys) == 1 {
		key := keys[0]
		if err := idempotency.CheckKey(key); err != nil {
			return err
		}
		stored, err := s.cfg.Idempotency.Begin(ctx, actor.ID, key, fingerprint(r, raw))
		if err != nil {
			return err
		}
		if stored != nil {
			s.metrics.command(name, "replayed")
			w.Header().Set(replayedHeader, "true")
			w.Header().Set("Content-Type", stored.ContentType)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(stored.Status)
			_, _ = w.Write(stored.Body)
			return nil
		}
		meta.IdempotencyKey = key
		finished := false
		defer func() {
			if !finished { // a panic in exec
				s.abandon(r, actor, key)
			}
		}()
		resp := s.execCommand(w, r, name, meta, exec)
		finished = true
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		if resp.Status >= 500 {
			s.abandon(r, actor, key)
			return nil
		}
		if ferr := s.cfg.Idempotency.Finish(sctx, actor.ID, key, resp); ferr != nil {
			logger(ctx, s.log).ErrorContext(ctx, "cannot store the answer of an Idempotency-Key", "command", name, "error", ferr)
		}
		return nil
	}
	s.execCommand(w, r, name, meta, exec)
	return nil
}

// execCommand runs exec, writes its answer (or problem) and returns what it
// wrote.
func (s *server) execCommand(w http.ResponseWriter, r *http.Request, name string, meta commands.Meta,
	exec func(ctx context.Context, meta commands.Meta) (answer, error)) idempotency.Response {
	a, err := exec(r.Context(), meta)
	var body []byte
	if err == nil {
		body, err = json.Marshal(a.body)
	}
	if err != nil {
		status, pbody := s.writeProblem(w, r, err)
		s.metrics.command(name, string(problemFor(err).Code))
		return idempotency.Response{Status: status, ContentType: problemContentType, Body: pbody}
	}
	body = append(body, '\n')
	s.metrics.command(name, "ok")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(a.status)
	_, _ = w.Write(body)
	return idempotency.Response{Status: a.status, ContentType: "application/json", Body: body}
}

func (s *server) abandon(r *http.Request, actor domain.Actor, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	if err := s.cfg.Idempotency.Abandon(ctx, actor.ID, key); err != nil {
		logger(r.Context(), s.log).ErrorContext(r.Context(), "cannot abandon an Idempotency-Key", "error", err)
	}
}

// ---- the commands ----

func (s *server) registerChild(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.RegisterChildRequest
	var cmd commands.RegisterChild
	return s.runCommand(w, r, c.actor, commands.CommandRegisterChild, &b, func() (err error) {
		cmd.Reference = b.Reference
		if b.RetainUntil != nil {
			cmd.RetainUntil, err = parseTime("retain_until", *b.RetainUntil)
		}
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.RegisterChild(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return created(api.ChildRegistered{ChildID: res.ChildID, Position: res.Position.String()}), nil
	})
}

func (s *server) allocateWorker(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.AllocateWorkerRequest
	var cmd commands.AllocateWorker
	return s.runCommand(w, r, c.actor, commands.CommandAllocateWorker, &b, func() (err error) {
		cmd.ChildID, err = pathUUID(r, "child_id")
		cmd.WorkerID = b.WorkerID
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.AllocateWorker(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) invite(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.InviteRequest
	return s.runCommand(w, r, c.actor, commands.CommandInvite, &b, nil, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.Invite(ctx, m, commands.Invite{Email: b.Email, Kind: string(b.Kind)})
		if err != nil {
			return answer{}, err
		}
		return created(api.Invited{AccountID: res.AccountID, ExpiresAt: res.ExpiresAt.UTC(), Position: res.Position.String()}), nil
	})
}

func (s *server) activate(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.ActivateRequest
	var cmd commands.Activate
	return s.runCommand(w, r, c.actor, commands.CommandActivate, &b, func() (err error) {
		cmd.AccountID, err = pathUUID(r, "account_id")
		cmd.IdentitySubject, cmd.Email = b.IdentitySubject, b.Email
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.Activate(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

// reasonCommand runs a command whose body is only a reason, on the id in
// path parameter param, answering its position.
func (s *server) reasonCommand(w http.ResponseWriter, r *http.Request, c call, name, param string,
	run func(ctx context.Context, m commands.Meta, id uuid.UUID, reason string) (commands.Result, error)) error {
	var b api.ReasonRequest
	var id uuid.UUID
	return s.runCommand(w, r, c.actor, name, &b, func() (err error) {
		id, err = pathUUID(r, param)
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := run(ctx, m, id, b.Reason)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) closeAccount(w http.ResponseWriter, r *http.Request, c call) error {
	return s.reasonCommand(w, r, c, commands.CommandCloseAccount, "account_id",
		func(ctx context.Context, m commands.Meta, id uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.CloseAccount(ctx, m, commands.CloseAccount{AccountID: id, Reason: reason})
		})
}

func (s *server) eraseAccount(w http.ResponseWriter, r *http.Request, c call) error {
	return s.reasonCommand(w, r, c, commands.CommandEraseAccount, "account_id",
		func(ctx context.Context, m commands.Meta, id uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.EraseAccount(ctx, m, commands.EraseAccount{AccountID: id, Reason: reason})
		})
}

func (s *server) cancelInvitation(w http.ResponseWriter, r *http.Request, c call) error {
	return s.reasonCommand(w, r, c, commands.CommandCancelInvitation, "account_id",
		func(ctx context.Context, m commands.Meta, id uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.CancelInvitation(ctx, m, commands.CancelInvitation{AccountID: id, Reason: reason})
		})
}

func (s *server) reopenAccount(w http.ResponseWriter, r *http.Request, c call) error {
	return s.reasonCommand(w, r, c, commands.CommandReopenAccount, "account_id",
		func(ctx context.Context, m commands.Meta, id uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.ReopenAccount(ctx, m, commands.ReopenAccount{AccountID: id, Reason: reason})
		})
}

func (s *server) requestEmailChange(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.EmailChangeRequest
	var cmd commands.RequestEmailChange
	return s.runCommand(w, r, c.actor, commands.CommandRequestEmail, &b, func() (err error) {
		cmd.AccountID, err = pathUUID(r, "account_id")
		cmd.Email, cmd.Reason = b.Email, b.Reason
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.RequestEmailChange(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) changeEmail(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.EmailRequest
	var cmd commands.ChangeEmail
	return s.runCommand(w, r, c.actor, commands.CommandChangeEmail, &b, func() (err error) {
		cmd.AccountID, err = pathUUID(r, "account_id")
		cmd.Email = b.Email
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.ChangeEmail(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) cancelPlacement(w http.ResponseWriter, r *http.Request, c call) error {
	return s.placementReasonCommand(w, r, c, commands.CommandCancelPlacement,
		func(ctx context.Context, m commands.Meta, child, placement uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.CancelPlacement(ctx, m, commands.CancelPlacement{ChildID: child, PlacementID: placement, Reason: reason})
		})
}

func (s *server) eraseChild(w http.ResponseWriter, r *http.Request, c call) error {
	return s.reasonCommand(w, r, c, commands.CommandEraseChild, "child_id",
		func(ctx context.Context, m commands.Meta, id uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.EraseChild(ctx, m, commands.EraseChild{ChildID: id, Reason: reason})
		})
}

func (s *server) setRetention(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.SetRetentionRequest
	var cmd commands.SetRetention
	return s.runCommand(w, r, c.actor, commands.CommandSetRetention, &b, func() (err error) {
		if cmd.ChildID, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		cmd.Reason = b.Reason
		cmd.RetainUntil, err = parseTime("retain_until", b.RetainUntil)
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.SetRetention(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(api.PositionAnswer{Position: res.Position.String()}), nil
	})
}

// setPolicy is PUT /v1/policy (R25): some of the policy's settings, in
// whole seconds, and an optional reason.
func (s *server) setPolicy(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.SetPolicyRequest
	var cmd commands.SetPolicy
	return s.runCommand(w, r, c.actor, commands.CommandSetPolicy, &b, func() error {
		secs := func(v *int) *time.Duration {
			if v == nil {
				return nil
			}
			// Out of range values stay out of range (no overflow): the
			// policy refuses them.
			d := time.Duration(max(min(*v, int(domain.MaxPolicyPeriod/time.Second)+1), -1)) * time.Second
			return &d
		}
		cmd.Change = domain.PolicyChange{GracePeriod: secs(b.GracePeriod), InvitationTTL: secs(b.InvitationTTL),
			SessionIdleTimeout: secs(b.SessionIdleTimeout), SessionWarningAfter: secs(b.SessionWarningAfter),
			ClosedAccountRetention: secs(b.ClosedAccountRetention), ReviewPeriod: secs(b.ReviewPeriod)}
		cmd.Reason = b.Reason
		return nil
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.SetPolicy(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(api.PositionAnswer{Position: res.Position.String()}), nil
	})
}

func (s *server) startPlacement(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.StartPlacementRequest
	var cmd commands.StartPlacement
	return s.runCommand(w, r, c.actor, commands.CommandStartPlacement, &b, func() (err error) {
		if cmd.ChildID, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		if cmd.CarerAccountID, err = parseUUID("carer_account_id", b.CarerAccountID); err != nil {
			return err
		}
		cmd.StartedAt, err = parseTime("started_at", b.StartedAt)
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.StartPlacement(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return created(api.PlacementStarted{PlacementID: res.PlacementID, Position: res.Position.String()}), nil
	})
}

func (s *server) endPlacement(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.EndPlacementRequest
	var cmd commands.EndPlacement
	return s.runCommand(w, r, c.actor, commands.CommandEndPlacement, &b, func() (err error) {
		if cmd.ChildID, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		if cmd.PlacementID, err = pathUUID(r, "placement_id"); err != nil {
			return err
		}
		cmd.Reason = b.Reason
		cmd.EndedAt, err = parseTime("ended_at", b.EndedAt)
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.EndPlacement(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(api.PlacementEnded{GraceUntil: res.GraceUntil.UTC(), Position: res.Position.String()}), nil
	})
}

func (s *server) endGrace(w http.ResponseWriter, r *http.Request, c call) error {
	return s.placementReasonCommand(w, r, c, commands.CommandEndGrace,
		func(ctx context.Context, m commands.Meta, child, placement uuid.UUID, reason string) (commands.Result, error) {
			return s.cfg.Commands.EndGrace(ctx, m, commands.EndGrace{ChildID: child, PlacementID: placement, Reason: reason})
		})
}

// placementReasonCommand runs a command on the placement of the path
// whose body is only a reason, answering its position.
func (s *server) placementReasonCommand(w http.ResponseWriter, r *http.Request, c call, name string,
	run func(ctx context.Context, m commands.Meta, child, placement uuid.UUID, reason string) (commands.Result, error)) error {
	var b api.ReasonRequest
	var child, placement uuid.UUID
	return s.runCommand(w, r, c.actor, name, &b, func() (err error) {
		if child, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		placement, err = pathUUID(r, "placement_id")
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := run(ctx, m, child, placement, b.Reason)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) grant(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.GrantRequest
	var cmd commands.Grant
	return s.runCommand(w, r, c.actor, commands.CommandGrant, &b, func() (err error) {
		if cmd.ChildID, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		cmd.Relationship, cmd.Permissions, cmd.Reason = string(b.Relationship), plainStrings(b.Permissions), b.Reason
		if b.ExpiresAt != nil {
			if cmd.ExpiresAt, err = parseTime("expires_at", *b.ExpiresAt); err != nil {
				return err
			}
		}
		cmd.AccountID, err = parseUUID("account_id", b.AccountID)
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.Grant(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(api.GrantMade{ExpiresAt: optNullableTime(res.ExpiresAt), ReviewBy: optNullableTime(res.ReviewBy),
			Position: res.Position.String()}), nil
	})
}

// optNullableTime is t in UTC, or nil (JSON null) when zero.
func optNullableTime(t time.Time) *api.NullableTime {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *server) reviewGrant(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.ReasonRequest
	var cmd commands.ReviewGrant
	return s.runCommand(w, r, c.actor, commands.CommandReviewGrant, &b, func() (err error) {
		if cmd.ChildID, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		cmd.Reason = b.Reason
		cmd.AccountID, err = pathUUID(r, "account_id")
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.ReviewGrant(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(api.GrantReviewed{ReviewBy: res.ReviewBy.UTC(), Position: res.Position.String()}), nil
	})
}

func (s *server) revoke(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.ReasonRequest
	var cmd commands.Revoke
	return s.runCommand(w, r, c.actor, commands.CommandRevoke, &b, func() (err error) {
		if cmd.ChildID, err = pathUUID(r, "child_id"); err != nil {
			return err
		}
		cmd.Reason = b.Reason
		cmd.AccountID, err = pathUUID(r, "account_id")
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.Revoke(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) requestPhoneReset(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.ReasonRequest
	var cmd commands.RequestPhoneReset
	return s.runCommand(w, r, c.actor, commands.CommandRequestPhoneReset, &b, func() (err error) {
		cmd.AccountID, err = pathUUID(r, "account_id")
		cmd.Reason = b.Reason
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.RequestPhoneReset(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) clearPhone(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.EmptyRequest
	var cmd commands.ClearPhone
	return s.runCommand(w, r, c.actor, commands.CommandClearPhone, &b, func() (err error) {
		cmd.AccountID, err = pathUUID(r, "account_id")
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.ClearPhone(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

func (s *server) enrolPhone(w http.ResponseWriter, r *http.Request, c call) error {
	var b api.EnrolPhoneRequest
	var cmd commands.EnrolPhone
	return s.runCommand(w, r, c.actor, commands.CommandEnrolPhone, &b, func() (err error) {
		cmd.AccountID, err = pathUUID(r, "account_id")
		cmd.Phone = b.Phone
		return err
	}, func(ctx context.Context, m commands.Meta) (answer, error) {
		res, err := s.cfg.Commands.EnrolPhone(ctx, m, cmd)
		if err != nil {
			return answer{}, err
		}
		return ok(positionOf(res.Position)), nil
	})
}

// plainStrings converts a list of typed strings (e.g. the wire's permission
// names) to plain strings, keeping nil nil.
func plainStrings[T ~string](in []T) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}
