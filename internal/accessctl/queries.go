package accessctl

// The query verbs: one function each, from its flags to its answer.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// checkVerb is `accessctl check`.
func checkVerb() verb {
	return verb{
		name: "check", synopsis: "--account ID (--child ID | --carer ID) --permission P [--at RFC3339]", query: true,
		summary: "ask whether an account may do P on a child's record (or a carer record)",
		help: "P is one of " + strings.Join(checkPermissions, ", ") + ". Exits 0 when allowed and 3 when denied,\n" +
			"so scripts can test it: if accessctl check ... >/dev/null; then ...",
		endpoint: "GET /v1/check",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account asking (required)")
			child := fs.String("child", "", "the child whose record (this or --carer)")
			carer := fs.String("carer", "", "the carer whose own carer record (this or --child)")
			perm := fs.String("permission", "", "one of "+strings.Join(checkPermissions, ", ")+" (required)")
			at := fs.String("at", "", "answer as of this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				q := client.CheckQuery{Account: c.id("account", *account)}
				switch {
				case *child != "" && *carer != "":
					c.fail("give --child or --carer, not both")
				case *child == "" && *carer == "":
					c.fail("--child or --carer is required")
				case *child != "":
					q.Child = c.id("child", *child)
				default:
					q.Carer = c.id("carer", *carer)
				}
				q.Permission = api.Permission(c.oneOf("permission", *perm, checkPermissions))
				q.At = c.optTime("at", *at)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.CheckAnswer, error) {
					return inv.client.Check(ctx, q, o...)
				})
				if err != nil {
					return err
				}
				if err := inv.print(a, func(w io.Writer) error {
					allowed := "no"
					if r.Allowed {
						allowed = "yes"
					}
					rows := [][2]string{kv("allowed", allowed), kv("permissions", permissions(r.Permissions)),
						kv("reason", string(r.Reason)), kv("until", humanTimePtr(r.Until))}
					if r.PlacementEndedAt != nil { // during a grace period: what complete_outstanding counts from
						rows = append(rows, kv("placement_ended_at", humanTimePtr(r.PlacementEndedAt)))
					}
					return keyValues(w, append(rows, kv("position", r.Position))...)
				}); err != nil {
					return err
				}
				if !r.Allowed {
					return &exitCodeError{code: exitDenied}
				}
				return nil
			}
		},
	}
}

// childrenVerb is `accessctl children`.
func childrenVerb() verb {
	return verb{
		name: "children", synopsis: "--account ID [--at RFC3339]", query: true,
		summary: "list the children whose records an account may see", endpoint: "GET /v1/accounts/{account_id}/children",
		help: lookupHelp,
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account (required)")
			at := fs.String("at", "", "as of this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id, t := c.id("account", *account), c.optTime("at", *at)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChildrenAnswer, error) {
					return inv.client.Children(ctx, id, t, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					l := newLookups(inv)
					t := newTable(w)
					t.row("CHILD", "REFERENCE", "RELATIONSHIP", "PERMISSIONS", "REASON", "UNTIL")
					for _, ch := range r.Children {
						t.row(ch.ChildID.String(), l.reference(ctx, ch.ChildID), l.relationship(ctx, ch.ChildID, id, ch.Reason),
							permissions(ch.Permissions), string(ch.Reason), humanTimePtr(ch.Until))
					}
					if err := t.flush(); err != nil {
						return err
					}
					positionLine(w, r.Position)
					return nil
				})
			}
		},
	}
}

// viewersVerb is `accessctl viewers`.
func viewersVerb() verb {
	return verb{
		name: "viewers", synopsis: "--child ID [--at RFC3339]", query: true,
		summary: "list the accounts that may see a child's record", endpoint: "GET /v1/children/{child_id}/viewers",
		help: lookupHelp,
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child (required)")
			at := fs.String("at", "", "as of this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id, t := c.id("child", *child), c.optTime("at", *at)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ViewersAnswer, error) {
					return inv.client.Viewers(ctx, id, t, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					l := newLookups(inv)
					t := newTable(w)
					t.row("ACCOUNT", "KIND", "RELATIONSHIP", "PERMISSIONS", "REASON", "UNTIL")
					for _, v := range r.Viewers {
						t.row(v.AccountID.String(), l.kind(ctx, v.AccountID), l.relationship(ctx, id, v.AccountID, v.Reason),
							permissions(v.Permissions), string(v.Reason), humanTimePtr(v.Until))
					}
					if err := t.flush(); err != nil {
						return err
					}
					positionLine(w, r.Position)
					return nil
				})
			}
		},
	}
}

