package accessctl

import (
	"context"
	"flag"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// The verbs of the corrections (R18).

// reopenAccountVerb is `accessctl reopen-account`.
func reopenAccountVerb() verb {
	return reasonVerb("reopen-account", "account",
		"reopen a closed account; its access does not come back by itself (portals team, R18)",
		"POST /v1/accounts/{account_id}/reopen", (*client.Client).ReopenAccount)
}

// cancelPlacementVerb is `accessctl cancel-placement`.
func cancelPlacementVerb() verb {
	return placementReasonVerb("cancel-placement", "cancel a planned placement before it starts (the child's worker, R18)",
		"POST /v1/children/{child_id}/placements/{placement_id}/cancel",
		"the planned placement's id (required; accessctl child --child ID lists them)", (*client.Client).CancelPlacement)
}

// requestEmailChangeVerb is `accessctl request-email-change`.
func requestEmailChangeVerb() verb {
	return verb{
		name: "request-email-change", synopsis: "--account ID --email ADDRESS --reason R",
		summary:  "ask the portals team to change an account's email (worker, R18)",
		endpoint: "POST /v1/accounts/{account_id}/email-change-requests",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account's id (required)")
			email := fs.String("email", "", "the new email address (required)")
			reason := fs.String("reason", "", "why (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("account", *account)
				c.email("email", *email)
				c.text("reason", *reason, maxReasonBytes)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.RequestEmailChange(ctx, id, *email, *reason, o...)
				})
			}
		},
	}
}

// changeEmailVerb is `accessctl change-email`.
func changeEmailVerb() verb {
	return verb{
		name: "change-email", synopsis: "--account ID --email ADDRESS",
		summary:  "apply a worker's email change request; the account id stays (portals team, R18)",
		endpoint: "PUT /v1/accounts/{account_id}/email",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account's id (required)")
			email := fs.String("email", "", "the email the open request names (required)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("account", *account)
				c.email("email", *email)
				return sendPosition(ctx, inv, &c, func(ctx context.Context, o ...client.CallOption) (api.PositionAnswer, error) {
					return inv.client.ChangeEmail(ctx, id, *email, o...)
				})
			}
		},
	}
}

// reviewsVerb is `accessctl reviews` (R19): a worker's grants due for
// review, or ending.
func reviewsVerb() verb {
	return verb{
		name: "reviews", synopsis: "[--worker ID] [--due-before RFC3339] [--limit N] [--after CURSOR] [--all]", query: true,
		summary: "list the grants due for review, or ending, before a time (workers, managers, auditors; R19)",
		help: "Without --worker a worker lists the grants of the children allocated to them (the token's sub);\n" +
			"a manager or an auditor lists every worker's. --due-before defaults to now.",
		endpoint: "GET /v1/reviews",
		flags: func(fs *flag.FlagSet) action {
			worker := fs.String("worker", "", "the worker's id (default: the caller)")
			due := fs.String("due-before", "", "list what is due before this time, RFC 3339 (default now)")
			limit := fs.Int("limit", 0, "grants per page (default: the server's)")
			after := fs.String("after", "", "start after this cursor (a previous page's next)")
			all := fs.Bool("all", false, "follow the next cursors to the last page")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				w := c.optText("worker", *worker, 255)
				dueBefore := c.optTime("due-before", *due)
				n := c.limit(*limit)
				if err := c.err(); err != nil {
					return err
				}
				pages, err := collectPages(ctx, inv, *after, *all, func(ctx context.Context, after string, o ...client.CallOption) (api.ReviewList, error) {
					return inv.client.Reviews(ctx, dueBefore, w, after, n, o...)
				}, func(p api.ReviewList) (*string, string) { return p.Next, p.Position })
				if err != nil {
					return err
				}
				return printPagesOf(inv, pages, "grants", func(t *table) {
					t.row("CHILD", "ACCOUNT", "RELATIONSHIP", "REVIEW BY", "EXPIRES AT", "WORKER")
					for _, p := range pages {
						for _, g := range p.v.Grants {
							t.row(g.ChildID.String(), g.AccountID.String(), string(g.Relationship), humanTimePtr(g.ReviewBy), humanTimePtr(g.ExpiresAt), deref(g.WorkerID))
						}
					}
				})
			}
		},
	}
}

// caseloadVerb is `accessctl caseload`: the children allocated to a worker
// (R17).
func caseloadVerb() verb {
	return verb{
		name: "caseload", synopsis: "--worker ID [--limit N] [--after ID] [--all]", query: true,
		summary:  "list the children allocated to a worker, with their references (workers, managers, auditors)",
		endpoint: "GET /v1/children",
		flags: func(fs *flag.FlagSet) action {
			worker := fs.String("worker", "", "the worker's id (required)")
			limit := fs.Int("limit", 0, "children per page (default: the server's)")
			after := fs.String("after", "", "start after this child id (a previous page's next)")
			all := fs.Bool("all", false, "follow the next cursors to the last page")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				w := c.text("worker", *worker, 255)
				n, from := c.limit(*limit), c.optID("after", *after)
				if err := c.err(); err != nil {
					return err
				}
				first := ""
				if from != uuid.Nil {
					first = from.String()
				}
				pages, err := collectPages(ctx, inv, first, *all, func(ctx context.Context, after string, o ...client.CallOption) (api.ChildList, error) {
					id := uuid.Nil
					if after != "" {
						var err error
						if id, err = uuid.Parse(after); err != nil {
							return api.ChildList{}, err
						}
					}
					return inv.client.ChildrenAllocatedTo(ctx, w, id, n, o...)
				}, func(p api.ChildList) (*string, string) {
					if p.Next == nil {
						return nil, p.Position
					}
					next := p.Next.String()
					return &next, p.Position
				})
				if err != nil {
					return err
				}
				return printPagesOf(inv, pages, "children", func(t *table) {
					t.row("CHILD", "REFERENCE", "ALLOCATED WORKER")
					for _, p := range pages {
						for _, ch := range p.v.Children {
							t.row(ch.ChildID.String(), erasedText(ch.Reference), deref(ch.AllocatedWorkerID))
						}
					}
				})
			}
		},
	}
}
