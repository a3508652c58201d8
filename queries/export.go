package queries

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accesshistory"
	"github.com/accessledger/accessledger/projections/accounts"
	"github.com/accessledger/accessledger/projections/audit"
)

// The subject access exports (R21): everything the engine holds about one
// account or one child, gathered from the read models at one consistency
// token. Each export is bounded by what one person's record holds (a few
// thousand events at most); it is read page by page, never as one query.

// maxExportPages bounds the pages an export reads from one read model: a
// cursor that never ends (a bug) fails the export instead of looping.
const maxExportPages = 100_000

// waitExport waits, as every query does, for the read models an export
// reads, and returns the least of their positions: every part of the
// export reflects at least the events up to it.
func (s *Service) waitExport(ctx context.Context, w Consistency, names ...string) (eventlog.Position, error) {
	if err := s.waitIndex(ctx, w); err != nil {
		return eventlog.Position{}, err
	}
	var least eventlog.Position
	for i, n := range names {
		pos, err := s.waitReadModel(ctx, n, w)
		if err != nil {
			return eventlog.Position{}, err
		}
		if i == 0 || pos.Before(least) {
			least = pos
		}
	}
	return least, nil
}

// exportEvents reads every audit trail entry that f selects, in log order.
func (s *Service) exportEvents(ctx context.Context, f audit.Filter) ([]api.AuditEntry, error) {
	out := []api.AuditEntry{}
	f.Limit = audit.MaxLimit
	for range maxExportPages {
		page, next, err := s.cfg.Audit.List(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("read the audit trail: %w", err)
		}
		for _, e := range page {
			out = append(out, auditEntry(e))
		}
		if next == 0 {
			return out, nil
		}
		f.After = next
	}
	return nil, errors.New("read the audit trail: too many pages")
}

// exportRefused reads every security log entry that f selects, newest
// first.
func (s *Service) exportRefused(ctx context.Context, f securitylog.Filter) ([]api.SecurityLogEntry, error) {
	out := []api.SecurityLogEntry{}
	f.Limit = securitylog.MaxLimit
	for range maxExportPages {
		page, next, err := s.cfg.SecurityLog.List(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("read the security log: %w", err)
		}
		for _, e := range page {
			out = append(out, securityEntry(e))
		}
		if next == 0 {
			return out, nil
		}
		f.After = next
	}
	return nil, errors.New("read the security log: too many pages")
}

// exportIntervals is the intervals as exported: with the free-text reasons
// of the events behind them, when those events are among events (an event
// of another person's stream is not, and its reason is not theirs to see).
func exportIntervals(ivs []accesshistory.Interval, events []api.AuditEntry) []api.ExportInterval {
	reasons := make(map[uuid.UUID]string, len(events))
	for _, e := range events {
		reasons[e.EventID] = e.Reason
	}
	reasonOf := func(ref *accesshistory.EventRef) *string {
		if ref == nil {
			return nil
		}
		r, ok := reasons[ref.ID]
		if !ok {
			return nil
		}
		return optText(r)
	}
	out := make([]api.ExportInterval, 0, len(ivs))
	for i, iv := range intervalsWith(ivs, reasons) {
		out = append(out, api.ExportInterval{AccountID: iv.AccountID, ChildID: iv.ChildID, Permissions: iv.Permissions,
			Reason: iv.Reason, From: iv.From, To: iv.To, OpenedByEvent: iv.OpenedByEvent, ClosedByEvent: iv.ClosedByEvent,
			RecordedPosition: iv.RecordedPosition, SupersededPosition: iv.SupersededPosition,
			OpenedByReason: reasonOf(ivs[i].OpenedBy), ClosedByReason: reasonOf(ivs[i].ClosedBy),
			GracePeriod: iv.GracePeriod, GracePolicy: iv.GracePolicy})
	}
	return out
}

