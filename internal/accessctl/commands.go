package accessctl

// The command verbs: one function each, from its flags to its answer.

import (
	"context"
	"errors"
	"flag"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/domain"
	"github.com/google/uuid"
)

// registerChildVerb is `accessctl register-child`.
func registerChildVerb() verb {
	return verb{
		name: "register-child", synopsis: "--reference R [--retain-until RFC3339]", summary: "register a child (a worker becomes its allocated worker)",
		help:     "--retain-until: when the child's record may be erased (R22); the engine erases it then.",
		endpoint: "POST /v1/children",
		flags: func(fs *flag.FlagSet) action {
			ref := fs.String("reference", "", "the council's reference of the child (required)")
			until := fs.String("retain-until", "", "keep the record until this time, RFC 3339 (optional)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				c.text("reference", *ref, maxReferenceBytes)
				retain := c.optTime("retain-until", *until)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChildRegistered, error) {
					return inv.client.RegisterChildUntil(ctx, *ref, retain, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					return keyValues(w, kv("child_id", r.ChildID.String()), kv("position", r.Position))
				})
			}
		},
	}
}

// allocateVerb is `accessctl allocate`.
func allocateVerb() verb {
	return verb{
		name: "allocate", synopsis: "--child ID --worker W", summary: "allocate a child to a worker (managers)",
		endpoint: "POST /v1/children/{child_id}/allocation",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			worker := fs.String("worker", "", "the worker's id, the sub of their token (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("child", *child)
				c.text("worker", *worker, 255)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.AllocateWorker(ctx, id, *worker, o...)
				})
			}
		},
	}
}

// inviteVerb is `accessctl invite`.
func inviteVerb() verb {
	return verb{
		name: "invite", synopsis: "--email E --kind K", summary: "invite an email address to open a portal account",
		help:     "K is one of " + strings.Join(accountKinds, ", ") + ". The answer names the new account and when the invitation expires.",
		endpoint: "POST /v1/invitations",
		flags: func(fs *flag.FlagSet) action {
			email := fs.String("email", "", "the invitee's email address (required)")
			kind := fs.String("kind", "", "the account's kind: "+strings.Join(accountKinds, ", ")+" (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				c.email("email", *email)
				c.oneOf("kind", *kind, accountKinds)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.Invited, error) {
					return inv.client.Invite(ctx, *email, api.AccountKind(*kind), o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					return keyValues(w, kv("account_id", r.AccountID.String()), kv("expires_at", humanTime(r.ExpiresAt)),
						kv("position", r.Position))
				})
			}
		},
	}
}

// activateVerb is `accessctl activate`.
func activateVerb() verb {
	return verb{
		name: "activate", synopsis: "--account ID --identity-subject S --email E",
		summary: "accept an invitation: link the identity the invitee signed in with (service)",
		help: "What the portal backend reports at an invitee's first sign-in (docs/integration.md): S is the\n" +
			"identity provider's subject id, E the identity's email, which must be the invited one.\n" +
			"Refused when the invitation expired, the account is closed, or S is linked to another account.",
		endpoint: "POST /v1/accounts/{account_id}/activation",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the invited account (required)")
			subject := fs.String("identity-subject", "", "the identity provider's subject id (required)")
			email := fs.String("email", "", "the identity's email address, the invited one (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("account", *account)
				c.text("identity-subject", *subject, 255)
				c.email("email", *email)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.Activate(ctx, id, *subject, *email, o...)
				})
			}
		},
	}
}

// enrolPhoneVerb is `accessctl enrol-phone`.
func enrolPhoneVerb() verb {
	return verb{
		name: "enrol-phone", synopsis: "--account ID --phone NUMBER",
		summary: "enrol the 2FA phone number of an account that has none (service)",
		help: "What the portal backend reports when an account that needs phone enrolment enters a number\n" +
			"at sign-in. The engine keeps only *** and the last three digits. Like every argument, the\n" +
			"number is visible in this machine's process list while accessctl runs.",
		endpoint: "PUT /v1/accounts/{account_id}/phone",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account (required)")
			phone := fs.String("phone", "", "the number: 7 to 15 digits, an optional leading +, spaces, dots, hyphens, brackets (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("account", *account)
				var fe *domain.FieldError
				if *phone == "" {
					c.fail("--phone is required")
				} else if _, err := domain.MaskPhone(*phone); errors.As(err, &fe) {
					c.fail("--phone: %s", fe.Problem)
				} else if err != nil {
					c.fail("--phone: %v", err)
				}
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.EnrolPhone(ctx, id, *phone, o...)
				})
			}
		},
	}
}