// historyVerb is `accessctl history`: a child's or an account's.
func historyVerb() verb {
	return verb{
		name: "history", synopsis: "(--child ID | --account ID) [--at RFC3339] [--as-of POSITION]", query: true,
		summary: "list every interval in which an account could see a child's record, and the events behind it (auditors)",
		help: "With --child, who could see the child and when; with --account, what the account could see.\n" +
			"With --at, only the intervals that contain that time: who could see the child then, and\n" +
			"why. With --as-of, the history as the engine knew it at that position (before\n" +
			"later corrections such as a backdated placement end); with --known-at, as it knew it\n" +
			"at that time.\n\n" + lookupHelp,
		endpoint: "GET /v1/children/{child_id}/history, GET /v1/accounts/{account_id}/history",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child (this or --account)")
			account := fs.String("account", "", "the account (this or --child)")
			at := fs.String("at", "", "only the intervals that contain this time, RFC 3339")
			asOf := fs.String("as-of", "", "as known at this `POSITION` (a position token)")
			knownAt := fs.String("known-at", "", "as known at this recorded `TIME`, RFC 3339 (not with --as-of)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				var childID, accountID uuid.UUID
				switch {
				case *child != "" && *account != "":
					c.fail("give --child or --account, not both")
				case *child == "" && *account == "":
					c.fail("--child or --account is required")
				case *child != "":
					childID = c.id("child", *child)
				default:
					accountID = c.id("account", *account)
				}
				q := client.HistoryQuery{At: c.optTime("at", *at), AsOf: c.token("as-of", *asOf), KnownAt: c.optTime("known-at", *knownAt)}
				if *asOf != "" && *knownAt != "" {
					c.fail("give --as-of or --known-at, not both")
				}
				if err := c.err(); err != nil {
					return err
				}
				var intervals []api.Interval
				var position string
				var a answer
				var err error
				if childID != uuid.Nil {
					var r api.ChildHistory
					r, a, err = call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChildHistory, error) {
						return inv.client.ChildHistory(ctx, childID, q, o...)
					})
					intervals, position = r.Intervals, r.Position
				} else {
					var r api.AccountHistory
					r, a, err = call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.AccountHistory, error) {
						return inv.client.AccountHistory(ctx, accountID, q, o...)
					})
					intervals, position = r.Intervals, r.Position
				}
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					l := newLookups(inv)
					t := newTable(w)
					if childID != uuid.Nil {
						t.row("ACCOUNT", "KIND", "PERMISSIONS", "REASON", "FROM", "TO", "OPENED BY", "CLOSED BY")
					} else {
						t.row("CHILD", "REFERENCE", "PERMISSIONS", "REASON", "FROM", "TO", "OPENED BY", "CLOSED BY")
					}
					for _, in := range intervals {
						id, name := in.AccountID, ""
						if childID != uuid.Nil {
							name = l.kind(ctx, in.AccountID)
						} else {
							id, name = in.ChildID, l.reference(ctx, in.ChildID)
						}
						t.row(id.String(), name, permissions(in.Permissions), string(in.Reason), humanTime(in.From),
							humanTimePtr(in.To), shortEvent(in.OpenedByEvent), shortEvent(in.ClosedByEvent))
					}
					if err := t.flush(); err != nil {
						return err
					}
					positionLine(w, position)
					return nil
				})
			}
		},
	}
}

// accountVerb is `accessctl account`.
func accountVerb() verb {
	return verb{
		name: "account", synopsis: "--account ID [--at RFC3339]", query: true,
		summary: "show an account: kind, status, whether it must enrol a phone", endpoint: "GET /v1/accounts/{account_id}",
		help: "To find an account by its email or identity subject: accessctl accounts --email E.",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account (required)")
			at := fs.String("at", "", "as of this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id, t := c.id("account", *account), c.optTime("at", *at)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.Account, error) {
					return inv.client.Account(ctx, id, t, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					return keyValues(w, kv("account_id", r.AccountID.String()), kv("kind", string(r.Kind)), kv("status", string(r.Status)),
						kv("needs_phone_enrolment", yesNo(r.NeedsPhoneEnrolment)), kv("phone_hint", deref(r.PhoneHint)),
						kv("position", r.Position))
				})
			}
		},
	}
}

// verifyVerb is `accessctl verify`.
func verifyVerb() verb {
	return verb{
		name: "verify", synopsis: "[--anchor SEQ:HASH]", query: true,
		summary: "recompute the audit trail's hash chain (auditors); exits 1 when it is broken",
		help: "Prints the number of intact entries and the head hash. Keep them: a later\n" +
			"verify --anchor SEQ:HASH also checks that entry SEQ still has that hash, so even a\n" +
			"rewrite of the whole chain after it is detected.",
		endpoint: "GET /v1/audit/verify",
		flags: func(fs *flag.FlagSet) action {
			anchor := fs.String("anchor", "", "an entry's `SEQ:HASH` from an earlier verify")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				anc := c.anchor("anchor", *anchor)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.VerifyResult, error) {
					return inv.client.VerifyAudit(ctx, anc, o...)
				})
				if err != nil {
					return err
				}
				if err := inv.print(a, func(w io.Writer) error {
					if r.Ok {
						fmt.Fprintf(w, "audit trail OK: %d entries, head %s\n", r.Entries, cell(r.HeadHash))
					} else {
						fmt.Fprintf(w, "audit trail BROKEN at %s; %d entries intact before it, last intact hash %s\n",
							brokenText(r.FirstBroken), r.Entries, cell(r.HeadHash))
					}
					positionLine(w, r.Position)
					return nil
				}); err != nil {
					return err
				}
				if !r.Ok {
					return &exitCodeError{code: exitError, msg: "audit trail broken at " + brokenText(r.FirstBroken)}
				}
				return nil
			}
		},
	}
}