// AccountExport answers everything the engine holds about account id
// (R21): its lifecycle and personal data, every event about it, its access
// history, its placements and grants, the refusals that named it, and
// the views it made and their alerts (R20). An
// account never invited fails with an error wrapping accounts.ErrNotFound.
func (s *Service) AccountExport(ctx context.Context, c Caller, id uuid.UUID, w Consistency) (api.AccountExport, error) {
	if err := s.Authorize(ctx, QueryAccountExport, c); err != nil {
		return api.AccountExport{}, err
	}
	pos, err := s.waitExport(ctx, w, accounts.ProjectionName, accesshistory.Name, audit.Name)
	if err != nil {
		return api.AccountExport{}, err
	}
	now := s.Now()
	v, err := s.cfg.Accounts.Get(ctx, id, now)
	if err != nil {
		return api.AccountExport{}, err
	}
	out := api.AccountExport{Subject: "account", AccountID: id, ExportedAt: now, Position: pos.String(),
		Account: api.ExportAccount{AccountID: id, Kind: api.AccountKind(v.Kind), Status: api.AccountStatus(v.Status),
			Email: optText(v.Email), IdentitySubject: optText(v.IdentitySubject), PhoneHint: optText(v.PhoneHint),
			InvitedAt: v.InvitedAt.UTC(), ExpiresAt: v.ExpiresAt.UTC(), ActivatedAt: optTime(v.ActivatedAt),
			ClosedAt: optTime(v.ClosedAt), Erased: !v.ErasedAt.IsZero(), ErasedAt: optTime(v.ErasedAt),
			PhoneResetRequested: v.PhoneResetRequested},
		Placements: []api.ExportPlacement{}, Grants: []api.ExportGrant{}}
	if out.Events, err = s.exportEvents(ctx, audit.Filter{AccountID: &id}); err != nil {
		return api.AccountExport{}, err
	}
	ivs, err := s.cfg.History.AccountHistory(ctx, id, accesshistory.Current)
	if err != nil {
		return api.AccountExport{}, fmt.Errorf("read the access history: %w", err)
	}
	out.Intervals = exportIntervals(ivs, out.Events)
	// The children the account is or was related to: those of its events
	// and of its history.
	var children []uuid.UUID
	for _, e := range out.Events {
		if e.ChildID != nil {
			children = append(children, *e.ChildID)
		}
	}
	for _, iv := range ivs {
		children = append(children, iv.ChildID)
	}
	slices.SortFunc(children, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	for _, child := range slices.Compact(children) {
		ch, cpos, err := s.cfg.ChildRecords.Child(ctx, child)
		if errors.Is(err, domain.ErrChildNotFound) {
			continue
		}
		if err != nil {
			return api.AccountExport{}, fmt.Errorf("read child %s: %w", child, err)
		}
		rec := childRecord(child, ch, now, cpos)
		for _, p := range rec.Placements {
			if p.CarerAccountID == id {
				out.Placements = append(out.Placements, api.ExportPlacement{ChildID: child, PlacementID: p.PlacementID,
					CarerAccountID: p.CarerAccountID, StartedAt: p.StartedAt, EndedAt: p.EndedAt, GraceUntil: p.GraceUntil,
					Status: api.ExportPlacementStatus(p.Status)})
			}
		}
		for _, g := range rec.Grants {
			if g.AccountID == id {
				out.Grants = append(out.Grants, api.ExportGrant{ChildID: child, AccountID: g.AccountID,
					Relationship: api.ExportGrantRelationship(g.Relationship), Permissions: g.Permissions, GrantedAt: g.GrantedAt,
					ExpiresAt: g.ExpiresAt, ReviewBy: g.ReviewBy, RevokedAt: g.RevokedAt, Status: api.ExportGrantStatus(g.Status)})
			}
		}
	}
	if out.Refused, err = s.exportRefused(ctx, securitylog.Filter{Account: &id}); err != nil {
		return api.AccountExport{}, err
	}
	if out.Views, out.Alerts, err = s.exportViews(ctx, viewlog.Filter{Account: &id}); err != nil {
		return api.AccountExport{}, err
	}
	s.cfg.Logger.InfoContext(ctx, "subject access export", "subject", "account", "account_id", id,
		"actor", c.Actor.ID, "role", c.Actor.Role, "events", len(out.Events), "intervals", len(out.Intervals))
	return out, nil
}

// ChildExport answers everything the engine holds about child id (R21):
// its record, every event about it, its access history, the refusals
// that named it, and the views of its record and their alerts (R20). Accounts appear by id only: their personal data is not
// the child's. A child never registered fails with an error wrapping
// domain.ErrChildNotFound.
func (s *Service) ChildExport(ctx context.Context, c Caller, id uuid.UUID, w Consistency) (api.ChildExport, error) {
	if err := s.Authorize(ctx, QueryChildExport, c); err != nil {
		return api.ChildExport{}, err
	}
	pos, err := s.waitExport(ctx, w, accesshistory.Name, audit.Name)
	if err != nil {
		return api.ChildExport{}, err
	}
	now := s.Now()
	ch, cpos, err := s.cfg.ChildRecords.Child(ctx, id)
	if err != nil {
		return api.ChildExport{}, err
	}
	out := api.ChildExport{Subject: "child", ChildID: id, Child: childRecord(id, ch, now, cpos), ExportedAt: now, Position: pos.String()}
	if out.Events, err = s.exportEvents(ctx, audit.Filter{ChildID: &id}); err != nil {
		return api.ChildExport{}, err
	}
	ivs, err := s.cfg.History.ChildHistory(ctx, id, accesshistory.Current)
	if err != nil {
		return api.ChildExport{}, fmt.Errorf("read the access history: %w", err)
	}
	out.Intervals = exportIntervals(ivs, out.Events)
	if out.Refused, err = s.exportRefused(ctx, securitylog.Filter{Child: &id}); err != nil {
		return api.ChildExport{}, err
	}
	if out.Views, out.Alerts, err = s.exportViews(ctx, viewlog.Filter{Child: &id}); err != nil {
		return api.ChildExport{}, err
	}
	s.cfg.Logger.InfoContext(ctx, "subject access export", "subject", "child", "child_id", id,
		"actor", c.Actor.ID, "role", c.Actor.Role, "events", len(out.Events), "intervals", len(out.Intervals))
	return out, nil
}