// placeVerb is `accessctl place`.
func placeVerb() verb {
	return verb{
		name: "place", synopsis: "--child ID --carer ACCOUNT [--started-at RFC3339]",
		summary: "start a placement of a child with a foster carer", endpoint: "POST /v1/children/{child_id}/placements",
		help: "--started-at defaults to now (this machine's clock, sent in UTC); it may be in the past\n" +
			"(a backdated placement) or in the future (a planned placement). The answer names the\n" +
			"placement: end-placement and end-grace take its id (accessctl child --child ID lists them).",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			carer := fs.String("carer", "", "the foster carer's account id (required)")
			started := fs.String("started-at", "", "when the placement started, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				childID, carerID, at := c.id("child", *child), c.id("carer", *carer), c.timeOrNow("started-at", *started)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.PlacementStarted, error) {
					return inv.client.StartPlacement(ctx, childID, carerID, at, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					return keyValues(w, kv("placement_id", r.PlacementID.String()), kv("started_at", humanTime(at)), kv("position", r.Position))
				})
			}
		},
	}
}

// endPlacementVerb is `accessctl end-placement`.
func endPlacementVerb() verb {
	return verb{
		name: "end-placement", synopsis: "--child ID --placement ID [--ended-at RFC3339] [--reason R]",
		summary: "end a placement; the carer keeps limited access for the grace period",
		help: "--ended-at defaults to now (this machine's clock, sent in UTC); it may be in the past\n" +
			"(recorded late) or in the future (a planned move). --reason is optional: it is kept\n" +
			"with the event in the audit trail. The answer says when the grace period ends.",
		endpoint: "POST /v1/children/{child_id}/placements/{placement_id}/end",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			placement := fs.String("placement", "", "the placement's id (required)")
			ended := fs.String("ended-at", "", "when the placement ended, RFC 3339 (default now)")
			reason := fs.String("reason", "", "why (optional)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				childID, placementID, at := c.id("child", *child), c.id("placement", *placement), c.timeOrNow("ended-at", *ended)
				c.optText("reason", *reason, maxReasonBytes)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.PlacementEnded, error) {
					return inv.client.EndPlacement(ctx, childID, placementID, at, *reason, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					return keyValues(w, kv("ended_at", humanTime(at)), kv("grace_until", humanTime(r.GraceUntil)), kv("position", r.Position))
				})
			}
		},
	}
}

// endGraceVerb is `accessctl end-grace`.
func endGraceVerb() verb {
	return placementReasonVerb("end-grace", "end a carer's grace period early (e.g. a safeguarding concern)",
		"POST /v1/children/{child_id}/placements/{placement_id}/end-grace", "the ended placement's id (required)",
		(*client.Client).EndGrace)
}

// placementReasonVerb is a verb that sends a command on one placement of
// a child with a reason, and prints its position.
func placementReasonVerb(name, summary, endpoint, placementHelp string,
	send func(cl *client.Client, ctx context.Context, child, placement uuid.UUID, reason string, o ...client.CallOption) (api.PositionAnswer, error)) verb {
	return verb{
		name: name, synopsis: "--child ID --placement ID --reason R", summary: summary, endpoint: endpoint,
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			placement := fs.String("placement", "", placementHelp)
			reason := fs.String("reason", "", "why (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				childID, placementID := c.id("child", *child), c.id("placement", *placement)
				c.text("reason", *reason, maxReasonBytes)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return send(inv.client, ctx, childID, placementID, *reason, o...)
				})
			}
		},
	}
}

// grantVerb is `accessctl grant`.
func grantVerb() verb {
	return verb{
		name: "grant", synopsis: "--child ID --account ID --relationship REL --permissions view[,record] --reason R [--expires-at RFC3339]",
		summary: "let a parent, guardian or network member see a child's record",
		help: "REL is one of " + strings.Join(relationships, ", ") + "; --permissions lists some of " + strings.Join(grantPermissions, ", ") + ".\n" +
			"With --expires-at the grant ends by itself then (R19); without it, it is open-ended and due for review\n" +
			"(the answer's review_by: the policy's review period from now).",
		endpoint: "POST /v1/children/{child_id}/grants",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			account := fs.String("account", "", "the account to grant access to (required)")
			rel := fs.String("relationship", "", "the account's relationship to the child: "+strings.Join(relationships, ", ")+" (required)")
			perms := fs.String("permissions", "", "comma-separated: "+strings.Join(grantPermissions, ", ")+" (required)")
			reason := fs.String("reason", "", "why (required)")
			expires := fs.String("expires-at", "", "when the grant ends, RFC 3339 (optional: open-ended)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				childID, accountID := c.id("child", *child), c.id("account", *account)
				c.oneOf("relationship", *rel, relationships)
				ps := c.list("permissions", *perms, grantPermissions)
				c.text("reason", *reason, maxReasonBytes)
				until := c.optTime("expires-at", *expires)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.GrantMade, error) {
					return inv.client.GrantUntil(ctx, childID, accountID, api.GrantRequestRelationship(*rel),
						typed[api.GrantRequestPermissions](ps), *reason, until, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					pairs := [][2]string{}
					if r.ExpiresAt != nil {
						pairs = append(pairs, kv("expires_at", humanTime(*r.ExpiresAt)))
					}
					if r.ReviewBy != nil {
						pairs = append(pairs, kv("review_by", humanTime(*r.ReviewBy)))
					}
					return keyValues(w, append(pairs, kv("position", r.Position))...)
				})
			}
		},
	}
}

