package accessctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/accessledger/accessledger/api"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// writeJSON prints a server answer as indented JSON with object keys in
// sorted order, numbers exactly as sent and no HTML escaping: the same
// answer always prints the same bytes.
func writeJSON(w io.Writer, raw []byte) error {
	v, err := decodeJSON(raw)
	if err != nil {
		return fmt.Errorf("the server's answer is not JSON: %w", err)
	}
	return encodeJSON(w, v)
}

func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// row writes one row; cells must not contain tabs or newlines (cell
// cleans them).
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cell makes a value safe for one table cell: control characters (which
// would break the columns, or a terminal) become spaces; empty is "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// keyValues prints pairs as two aligned columns, e.g. "child_id  <id>".
func keyValues(w io.Writer, pairs ...[2]string) error {
	t := newTable(w)
	for _, p := range pairs {
		t.row(p[0], p[1])
	}
	return t.flush()
}

func kv(k, v string) [2]string { return [2]string{k, v} }

// humanTime prints a time for people: UTC, to the second ("2026-01-05
// 14:03:00 UTC"). The zero time is "-".
func humanTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 MST")
}

// humanTimePtr is humanTime for an optional time; nil is "-" (no end).
func humanTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return humanTime(*t)
}

// humanDuration prints a policy duration in the largest whole units, e.g.
// "7 days", "15 minutes", "1 hour 30 minutes".
func humanDuration(d time.Duration) string {
	if d <= 0 {
		return d.String()
	}
	units := []struct {
		name string
		d    time.Duration
	}{{"day", 24 * time.Hour}, {"hour", time.Hour}, {"minute", time.Minute}, {"second", time.Second}}
	var parts []string
	for _, u := range units {
		if n := d / u.d; n > 0 {
			name := u.name
			if n > 1 {
				name += "s"
			}
			parts = append(parts, strconv.FormatInt(int64(n), 10)+" "+name)
			d -= n * u.d
		}
	}
	if d > 0 || len(parts) == 0 {
		parts = append(parts, d.String())
	}
	return strings.Join(parts, " ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// permissions prints a permission list, "view,record"; none is "-".
func permissions[T ~string](p []T) string {
	names := make([]string, len(p))
	for i, n := range p {
		names[i] = string(n)
	}
	return strings.Join(names, ",")
}

// shortEvent names an event for a table: "type by actor (role)", or its id
// when the server sent no type.
func shortEvent(e *api.EventRef) string {
	if e == nil {
		return "-"
	}
	if e.Type == "" {
		return e.EventID.String()
	}
	s := e.Type
	if e.Actor != "" {
		s += " by " + e.Actor
		if e.ActorRole != "" {
			s += " (" + e.ActorRole + ")"
		}
	}
	if e.Reason != nil && *e.Reason != "" {
		s += ": " + strconv.Quote(clip(*e.Reason, maxShownReason))
	}
	return s
}

// maxShownReason is how much of a reason a table cell shows (--output
// json shows it whole).
const maxShownReason = 60

// clip shortens s to at most n runes, marking the cut with "…".
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// positionLine prints a query's position under its table.
func positionLine(w io.Writer, p string) {
	if p != "" {
		fmt.Fprintf(w, "position: %s\n", cell(p))
	}
}

// erasedText prints a personal value that is null once erased (R22).
func erasedText(s *string) string {
	if s == nil {
		return "[erased]"
	}
	return *s
}