// policyVerb is `accessctl policy`.
func policyVerb() verb {
	return verb{
		name: "policy", synopsis: "[--at RFC3339]", query: true,
		summary:  "show the policy: grace period, invitation lifetime, session timeouts, retention, and who set it when (R25)",
		endpoint: "GET /v1/policy",
		flags: func(fs *flag.FlagSet) action {
			atFlag := fs.String("at", "", "the policy in force at this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				at := c.optTime("at", *atFlag)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.Policy, error) {
					return inv.client.PolicyAt(ctx, at, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					pairs := [][2]string{
						kv("grace_period", humanDuration(time.Duration(r.GracePeriod)*time.Second)),
						kv("invitation_ttl", humanDuration(time.Duration(r.InvitationTTL)*time.Second)),
						kv("session_idle_timeout", humanDuration(time.Duration(r.SessionIdleTimeout)*time.Second)),
						kv("session_warning_after", humanDuration(time.Duration(r.SessionWarningAfter)*time.Second)),
					}
					if r.ClosedAccountRetention > 0 {
						pairs = append(pairs, kv("closed_account_retention", humanDuration(time.Duration(r.ClosedAccountRetention)*time.Second)))
					}
					if r.ReviewPeriod > 0 {
						pairs = append(pairs, kv("review_period", humanDuration(time.Duration(r.ReviewPeriod)*time.Second)))
					}
					if r.SetAt != nil {
						pairs = append(pairs, kv("set_at", r.SetAt.UTC().Format(time.RFC3339)))
					}
					if r.SetBy != nil {
						pairs = append(pairs, kv("set_by", *r.SetBy))
					}
					if r.Reason != nil {
						pairs = append(pairs, kv("reason", cell(*r.Reason)))
					}
					if r.SetPosition != nil {
						pairs = append(pairs, kv("set_position", *r.SetPosition))
					}
					if r.Position != "" {
						pairs = append(pairs, kv("position", r.Position))
					}
					return keyValues(w, pairs...)
				})
			}
		},
	}
}

func brokenText(b *api.BrokenEntry) string {
	switch {
	case b == nil:
		return "an unnamed entry"
	case b.Reason != "":
		return "entry " + strconv.Itoa(b.Seq) + ": " + cell(b.Reason)
	default:
		return "entry " + strconv.Itoa(b.Seq)
	}
}

// childVerb is `accessctl child`.
func childVerb() verb {
	return verb{
		name: "child", synopsis: "(--child ID | --reference R) [--at RFC3339]", query: true,
		summary: "show a child's record: reference, allocated worker, placements and grants (workers, managers, auditors)",
		help: "A placement's status is planned, open, in_grace or ended at --at (default now); its id is what end-placement and end-grace take.\n" +
			"--reference finds the child by the council's reference (R17) first.",
		endpoint: "GET /v1/children/{child_id}, GET /v1/children",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child (this or --reference)")
			ref := fs.String("reference", "", "the child's reference (this or --child)")
			at := fs.String("at", "", "statuses as of this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				var id uuid.UUID
				switch {
				case *child != "" && *ref != "":
					c.fail("give --child or --reference, not both")
				case *ref != "":
					c.text("reference", *ref, maxReferenceBytes)
				default:
					id = c.id("child", *child)
				}
				t := c.optTime("at", *at)
				if err := c.err(); err != nil {
					return err
				}
				if *ref != "" {
					found, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChildList, error) {
						return inv.client.ChildByReference(ctx, *ref, o...)
					})
					if err != nil {
						return err
					}
					if len(found.Children) == 0 {
						return fmt.Errorf("no child has the reference %q", *ref)
					}
					id = found.Children[0].ChildID
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChildRecord, error) {
					return inv.client.Child(ctx, id, t, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					if err := keyValues(w, kv("child_id", r.ChildID.String()), kv("reference", erasedText(r.Reference)),
						kv("allocated_worker", deref(r.AllocatedWorkerID))); err != nil {
						return err
					}
					t := newTable(w)
					t.row("PLACEMENT", "CARER", "STARTED", "ENDED", "GRACE UNTIL", "STATUS")
					for _, p := range r.Placements {
						t.row(p.PlacementID.String(), p.CarerAccountID.String(), humanTime(p.StartedAt), humanTimePtr(p.EndedAt),
							humanTimePtr(p.GraceUntil), string(p.Status))
					}
					t.row("GRANT TO", "RELATIONSHIP", "PERMISSIONS", "GRANTED", "REVOKED", "STATUS")
					for _, g := range r.Grants {
						t.row(g.AccountID.String(), string(g.Relationship), permissions(g.Permissions), humanTime(g.GrantedAt),
							humanTimePtr(g.RevokedAt), string(g.Status))
					}
					if err := t.flush(); err != nil {
						return err
					}
					positionLine(w, r.Position)
					return nil
				})
			}
		},
	}
}