// reviewVerb is `accessctl review` (R19).
func reviewVerb() verb {
	return verb{
		name: "review", synopsis: "--child ID --account ID --reason R",
		summary:  "confirm an open-ended grant after its review: it is next due a review period from now (the child's worker, R19)",
		help:     "To end a grant instead, revoke it; a time-limited grant is not reviewed (make a new grant to extend it).",
		endpoint: "POST /v1/children/{child_id}/grants/{account_id}/review",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			account := fs.String("account", "", "the account whose grant was reviewed (required)")
			reason := fs.String("reason", "", "why it is kept (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				childID, accountID := c.id("child", *child), c.id("account", *account)
				c.text("reason", *reason, maxReasonBytes)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.GrantReviewed, error) {
					return inv.client.ReviewGrant(ctx, childID, accountID, *reason, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					return keyValues(w, kv("review_by", humanTime(r.ReviewBy)), kv("position", r.Position))
				})
			}
		},
	}
}

// revokeVerb is `accessctl revoke`.
func revokeVerb() verb {
	return verb{
		name: "revoke", synopsis: "--child ID --account ID --reason R", summary: "revoke an account's grant on a child's record",
		endpoint: "POST /v1/children/{child_id}/grants/{account_id}/revoke",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child's id (required)")
			account := fs.String("account", "", "the account whose grant to revoke (required)")
			reason := fs.String("reason", "", "why (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				childID, accountID := c.id("child", *child), c.id("account", *account)
				c.text("reason", *reason, maxReasonBytes)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.Revoke(ctx, childID, accountID, *reason, o...)
				})
			}
		},
	}
}

// phoneResetVerb is `accessctl phone-reset`.
func phoneResetVerb() verb {
	return verb{
		name: "phone-reset", synopsis: "--account ID --reason R",
		summary:  "file a request to reset an account's 2FA phone number (workers)",
		endpoint: "POST /v1/accounts/{account_id}/phone-reset-requests",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account (required)")
			reason := fs.String("reason", "", "why (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("account", *account)
				c.text("reason", *reason, maxReasonBytes)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.RequestPhoneReset(ctx, id, *reason, o...)
				})
			}
		},
	}
}

// clearPhoneVerb is `accessctl clear-phone`.
func clearPhoneVerb() verb {
	return verb{
		name: "clear-phone", synopsis: "--account ID",
		summary:  "clear an account's 2FA phone number after a reset request (portals team)",
		endpoint: "POST /v1/accounts/{account_id}/phone/clear",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("account", *account)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.ClearPhone(ctx, id, o...)
				})
			}
		},
	}
}

// reasonVerb is a verb that sends a command on one id (flag idFlag) with
// a reason, and prints its position.
func reasonVerb(name, idFlag, summary, endpoint string,
	send func(cl *client.Client, ctx context.Context, id uuid.UUID, reason string, o ...client.CallOption) (api.PositionAnswer, error)) verb {
	return verb{
		name: name, synopsis: "--" + idFlag + " ID --reason R", summary: summary, endpoint: endpoint,
		flags: func(fs *flag.FlagSet) action {
			target := fs.String(idFlag, "", "the "+idFlag+" (required)")
			reason := fs.String("reason", "", "why (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id(idFlag, *target)
				c.text("reason", *reason, maxReasonBytes)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return send(inv.client, ctx, id, *reason, o...)
				})
			}
		},
	}
}

// closeAccountVerb is `accessctl close-account`.
func closeAccountVerb() verb {
	return reasonVerb("close-account", "account", "close an account, ending all its access (portals team)",
		"POST /v1/accounts/{account_id}/close", (*client.Client).CloseAccount)
}

