package accessctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// errEnough ends a watch that has printed the --count changes asked for.
var errEnough = errors.New("enough changes")

// watchVerb is `accessctl watch`: follows GET /v1/watch.
func watchVerb() verb {
	return verb{
		name: "watch", synopsis: "[--after POSITION] [--count N]", query: true,
		summary: "follow the access changes as they happen, one line per change (service)",
		help: "Prints one line per change of who may see what: the position, when it was recorded, the\n" +
			"account, the child, what the account may now do on the child's record (- for nothing), the\n" +
			"reason and until when it holds. --output json prints each change as one JSON object per\n" +
			"line. Runs until interrupted (Ctrl-C, exit 0) or until --count changes were printed.\n" +
			"Without --after it starts with the changes after now; with --after, a position token\n" +
			"from an earlier answer or line, it starts after that position (the server keeps the\n" +
			"latest changes only: older is refused as gone). A dropped connection is resumed after\n" +
			"the last change printed. --timeout bounds the first request (GET /v1/policy, to check\n" +
			"the server and the token), not the stream.",
		endpoint: "GET /v1/watch",
		flags: func(fs *flag.FlagSet) action {
			after := fs.String("after", "", "start after this `POSITION` (a position token; default: from now on)")
			count := fs.Int("count", 0, "stop after N changes (default: until interrupted)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				c.token("after", *after)
				if *count < 0 {
					c.fail("--count %d: must be positive", *count)
				}
				if inv.minPosition != "" {
					c.fail("--min-position does not apply to watch: give --after POSITION to start after a position")
				}
				if err := c.err(); err != nil {
					return err
				}
				// One ordinary request first: a wrong server or token is
				// reported at once, where the stream would retry forever.
				if _, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.Policy, error) {
					return inv.client.Policy(ctx, o...)
				}); err != nil {
					return err
				}
				if !inv.json {
					fmt.Fprintf(inv.stdout, watchLine, "POSITION", "AT", "ACCOUNT", "CHILD", "PERMISSIONS", "REASON", "UNTIL")
				}
				n := 0
				err := inv.client.Watch(ctx, *after, func(e api.WatchEvent) error {
					if err := printChange(inv.stdout, inv.json, e); err != nil {
						return err
					}
					if n++; *count > 0 && n >= *count {
						return errEnough
					}
					return nil
				})
				switch {
				case errors.Is(err, errEnough), ctx.Err() != nil:
					return nil // asked to stop: done
				case errors.Is(err, client.ErrGone):
					where := "position " + *after
					if n > 0 || *after == "" {
						where = "the last change printed" // a reconnect that came too late
					}
					return &exitCodeError{code: exitError, msg: fmt.Sprintf("the server no longer keeps the changes after %s: "+
						"read again the lists you keep (children, viewers), then watch without --after (from now on)", where)}
				}
				return err
			}
		},
	}
}

// watchLine lays out a watch line; ids are 36 characters, a reason at most
// 18, permissions at most 32.
const watchLine = "%-10s  %-23s  %-36s  %-36s  %-32s  %-18s  %s\n"

// printChange prints one change: a line of watchLine, or in JSON one
// compact object with sorted keys.
func printChange(w io.Writer, asJSON bool, e api.WatchEvent) error {
	if asJSON {
		raw, err := json.Marshal(e)
		if err != nil {
			return err
		}
		v, err := decodeJSON(raw)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err = w.Write(b.Bytes())
		return err
	}
	_, err := fmt.Fprintf(w, watchLine, cell(e.Position), humanTime(e.At), e.AccountID.String(), e.ChildID.String(),
		cell(permissions(e.Permissions)), cell(string(e.Reason)), humanTimePtr(e.Until))
	return err
}
