// Package exportcsv writes the CSV form of the subject access exports
// (R21): a zip of CSV files, one per part of the export, each with a header
// row, so that a spreadsheet opens every part. The HTTP API and the
// auditor's console serve the same bytes.
package exportcsv

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
)

// Values are as in the JSON document: times in RFC 3339
// UTC, null as an empty cell, permissions joined with a space, an event's
// data as its JSON.

// csvTable is one CSV file of an export.
type csvTable struct {
	name   string
	header []string
	rows   [][]string
}

func (t *csvTable) add(cells ...string) { t.rows = append(t.rows, cells) }

// formulaStart are the first characters that make a spreadsheet read a
// cell as a formula ("CSV injection"): such a cell is written with a
// leading "'", which spreadsheets show as text. A free-text reason is the
// only way such a value gets in.
const formulaStart = "=+-@\t\r"

func safeCell(s string) string {
	if s != "" && strings.ContainsRune(formulaStart, rune(s[0])) {
		return "'" + s
	}
	return s
}

// writeZip writes tables as a zip of CSV files, in order.
func writeZip(w io.Writer, modified time.Time, tables ...*csvTable) error {
	z := zip.NewWriter(w)
	for _, t := range tables {
		f, err := z.CreateHeader(&zip.FileHeader{Name: t.name, Method: zip.Deflate, Modified: modified})
		if err != nil {
			return err
		}
		c := csv.NewWriter(f)
		if err := c.Write(t.header); err != nil {
			return err
		}
		for _, r := range t.rows {
			if len(r) != len(t.header) {
				return fmt.Errorf("export %s: a row of %d cells under %d columns", t.name, len(r), len(t.header))
			}
			for i := range r {
				r[i] = safeCell(r[i])
			}
			if err := c.Write(r); err != nil {
				return err
			}
		}
		if c.Flush(); c.Error() != nil {
			return c.Error()
		}
	}
	return z.Close()
}

func cellTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func cellOptTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return cellTime(*t)
}

func cellOpt(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func cellOptID(id *uuid.UUID) string {
	if id == nil {
		return ""
	}
	return id.String()
}

func cellPermissions(ps api.Permissions) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return strings.Join(out, " ")
}

func eventsTable(events []api.AuditEntry) *csvTable {
	t := &csvTable{name: "events.csv", header: []string{"seq", "position", "event_id", "type", "stream", "child_id", "account_id",
		"effective_at", "recorded_at", "actor", "actor_role", "reason", "data", "leaf_index", "leaf_hash", "hash"}}
	for _, e := range events {
		t.add(strconv.Itoa(e.Seq), e.Position, e.EventID.String(), e.Type, e.Stream, cellOptID(e.ChildID), cellOptID(e.AccountID),
			cellTime(e.EffectiveAt), cellTime(e.RecordedAt), e.Actor, e.ActorRole, e.Reason, string(e.Data),
			strconv.Itoa(e.LeafIndex), e.LeafHash, e.Hash)
	}
	return t
}

func refCells(r *api.EventRef, reason *string) []string {
	if r == nil {
		return []string{"", "", "", "", "", ""}
	}
	return []string{r.EventID.String(), r.Type, r.Actor, r.ActorRole, r.Position, cellOpt(reason)}
}

func intervalsTable(ivs []api.ExportInterval) *csvTable {
	t := &csvTable{name: "intervals.csv", header: []string{"account_id", "child_id", "reason", "permissions", "from", "to",
		"opened_by_event_id", "opened_by_type", "opened_by_actor", "opened_by_actor_role", "opened_by_position", "opened_by_reason",
		"closed_by_event_id", "closed_by_type", "closed_by_actor", "closed_by_actor_role", "closed_by_position", "closed_by_reason",
		"recorded_position"}}
	for _, iv := range ivs {
		row := []string{iv.AccountID.String(), iv.ChildID.String(), string(iv.Reason), cellPermissions(iv.Permissions),
			cellTime(iv.From), cellOptTime(iv.To)}
		row = append(row, refCells(iv.OpenedByEvent, iv.OpenedByReason)...)
		row = append(row, refCells(iv.ClosedByEvent, iv.ClosedByReason)...)
		t.add(append(row, iv.RecordedPosition)...)
	}
	return t
}

func refusedTable(entries []api.SecurityLogEntry) *csvTable {
	t := &csvTable{name: "refused.csv", header: []string{"id", "at", "actor_id", "actor_role", "command", "target", "code", "detail",
		"request_id", "correlation_id"}}
	for _, e := range entries {
		t.add(strconv.Itoa(e.ID), cellTime(e.At), e.ActorID, e.ActorRole, e.Command, e.Target, e.Code, e.Detail, e.RequestID,
			cellOptID(e.CorrelationID))
	}
	return t
}

func viewsTable(views []api.ViewEntry) *csvTable {
	t := &csvTable{name: "views.csv", header: []string{"view_id", "account_id", "child_id", "permission", "viewed_at", "recorded_at",
		"allowed", "reason", "decided_at_position", "reported_by"}}
	for _, v := range views {
		t.add(v.ViewID.String(), v.AccountID.String(), v.ChildID.String(), string(v.Permission), cellTime(v.ViewedAt),
			cellTime(v.RecordedAt), strconv.FormatBool(v.Allowed), string(v.Reason), v.DecidedAtPosition, v.ReportedBy)
	}
	return t
}