// cancelInvitationVerb is `accessctl cancel-invitation`.
func cancelInvitationVerb() verb {
	return reasonVerb("cancel-invitation", "account", "cancel an open invitation sent by mistake; the email may be invited again (worker, R18)",
		"POST /v1/accounts/{account_id}/invitation/cancel", (*client.Client).CancelInvitation)
}

// eraseAccountVerb is `accessctl erase-account`.
func eraseAccountVerb() verb {
	return reasonVerb("erase-account", "account", "erase an account's personal data for good; access and history stay (dpo, R22)",
		"POST /v1/accounts/{account_id}/erasure", (*client.Client).EraseAccount)
}

// eraseChildVerb is `accessctl erase-child`.
func eraseChildVerb() verb {
	return reasonVerb("erase-child", "child", "erase a child's personal data for good; access and history stay (dpo, R22)",
		"POST /v1/children/{child_id}/erasure", (*client.Client).EraseChild)
}

// setRetentionVerb is `accessctl set-retention`.
func setRetentionVerb() verb {
	return verb{
		name: "set-retention", synopsis: "--child ID --retain-until RFC3339 --reason R",
		summary:  "set or move the date until which a child's record is kept (the child's worker, manager, dpo; R22)",
		help:     "When the date comes, the engine erases the child's personal data; access and history stay.",
		endpoint: "PUT /v1/children/{child_id}/retention",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child (required)")
			until := fs.String("retain-until", "", "keep the record until this time, RFC 3339, in the future (required)")
			reason := fs.String("reason", "", "why (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("child", *child)
				retain := c.time("retain-until", *until)
				c.text("reason", *reason, maxReasonBytes)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.SetRetention(ctx, id, retain, *reason, o...)
				})
			}
		},
	}
}

// setPolicyVerb is `accessctl set-policy`.
func setPolicyVerb() verb {
	return verb{
		name:     "set-policy",
		synopsis: "[--grace-period D] [--invitation-ttl D] [--session-idle-timeout D] [--session-warning-after D] [--closed-account-retention D] [--review-period D] [--reason R]",
		summary:  "change the policy, in force from now on every replica (manager, R25)",
		help: "Durations are whole seconds or more: Go durations (90m, 48h) or whole days (7d). Settings left out are kept.\n" +
			"Grace periods, invitation lifetimes and account retention take the policy in force at the placement's end,\n" +
			"the invitation and the account's closure: a change does not move deadlines already set.",
		endpoint: "PUT /v1/policy",
		flags: func(fs *flag.FlagSet) action {
			names := []string{"grace-period", "invitation-ttl", "session-idle-timeout", "session-warning-after", "closed-account-retention", "review-period"}
			vals := make([]*string, len(names))
			for i, n := range names {
				vals[i] = fs.String(n, "", "new "+strings.ReplaceAll(n, "-", " ")+" (optional)")
			}
			reason := fs.String("reason", "", "why (optional)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				secs := make([]*int, len(names))
				for i, n := range names {
					secs[i] = c.policySeconds(n, *vals[i])
				}
				c.optText("reason", *reason, maxReasonBytes)
				req := api.SetPolicyRequest{GracePeriod: secs[0], InvitationTTL: secs[1], SessionIdleTimeout: secs[2],
					SessionWarningAfter: secs[3], ClosedAccountRetention: secs[4], ReviewPeriod: secs[5], Reason: *reason}
				if slices.IndexFunc(secs, func(p *int) bool { return p != nil }) < 0 {
					c.fail("give at least one setting (--%s)", strings.Join(names, ", --"))
				}
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.SetPolicy(ctx, req, o...)
				})
			}
		},
	}
}

// policySeconds parses an optional policy duration flag: a Go duration
// (90m, 48h) or whole days (7d), a positive whole number of seconds; nil
// when not given.
func (c *checker) policySeconds(name, s string) *int {
	if s == "" {
		return nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 36500 {
			c.fail("--%s %q: want whole days from 1d to 36500d, or a duration such as 48h", name, s)
			return nil
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < time.Second || d%time.Second != 0 || d > 36500*24*time.Hour {
			c.fail("--%s %q: want a positive whole number of seconds, such as 90m, 48h or 7d", name, s)
			return nil
		}
	}
	n := int(d / time.Second)
	return &n
}

// sendPosition sends a command that answers only its position, once c has
// found the flags valid, and prints the answer.
func sendPosition(ctx context.Context, inv *invocation, c *checker,
	send func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error)) error {
	if err := c.err(); err != nil {
		return err
	}
	r, a, err := call(ctx, inv, send)
	if err != nil {
		return err
	}
	return inv.printPosition(r, a)
}
