package accessctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// exportFormats are the formats of an export.
var exportFormats = []string{"json", "csv"}

// exportVerb is `accessctl export`: a subject access export (R21) into a
// file.
func exportVerb() verb {
	return verb{
		name: "export", synopsis: "(--account ID | --child ID) [--format json|csv] [--out FILE]", query: true,
		summary: "write everything the engine holds about an account or a child to a file (auditor, dpo)",
		help: "For a subject access request (UK GDPR Art. 15): the lifecycle, every event about the subject with\n" +
			"its actor and reason, every access interval, placements, grants and refused attempts. json is one\n" +
			"document; csv is a zip of CSV files (one per part, each with a header row) a spreadsheet opens.\n" +
			"The file holds personal data: it is created readable by you alone (0600), and never overwritten.\n" +
			"--out - writes to standard output. The default file is <account|child>-<id>-export.<json|zip>.",
		endpoint: "GET /v1/accounts/{account_id}/export, GET /v1/children/{child_id}/export",
		flags: func(fs *flag.FlagSet) action {
			account := fs.String("account", "", "the account to export (this or --child)")
			child := fs.String("child", "", "the child to export (this or --account)")
			format := fs.String("format", "json", "json or csv")
			out := fs.String("out", "", "the file to write (default <account|child>-<id>-export.<json|zip>; - for standard output)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				var id uuid.UUID
				subject := "account"
				switch {
				case *account != "" && *child != "":
					c.fail("give --account or --child, not both")
				case *account == "" && *child == "":
					c.fail("--account or --child is required")
				case *account != "":
					id = c.id("account", *account)
				default:
					subject, id = "child", c.id("child", *child)
				}
				asCSV := c.oneOf("format", *format, exportFormats) == "csv"
				if err := c.err(); err != nil {
					return err
				}
				path := *out
				if path == "" {
					ext := ".json"
					if asCSV {
						ext = ".zip"
					}
					path = subject + "-" + id.String() + "-export" + ext
				}
				if path != "-" {
					if _, err := os.Lstat(path); err == nil {
						return usagef("%s exists: give another --out (an export never replaces a file)", path)
					}
				}
				body, summary, err := fetchExport(ctx, inv, subject, id, asCSV)
				if err != nil {
					return err
				}
				if path == "-" {
					_, err := inv.stdout.Write(body)
					return err
				}
				if err := writeNewPrivateFile(path, body); err != nil {
					return err
				}
				if inv.json {
					return printLedgerJSON(inv.stdout, map[string]any{"file": path, "bytes": len(body), "subject": subject, "id": id})
				}
				return keyValues(inv.stdout, kv("file", path), kv("bytes", fmt.Sprint(len(body))), kv("contents", summary))
			}
		},
	}
}

// fetchExport asks for the export and returns it as the server sent it,
// with a one-line summary of what it holds.
func fetchExport(ctx context.Context, inv *invocation, subject string, id uuid.UUID, asCSV bool) ([]byte, string, error) {
	switch {
	case asCSV:
		body, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) ([]byte, error) {
			if subject == "child" {
				return inv.client.ChildExportCSV(ctx, id, o...)
			}
			return inv.client.AccountExportCSV(ctx, id, o...)
		})
		return body, "a zip of CSV files", err
	case subject == "child":
		x, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ChildExport, error) {
			return inv.client.ChildExport(ctx, id, o...)
		})
		return a.raw, fmt.Sprintf("%d events, %d intervals, %d placements, %d grants, %d refused", len(x.Events),
			len(x.Intervals), len(x.Child.Placements), len(x.Child.Grants), len(x.Refused)), err
	default:
		x, a, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.AccountExport, error) {
			return inv.client.AccountExport(ctx, id, o...)
		})
		return a.raw, fmt.Sprintf("%d events, %d intervals, %d placements, %d grants, %d refused", len(x.Events),
			len(x.Intervals), len(x.Placements), len(x.Grants), len(x.Refused)), err
	}
}

// writeNewPrivateFile writes body to a new file at path, readable by its
// owner alone; it never replaces an existing file, and leaves no partial
// file behind when it fails.
func writeNewPrivateFile(path string, body []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s was created while the export was read; not replaced: %w", path, err)
	}
	if err != nil {
		return fmt.Errorf("create the export file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if _, err := f.Write(body); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
