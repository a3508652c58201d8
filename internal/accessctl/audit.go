package accessctl

import (
	"context"
	"flag"
	"fmt"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// The auditors' paged lists: the audit trail and the security log.

const pagingHelp = "Without --all, prints one page and, when there are more, the cursor of the next\n" +
	"page (pass it as --after). With --all, follows the cursors to the end; with\n" +
	"--output json it then prints one answer whose entries are those of every page."

// auditVerb reads the audit trail, one page or (--all) every page.
func auditVerb() verb {
	return verb{
		name: "audit", query: true,
		synopsis: "[--child ID] [--account ID] [--actor A] [--from RFC3339] [--to RFC3339] [--limit N] [--after CURSOR] [--all]",
		summary:  "list the audit trail's entries, oldest first (auditors)",
		help:     pagingHelp,
		endpoint: "GET /v1/audit",
		flags: func(fs *flag.FlagSet) action {
			child := fs.String("child", "", "only entries about this child")
			account := fs.String("account", "", "only entries about this account")
			actor := fs.String("actor", "", "only entries made by this actor (a token's sub)")
			from := fs.String("from", "", "only entries recorded at or after this time, RFC 3339")
			to := fs.String("to", "", "only entries recorded before this time, RFC 3339")
			limit := fs.Int("limit", 0, "entries per page (default: the server's)")
			after := fs.String("after", "", "start after this cursor (a previous page's next)")
			all := fs.Bool("all", false, "follow the next cursors to the last page")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				f := client.AuditFilter{Child: c.optID("child", *child), Account: c.optID("account", *account), Actor: *actor,
					From: c.optTime("from", *from), To: c.optTime("to", *to), Limit: c.limit(*limit), After: *after}
				if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
					c.fail("--to %s is before --from %s", *to, *from)
				}
				if err := c.err(); err != nil {
					return err
				}
				pages, err := collectPages(ctx, inv, f.After, *all, func(ctx context.Context, after string, o ...client.CallOption) (api.AuditPage, error) {
					f.After = after
					return inv.client.Audit(ctx, f, o...)
				}, func(p api.AuditPage) (*string, string) { return p.Next, p.Position })
				if err != nil {
					return err
				}
				return printPages(inv, pages, func(t *table) {
					t.row("SEQ", "RECORDED", "EFFECTIVE", "TYPE", "ACTOR", "REASON")
					for _, p := range pages {
						for _, e := range p.v.Entries {
							t.row(fmt.Sprint(e.Seq), humanTime(e.RecordedAt), humanTime(e.EffectiveAt), e.Type,
								withRole(e.Actor, e.ActorRole), e.Reason)
						}
					}
				})
			}
		},
	}
}

// securityLogVerb reads the security log, one page or (--all) every page.
func securityLogVerb() verb {
	return verb{
		name: "security-log", query: true,
		synopsis: "[--actor A] [--command C] [--code CODE] [--from RFC3339] [--to RFC3339] [--limit N] [--after CURSOR] [--all]",
		summary:  "list refused commands, newest first: who tried what, why it was refused, when (auditors)",
		help:     pagingHelp,
		endpoint: "GET /v1/security-log",
		flags: func(fs *flag.FlagSet) action {
			actor := fs.String("actor", "", "only refusals of this actor (a token's sub)")
			command := fs.String("command", "", "only refusals of this command, e.g. grant")
			code := fs.String("code", "", "only refusals with this problem code, e.g. forbidden")
			from := fs.String("from", "", "only refusals at or after this time, RFC 3339")
			to := fs.String("to", "", "only refusals before this time, RFC 3339")
			limit := fs.Int("limit", 0, "entries per page (default: the server's)")
			after := fs.String("after", "", "start after this cursor (a previous page's next)")
			all := fs.Bool("all", false, "follow the next cursors to the last page")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				f := client.SecurityFilter{Actor: *actor, Command: *command, Code: *code, From: c.optTime("from", *from),
					To: c.optTime("to", *to), Limit: c.limit(*limit), After: *after}
				if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
					c.fail("--to %s is not after --from %s", *to, *from)
				}
				if err := c.err(); err != nil {
					return err
				}
				pages, err := collectPages(ctx, inv, f.After, *all, func(ctx context.Context, after string, o ...client.CallOption) (api.SecurityLogPage, error) {
					f.After = after
					return inv.client.SecurityLog(ctx, f, o...)
				}, func(p api.SecurityLogPage) (*string, string) { return p.Next, p.Position })
				if err != nil {
					return err
				}
				return printPages(inv, pages, func(t *table) {
					t.row("WHEN", "ACTOR", "COMMAND", "TARGET", "CODE", "DETAIL")
					for _, p := range pages {
						for _, e := range p.v.Entries {
							t.row(humanTime(e.At), withRole(e.ActorID, e.ActorRole), e.Command, e.Target, e.Code, e.Detail)
						}
					}
				})
			}
		},
	}
}

