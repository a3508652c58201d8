package accessctl

import (
	"context"
	"flag"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// The record views (R20): `view` records one (the portal backend's call,
// to try by hand), `views` and `alerts` list them for auditors.

// viewVerb is `accessctl view`.
func viewVerb() verb {
	return verb{
		name: "view", synopsis: "--account ID --child ID --permission P [--at RFC3339]", query: true,
		summary:  "record that an account opened a child's record, kept with the access decision then (service)",
		help:     "P is the permission used, one of " + strings.Join(checkPermissions, ", ") + ". A view without access is kept\ntoo and raises an alert (accessctl alerts). Exits 0 either way.",
		endpoint: "POST /v1/views",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account that opened the record (required)")
			child := fs.String("child", "", "the child whose record (required)")
			perm := fs.String("permission", "", "one of "+strings.Join(checkPermissions, ", ")+" (required)")
			at := fs.String("at", "", "when the record was opened, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				v := api.RecordView{AccountID: c.id("account", *account).String(), ChildID: c.id("child", *child).String(),
					Permission: c.oneOf("permission", *perm, checkPermissions)}
				v.ViewedAt = c.timeOrNow("at", *at).UTC().Format(time.RFC3339Nano)
				if err := c.err(); err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.RecordViewsAnswer, error) {
					return inv.client.RecordViews(ctx, []api.RecordView{v}, o...)
				})
				if err != nil {
					return err
				}
				return inv.print(a, func(w io.Writer) error {
					var pairs [][2]string
					for _, rv := range r.Views {
						pairs = append(pairs, kv("view_id", rv.ViewID.String()), kv("allowed", yesNo(rv.Allowed)), kv("reason", string(rv.Reason)))
					}
					return keyValues(w, append(pairs, kv("position", r.Position))...)
				})
			}
		},
	}
}

// viewsFlags registers the paging flags of views and alerts and returns a
// function that reads them.
func viewsFlags(fs *flag.FlagSet, what string) func(c *checker) (client.ViewsFilter, bool) {
	from := fs.String("from", "", "only "+what+" at or after this time, RFC 3339")
	to := fs.String("to", "", "only "+what+" before this time, RFC 3339")
	limit := fs.Int("limit", 0, what+" per page (default: the server's)")
	after := fs.String("after", "", "start after this cursor (a previous page's next)")
	all := fs.Bool("all", false, "follow the next cursors to the last page")
	return func(c *checker) (client.ViewsFilter, bool) {
		f := client.ViewsFilter{From: c.optTime("from", *from), To: c.optTime("to", *to), Limit: c.limit(*limit), After: *after}
		if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
			c.fail("--to %s is not after --from %s", *to, *from)
		}
		return f, *all
	}
}

// viewsVerb is `accessctl views`.
func viewsVerb() verb {
	return verb{
		name: "views", synopsis: "(--child ID | --account ID) [--from RFC3339] [--to RFC3339] [--limit N] [--after CURSOR] [--all]", query: true,
		summary:  "list the views of a child's record, or the views an account made, oldest first, with the decision then (auditors)",
		help:     pagingHelp,
		endpoint: "GET /v1/children/{child_id}/views, GET /v1/accounts/{account_id}/views",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "the child (this or --account)")
			account := fs.String("account", "", "the account (this or --child)")
			filter := viewsFlags(fs, "views")
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
				f, all := filter(&c)
				if err := c.err(); err != nil {
					return err
				}
				pages, err := collectPages(ctx, inv, f.After, all, func(ctx context.Context, after string, o ...client.CallOption) (api.ViewPage, error) {
					f.After = after
					if childID != uuid.Nil {
						return inv.client.ChildViews(ctx, childID, f, o...)
					}
					return inv.client.AccountViews(ctx, accountID, f, o...)
				}, func(p api.ViewPage) (*string, string) { return p.Next, p.Position })
				if err != nil {
					return err
				}
				return printPages(inv, pages, func(t *table) {
					t.row("VIEWED", "ACCOUNT", "CHILD", "PERMISSION", "ALLOWED", "REASON", "VIEW")
					for _, p := range pages {
						for _, v := range p.v.Views {
							t.row(humanTime(v.ViewedAt), v.AccountID.String(), v.ChildID.String(), string(v.Permission),
								yesNo(v.Allowed), string(v.Reason), v.ViewID.String())
						}
					}
				})
			}
		},
	}
}

// alertsVerb is `accessctl alerts`.
func alertsVerb() verb {
	return verb{
		name: "alerts", synopsis: "[--from RFC3339] [--to RFC3339] [--limit N] [--after CURSOR] [--all]", query: true,
		summary: "list the alerts, oldest first: views of a child's record made without access (auditors)",
		help: pagingHelp + "\nNew alerts are also sent, as they are raised, on GET /v1/watch (events \"alert\", for\n" +
			"auditors and the service); accessctl watch prints the access changes only.",
		endpoint: "GET /v1/alerts",
		flags: func(fs *flag.FlagSet) action {
			filter := viewsFlags(fs, "alerts")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				f, all := filter(&c)
				if err := c.err(); err != nil {
					return err
				}
				pages, err := collectPages(ctx, inv, f.After, all, func(ctx context.Context, after string, o ...client.CallOption) (api.AlertPage, error) {
					f.After = after
					return inv.client.Alerts(ctx, f, o...)
				}, func(p api.AlertPage) (*string, string) { return p.Next, p.Position })
				if err != nil {
					return err
				}
				return printPages(inv, pages, func(t *table) {
					t.row("AT", "KIND", "ACCOUNT", "CHILD", "VIEW", "RAISED")
					for _, p := range pages {
						for _, a := range p.v.Alerts {
							t.row(humanTime(a.At), string(a.Kind), a.AccountID.String(), a.ChildID.String(), a.ViewID.String(),
								humanTime(a.RaisedAt))
						}
					}
				})
			}
		},
	}
}
