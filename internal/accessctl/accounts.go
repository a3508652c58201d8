package accessctl

import (
	"context"
	"flag"
	"strings"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// accountStatuses are the statuses the accounts list filters by.
var accountStatuses = []string{"invited", "active", "expired", "closed"}

// accountsVerb is `accessctl accounts`: find an account by email or
// identity subject, or list accounts page by page.
func accountsVerb() verb {
	return verb{
		name: "accounts", query: true,
		synopsis: "(--email E | --identity-subject S | [--status S] [--kind K] [--needs-phone-enrolment true|false]\n" +
			"       [--phone-reset-requested true|false] [--limit N] [--after ID] [--all]) [--at RFC3339]",
		summary: "find the account of an email or identity subject, or list accounts by status and kind",
		help: "--email or --identity-subject finds the one account that has it (an empty table when none\n" +
			"does) and takes no other filter but --at. Otherwise the filters combine, accounts come in\n" +
			"account id order, and the portals team finds the accounts waiting for a phone clear with\n" +
			"--phone-reset-requested true. --at sets the time of STATUS and of the phone columns.\n\n" +
			pagingHelp,
		endpoint: "GET /v1/accounts",
		flags: func(fs *flag.FlagSet) action {
			email := fs.String("email", "", "the account of this email address")
			subject := fs.String("identity-subject", "", "the account linked to this identity provider subject id")
			status := fs.String("status", "", "only accounts with this status: "+strings.Join(accountStatuses, ", "))
			kind := fs.String("kind", "", "only accounts of this kind: "+strings.Join(accountKinds, ", "))
			needsPhone := fs.String("needs-phone-enrolment", "", "only accounts that need (true) or do not need (false) phone enrolment")
			resetRequested := fs.String("phone-reset-requested", "", "only accounts with (true) or without (false) an open phone reset request")
			at := fs.String("at", "", "statuses as of this time, RFC 3339 (default now)")
			limit := fs.Int("limit", 0, "accounts per page (default: the server's)")
			after := fs.String("after", "", "start after this account id (a previous page's next)")
			all := fs.Bool("all", false, "follow the next cursors to the last page")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				f := client.AccountFilter{Email: *email, IdentitySubject: *subject, At: c.optTime("at", *at),
					Limit: c.limit(*limit), After: c.optID("after", *after)}
				if *status != "" {
					f.Status = api.AccountStatus(c.oneOf("status", *status, accountStatuses))
				}
				if *kind != "" {
					f.Kind = api.AccountKind(c.oneOf("kind", *kind, accountKinds))
				}
				f.NeedsPhoneEnrolment = c.optBool("needs-phone-enrolment", *needsPhone)
				f.PhoneResetRequested = c.optBool("phone-reset-requested", *resetRequested)
				if *email != "" {
					c.email("email", *email)
				}
				if *subject != "" {
					c.text("identity-subject", *subject, 255)
				}
				lookup := *email != "" || *subject != ""
				switch {
				case *email != "" && *subject != "":
					c.fail("give --email or --identity-subject, not both")
				case lookup && (*status != "" || *kind != "" || *needsPhone != "" || *resetRequested != "" ||
					*limit != 0 || *after != "" || *all):
					c.fail("--email and --identity-subject find one account: they take no other filter, nor paging (only --at)")
				}
				if err := c.err(); err != nil {
					return err
				}
				first := ""
				if f.After != uuid.Nil {
					first = f.After.String()
				}
				pages, err := collectPages(ctx, inv, first, *all, func(ctx context.Context, after string, o ...client.CallOption) (api.AccountList, error) {
					if after != "" {
						id, err := uuid.Parse(after)
						if err != nil {
							return api.AccountList{}, err
						}
						f.After = id
					}
					return inv.client.Accounts(ctx, f, o...)
				}, func(p api.AccountList) (*string, string) {
					if p.Next == nil {
						return nil, p.Position
					}
					next := p.Next.String()
					return &next, p.Position
				})
				if err != nil {
					return err
				}
				return printPagesOf(inv, pages, "accounts", func(t *table) {
					t.row("ACCOUNT", "EMAIL", "KIND", "STATUS", "INVITED", "EXPIRES", "ACTIVATED", "PHONE")
					for _, p := range pages {
						for _, a := range p.v.Accounts {
							t.row(a.AccountID.String(), erasedText(a.Email), string(a.Kind), string(a.Status), humanTime(a.InvitedAt),
								humanTime(a.ExpiresAt), humanTimePtr(a.ActivatedAt), phoneText(a))
						}
					}
				})
			}
		},
	}
}

// phoneText describes an account's 2FA phone for a table: its masked
// hint, whether it must enrol one, whether a reset was requested.
func phoneText(a api.AccountListItem) string {
	var parts []string
	if h := deref(a.PhoneHint); h != "" {
		parts = append(parts, h)
	}
	if a.NeedsPhoneEnrolment {
		parts = append(parts, "needs enrolment")
	}
	if a.PhoneResetRequested {
		parts = append(parts, "reset requested")
	}
	return strings.Join(parts, ", ")
}

// optBool parses an optional true|false flag ("": nil, no filter).
func (c *checker) optBool(name, s string) *bool {
	switch s {
	case "":
		return nil
	case "true", "false":
		b := s == "true"
		return &b
	}
	c.fail("--%s %q: want true or false", name, s)
	return nil
}