func withRole(actor, role string) string {
	if role == "" {
		return actor
	}
	return actor + " (" + role + ")"
}

// limit checks --limit: 0 (the server's default) or positive.
func (c *checker) limit(n int) int {
	if n < 0 {
		c.fail("--limit %d: must be positive", n)
	}
	return n
}

// page is one page of a paged list: its answer, its next cursor (empty on
// the last page) and its position.
type page[P any] struct {
	v        P
	a        answer
	next     string
	position string
}

// collectPages reads the page after first and, with all, every following
// page, each request bounded by --timeout; cursor reads a page's next
// cursor and position.
func collectPages[P any](ctx context.Context, inv *invocation, first string, all bool,
	fetch func(ctx context.Context, after string, o ...client.CallOption) (P, error),
	cursor func(P) (*string, string)) ([]page[P], error) {
	var pages []page[P]
	seen := map[string]bool{first: true}
	after := first
	for {
		v, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (P, error) { return fetch(ctx, after, o...) })
		if err != nil {
			return nil, err
		}
		next, pos := cursor(v)
		p := page[P]{v: v, a: a, next: deref(next), position: pos}
		pages = append(pages, p)
		if !all || p.next == "" {
			return pages, nil
		}
		if seen[p.next] {
			return nil, fmt.Errorf("the server answered cursor %q twice: stopping", p.next)
		}
		seen[p.next] = true
		after = p.next
	}
}

// printPages prints the pages: in JSON one answer (the last page's, with
// the entries of every page), as a table what rows writes, then the next
// cursor and the position.
func printPages[P any](inv *invocation, pages []page[P], rows func(t *table)) error {
	return printPagesOf(inv, pages, "entries", rows)
}

// printPagesOf is printPages for a list whose items are under key.
func printPagesOf[P any](inv *invocation, pages []page[P], key string, rows func(t *table)) error {
	last := pages[len(pages)-1]
	if inv.json {
		if len(pages) == 1 {
			return writeJSON(inv.stdout, last.a.raw)
		}
		merged, err := mergePages(pages, key)
		if err != nil {
			return err
		}
		return encodeJSON(inv.stdout, merged)
	}
	t := newTable(inv.stdout)
	rows(t)
	if err := t.flush(); err != nil {
		return err
	}
	if n := last.next; n != "" {
		fmt.Fprintf(inv.stdout, "next: %s (more entries: run again with --after %s, or use --all)\n", cell(n), cell(n))
	}
	positionLine(inv.stdout, last.position)
	return nil
}

// mergePages makes one answer of several pages: the last page's answer with
// the items (under key) of every page.
func mergePages[P any](pages []page[P], key string) (any, error) {
	var entries []any
	var last map[string]any
	for _, p := range pages {
		v, err := decodeJSON(p.a.raw)
		if err != nil {
			return nil, fmt.Errorf("the server's answer is not JSON: %w", err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("the server's answer is not a JSON object")
		}
		es, _ := obj[key].([]any)
		entries = append(entries, es...)
		last = obj
	}
	if entries == nil {
		entries = []any{}
	}
	last[key] = entries
	return last, nil
}
