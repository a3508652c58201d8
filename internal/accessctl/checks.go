package accessctl

// The checks verb: many checks in one request (POST /v1/checks).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// stdin is what --file - reads (tests replace it).
var stdin io.Reader = os.Stdin

// maxChecksFile bounds the file of checks accessctl reads (1,000 checks
// take about 125 KiB).
const maxChecksFile = 1 << 20

// checksVerb is `accessctl checks`.
func checksVerb() verb {
	return verb{
		name: "checks", synopsis: "--file FILE|- [--at RFC3339]", query: true,
		summary:  "ask up to 1,000 checks in one request, all answered at one position",
		endpoint: "POST /v1/checks",
		help: "FILE (- for standard input) holds the checks, each as the API takes it:\n" +
			"  {\"account_id\":ID,\"child_id\":ID,\"permission\":P}  (or \"carer_id\" for a carer record)\n" +
			"either one per line (JSON lines; blank lines are skipped) or as one JSON array.\n" +
			"P is one of " + strings.Join(checkPermissions, ", ") + "; 1 to 1,000 checks. A bad check is\n" +
			"reported by its line (or index) and nothing is sent. The table lists the answers\n" +
			"in the file's order, then the one position they were all answered at; an id the\n" +
			"server has never seen is answered \"not_found\" for that check alone. Exits 0\n" +
			"whatever the answers (unlike check: read ALLOWED, or --output json).",
		flags: func(fs *flag.FlagSet) action {
			file := fs.String("file", "", "the checks: a FILE of JSON lines or a JSON array; - for standard input (required)")
			at := fs.String("at", "", "answer every check as of this time, RFC 3339 (default now)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				t := c.optTime("at", *at)
				if *file == "" {
					c.fail("--file is required (- for standard input)")
				}
				if err := c.err(); err != nil {
					return err
				}
				items, err := readChecks(*file)
				if err != nil {
					return err
				}
				r, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChecksAnswer, error) {
					return inv.client.Checks(ctx, items, t, o...)
				})
				if err != nil {
					return err
				}
				if len(r.Results) != len(items) {
					return fmt.Errorf("the server answered %d checks, not %d", len(r.Results), len(items))
				}
				return inv.print(a, func(w io.Writer) error {
					tb := newTable(w)
					tb.row("ACCOUNT", "CHILD OR CARER", "PERMISSION", "ALLOWED", "REASON", "UNTIL")
					for i, it := range items {
						record := "child " + it.Child.String()
						if it.Carer != uuid.Nil {
							record = "carer " + it.Carer.String()
						}
						allowed := "no"
						if r.Results[i].Allowed {
							allowed = "yes"
						}
						tb.row(it.Account.String(), record, string(it.Permission), allowed, string(r.Results[i].Reason),
							humanTimePtr(r.Results[i].Until))
					}
					if err := tb.flush(); err != nil {
						return err
					}
					positionLine(w, r.Position)
					return nil
				})
			}
		},
	}
}

// checkLine is one check as the file gives it.
type checkLine struct {
	AccountID  string `json:"account_id"`
	ChildID    string `json:"child_id"`
	CarerID    string `json:"carer_id"`
	Permission string `json:"permission"`
}

// readChecks reads and checks the file of checks (- for stdin): JSON lines
// or one JSON array. Every mistake is a usage error naming its line (or,
// in an array, its index); nothing is sent then.
func readChecks(name string) ([]client.CheckItem, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef("--file: %v", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxChecksFile+1))
	if err != nil {
		return nil, usagef("--file %s: %v", name, err)
	}
	if len(data) > maxChecksFile {
		return nil, usagef("--file %s: larger than %d bytes (at most %d checks)", name, maxChecksFile, client.MaxChecks)
	}
	var lines []checkLine
	var where []string // where each check is, for mistakes
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&lines); err != nil {
			return nil, usagef("--file %s: not a JSON array of checks: %v", name, err)
		}
		if dec.More() {
			return nil, usagef("--file %s: more after the JSON array", name)
		}
		for i := range lines {
			where = append(where, fmt.Sprintf("check %d", i+1))
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 4096), maxChecksFile)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var l checkLine
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&l); err != nil || dec.More() {
				return nil, usagef("--file %s: line %d is not one JSON object of a check: %v", name, n, firstErr(err, "more after it"))
			}
			lines, where = append(lines, l), append(where, fmt.Sprintf("line %d", n))
		}
		if err := sc.Err(); err != nil {
			return nil, usagef("--file %s: %v", name, err)
		}
	}
	if len(lines) == 0 || len(lines) > client.MaxChecks {
		return nil, usagef("--file %s: %d checks; give 1 to %d", name, len(lines), client.MaxChecks)
	}
	var c checker
	items := make([]client.CheckItem, len(lines))
	for i, l := range lines {
		var lc checker
		it := client.CheckItem{Account: lc.id("account_id", l.AccountID)}
		switch {
		case l.ChildID != "" && l.CarerID != "":
			lc.fail("give child_id or carer_id, not both")
		case l.ChildID == "" && l.CarerID == "":
			lc.fail("child_id or carer_id is required")
		case l.ChildID != "":
			it.Child = lc.id("child_id", l.ChildID)
		default:
			it.Carer = lc.id("carer_id", l.CarerID)
		}
		it.Permission = api.Permission(lc.oneOf("permission", l.Permission, checkPermissions))
		for _, e := range lc.errs {
			// The checker names flags: here they are fields.
			c.fail("--file %s, %s: %s", name, where[i], strings.TrimPrefix(e, "--"))
		}
		items[i] = it
	}
	return items, c.err()
}

func firstErr(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}