func alertsTable(alerts []api.Alert) *csvTable {
	t := &csvTable{name: "alerts.csv", header: []string{"alert_id", "kind", "account_id", "child_id", "at", "raised_at", "detail", "view_id"}}
	for _, a := range alerts {
		t.add(a.AlertID.String(), string(a.Kind), a.AccountID.String(), a.ChildID.String(), cellTime(a.At), cellTime(a.RaisedAt),
			a.Detail, a.ViewID.String())
	}
	return t
}

var (
	placementHeader = []string{"child_id", "placement_id", "carer_account_id", "started_at", "ended_at", "grace_until", "status"}
	grantHeader     = []string{"child_id", "account_id", "relationship", "permissions", "granted_at", "expires_at", "review_by",
		"revoked_at", "status"}
)

// AccountZip writes x as a zip of account.csv, events.csv, intervals.csv,
// placements.csv, grants.csv, refused.csv, views.csv and alerts.csv.
func AccountZip(w io.Writer, x api.AccountExport) error {
	a := x.Account
	account := &csvTable{name: "account.csv", header: []string{"account_id", "kind", "status", "email", "identity_subject",
		"phone_hint", "invited_at", "expires_at", "activated_at", "closed_at", "erased", "erased_at", "phone_reset_requested",
		"exported_at", "position"}}
	account.add(a.AccountID.String(), string(a.Kind), string(a.Status), cellOpt(a.Email), cellOpt(a.IdentitySubject),
		cellOpt(a.PhoneHint), cellTime(a.InvitedAt), cellTime(a.ExpiresAt), cellOptTime(a.ActivatedAt), cellOptTime(a.ClosedAt),
		strconv.FormatBool(a.Erased), cellOptTime(a.ErasedAt), strconv.FormatBool(a.PhoneResetRequested),
		cellTime(x.ExportedAt), x.Position)
	placements := &csvTable{name: "placements.csv", header: placementHeader}
	for _, p := range x.Placements {
		placements.add(p.ChildID.String(), p.PlacementID.String(), p.CarerAccountID.String(), cellTime(p.StartedAt),
			cellOptTime(p.EndedAt), cellOptTime(p.GraceUntil), string(p.Status))
	}
	grants := &csvTable{name: "grants.csv", header: grantHeader}
	for _, g := range x.Grants {
		grants.add(g.ChildID.String(), g.AccountID.String(), string(g.Relationship), cellPermissions(g.Permissions),
			cellTime(g.GrantedAt), cellOptTime(g.ExpiresAt), cellOptTime(g.ReviewBy), cellOptTime(g.RevokedAt), string(g.Status))
	}
	return writeZip(w, x.ExportedAt, account, eventsTable(x.Events), intervalsTable(x.Intervals), placements, grants,
		refusedTable(x.Refused), viewsTable(x.Views), alertsTable(x.Alerts))
}

// ChildZip writes x as a zip of child.csv, placements.csv, grants.csv,
// events.csv, intervals.csv, refused.csv, views.csv and alerts.csv.
func ChildZip(w io.Writer, x api.ChildExport) error {
	c := x.Child
	child := &csvTable{name: "child.csv", header: []string{"child_id", "reference", "allocated_worker_id", "retain_until", "erased",
		"exported_at", "position"}}
	child.add(c.ChildID.String(), cellOpt(c.Reference), cellOpt(c.AllocatedWorkerID), cellOptTime(c.RetainUntil),
		strconv.FormatBool(c.Erased), cellTime(x.ExportedAt), x.Position)
	placements := &csvTable{name: "placements.csv", header: placementHeader}
	for _, p := range c.Placements {
		placements.add(c.ChildID.String(), p.PlacementID.String(), p.CarerAccountID.String(), cellTime(p.StartedAt),
			cellOptTime(p.EndedAt), cellOptTime(p.GraceUntil), string(p.Status))
	}
	grants := &csvTable{name: "grants.csv", header: grantHeader}
	for _, g := range c.Grants {
		grants.add(c.ChildID.String(), g.AccountID.String(), string(g.Relationship), cellPermissions(g.Permissions),
			cellTime(g.GrantedAt), cellOptTime(g.ExpiresAt), cellOptTime(g.ReviewBy), cellOptTime(g.RevokedAt), string(g.Status))
	}
	return writeZip(w, x.ExportedAt, child, placements, grants, eventsTable(x.Events), intervalsTable(x.Intervals),
		refusedTable(x.Refused), viewsTable(x.Views), alertsTable(x.Alerts))
}

// Bytes renders an export with write into memory, so that a failure
// midway answers a problem rather than half a zip.
func Bytes[T any](x T, write func(io.Writer, T) error) ([]byte, error) {
	var buf bytes.Buffer
	if err := write(&buf, x); err != nil {
		return nil, fmt.Errorf("write the export's zip: %w", err)
	}
	return buf.Bytes(), nil
}
