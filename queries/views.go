package queries

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Views is the view log (R20): *viewlog.Log implements it.
type Views interface {
	Record(ctx context.Context, b viewlog.Batch) error
	ListViews(ctx context.Context, f viewlog.Filter) ([]viewlog.View, viewlog.Cursor, error)
	ListAlerts(ctx context.Context, f viewlog.Filter) ([]viewlog.Alert, viewlog.Cursor, error)
	AlertsRaisedAfter(ctx context.Context, after viewlog.Cursor, limit int) ([]viewlog.Alert, error)
}

// Bounds of RecordViews.
const (
	// MaxViews is the most views one RecordViews takes.
	MaxViews = viewlog.MaxBatch
	// ViewClockSkew is how far ahead of the engine's clock a view's
	// viewed_at may be (the portal's clock may run a little fast).
	ViewClockSkew = 5 * time.Minute
	// MaxViewAge is how far behind the engine's clock a view's viewed_at
	// may be (a portal may report late after an outage, not years late).
	MaxViewAge = 30 * 24 * time.Hour
)

// The parameter types of the view log, under the queries' names.
type (
	// ViewFilter selects a page of views or alerts.
	ViewFilter = viewlog.Filter
	// ViewCursor is the cursor of a page of views or alerts.
	ViewCursor = viewlog.Cursor
)

// Page sizes of the views and alerts lists.
const (
	ViewsDefaultLimit = viewlog.DefaultLimit
	ViewsMaxLimit     = viewlog.MaxLimit
)

// ParseViewCursor parses the "next" of a page of views or alerts; it fails
// with an error wrapping domain.ErrInvalid.
func ParseViewCursor(s string) (ViewCursor, error) { return viewlog.ParseCursor(s) }

// ViewInput is one view a portal reports: the account opened the child's
// record with the permission at ViewedAt.
type ViewInput struct {
	Account, Child uuid.UUID
	Permission     domain.Permission
	ViewedAt       time.Time
}

// RecordViews keeps views (1 to MaxViews), each with the access index's
// decision at its ViewedAt, and answers them in the order given. A view
// without access is kept too and raises an alert (kind
// view_without_access), written with its view and a security log entry
// (command "view", code view_without_access, target
// "child/<child>/view/<account>") in one transaction; an account or child
// the index does not know is a view without access (no_relationship).
//
// It fails with an *Invalid (nothing kept) for no views, more than
// MaxViews, a nil id, an unknown permission, or a ViewedAt more than
// ViewClockSkew ahead of the clock or more than MaxViewAge behind it.
// Views are not events: the answer's position is the index's position the
// decisions were made at.
func (s *Service) RecordViews(ctx context.Context, c Caller, in []ViewInput, w Consistency) (api.RecordViewsAnswer, error) {
	if err := s.Authorize(ctx, QueryRecordViews, c); err != nil {
		return api.RecordViewsAnswer{}, err
	}
	now := s.Now()
	if err := checkViews(in, now); err != nil {
		return api.RecordViewsAnswer{}, err
	}
	if err := s.waitIndex(ctx, w); err != nil {
		return api.RecordViewsAnswer{}, err
	}
	b := viewlog.Batch{Views: make([]viewlog.View, len(in))}
	out := api.RecordViewsAnswer{Views: make([]api.RecordedView, len(in))}
	var top eventlog.Position
	for i, v := range in {
		id, err := uuid.NewV7()
		if err != nil {
			return api.RecordViewsAnswer{}, fmt.Errorf("record views: view id: %w", err)
		}
		at := v.ViewedAt.UTC().Truncate(time.Microsecond)
		var a struct {
			allowed bool
			reason  domain.Reason
			pos     eventlog.Position
			unknown string
		}
		switch {
		case !s.cfg.Index.KnowsAccount(v.Account):
			a.reason, a.pos, a.unknown = domain.ReasonNoRelationship, s.cfg.Index.Position(), "the account is not known to the engine"
		case !s.cfg.Index.KnowsChild(v.Child):
			a.reason, a.pos, a.unknown = domain.ReasonNoRelationship, s.cfg.Index.Position(), "the child is not known to the engine"
		default:
			ans := s.cfg.Index.Check(v.Account, v.Child, v.Permission, at)
			a.allowed, a.reason, a.pos = ans.Allowed, ans.Reason, ans.Position
		}
		if top.Before(a.pos) {
			top = a.pos
		}
		b.Views[i] = viewlog.View{ID: id, AccountID: v.Account, ChildID: v.Child, Permission: v.Permission, ViewedAt: at,
			RecordedAt: now, Allowed: a.allowed, Reason: a.reason, Position: a.pos.String(), ActorID: c.Actor.ID}
		out.Views[i] = api.RecordedView{ViewID: id, Allowed: a.allowed, Reason: api.Reason(a.reason)}
		if a.allowed {
			continue
		}
		alertID, err := uuid.NewV7()
		if err != nil {
			return api.RecordViewsAnswer{}, fmt.Errorf("record views: alert id: %w", err)
		}
		detail := fmt.Sprintf("view %s: account %s opened the record of child %s with permission %s at %s without access (%s)",
			id, v.Account, v.Child, v.Permission, at.Format(time.RFC3339Nano), a.reason)
		if a.unknown != "" {
			detail += ": " + a.unknown
		}
		b.Alerts = append(b.Alerts, viewlog.Alert{ID: alertID, Kind: viewlog.KindViewWithoutAccess, AccountID: v.Account,
			ChildID: v.Child, At: at, RaisedAt: now, Detail: detail, ViewID: id})
		b.Security = append(b.Security, securitylog.Entry{At: now, ActorID: c.Actor.ID, ActorRole: string(c.Actor.Role),
			Command: "view", Target: "child/" + v.Child.String() + "/view/" + v.Account.String(),
			Code: viewlog.KindViewWithoutAccess, Detail: detail, RequestID: c.RequestID})
	}
	if err := s.cfg.Views.Record(ctx, b); err != nil {
		return api.RecordViewsAnswer{}, err
	}
	if len(b.Alerts) > 0 {
		s.cfg.Logger.WarnContext(ctx, "views without access", "alerts", len(b.Alerts), "views", len(b.Views),
			"actor", c.Actor.ID)
	}
	out.Position = top.String()
	return out, nil
}

// checkViews checks in as RecordViews documents.
func checkViews(in []ViewInput, now time.Time) error {
	if len(in) == 0 || len(in) > MaxViews {
		return &Invalid{Detail: fmt.Sprintf("views: send 1 to %d views, not %d", MaxViews, len(in))}
	}
	var problems []error
	for i, v := range in {
		name := fmt.Sprintf("views[%d]", i)
		switch {
		case v.Account == uuid.Nil:
			problems = append(problems, fmt.Errorf("%s.account_id: required", name))
		case v.Child == uuid.Nil:
			problems = append(problems, fmt.Errorf("%s.child_id: required", name))
		case v.Permission.String() == "unknown":
			problems = append(problems, fmt.Errorf("%s.permission: must be view, record or complete_outstanding", name))
		case v.ViewedAt.After(now.Add(ViewClockSkew)):
			problems = append(problems, fmt.Errorf("%s.viewed_at: more than %s ahead of the engine's clock", name, ViewClockSkew))
		case v.ViewedAt.Before(now.Add(-MaxViewAge)):
			problems = append(problems, fmt.Errorf("%s.viewed_at: more than %d days ago", name, MaxViewAge/(24*time.Hour)))
		}
		if len(problems) == 10 {
			problems = append(problems, errors.New("…"))
			break
		}
	}
	if err := errors.Join(problems...); err != nil {
		return &Invalid{Detail: err.Error()}
	}
	return nil
}

// ChildViews answers one page of the views of child's record, oldest
// first (R20). f.Child is set to child.
func (s *Service) ChildViews(ctx context.Context, c Caller, child uuid.UUID, f ViewFilter, w Consistency) (api.ViewPage, error) {
	f.Child, f.Account = &child, nil
	return s.viewPage(ctx, QueryChildViews, c, f, w)
}

// AccountViews answers one page of the views account made, oldest first
// (R20). f.Account is set to account.
func (s *Service) AccountViews(ctx context.Context, c Caller, account uuid.UUID, f ViewFilter, w Consistency) (api.ViewPage, error) {
	f.Child, f.Account = nil, &account
	return s.viewPage(ctx, QueryAccountViews, c, f, w)
}

func (s *Service) viewPage(ctx context.Context, q Name, c Caller, f ViewFilter, w Consistency) (api.ViewPage, error) {
	if err := s.Authorize(ctx, q, c); err != nil {
		return api.ViewPage{}, err
	}
	if err := s.waitIndex(ctx, w); err != nil {
		return api.ViewPage{}, err
	}
	pos := s.cfg.Index.Position()
	views, next, err := s.cfg.Views.ListViews(ctx, f)
	if err != nil {
		return api.ViewPage{}, err
	}
	out := api.ViewPage{Views: make([]api.ViewEntry, len(views)), Position: pos.String(), Next: viewCursor(next)}
	for i, v := range views {
		out.Views[i] = viewEntry(v)
	}
	return out, nil
}

// Alerts answers one page of the alerts, oldest first (R20).
func (s *Service) Alerts(ctx context.Context, c Caller, f ViewFilter, w Consistency) (api.AlertPage, error) {
	if err := s.Authorize(ctx, QueryAlerts, c); err != nil {
		return api.AlertPage{}, err
	}
	if err := s.waitIndex(ctx, w); err != nil {
		return api.AlertPage{}, err
	}
	pos := s.cfg.Index.Position()
	alerts, next, err := s.cfg.Views.ListAlerts(ctx, f)
	if err != nil {
		return api.AlertPage{}, err
	}
	out := api.AlertPage{Alerts: make([]api.Alert, len(alerts)), Position: pos.String(), Next: viewCursor(next)}
	for i, a := range alerts {
		out.Alerts[i] = alert(a)
	}
	return out, nil
}

// AlertsAfter returns the alerts raised after the cursor (raised_at,
// alert_id; with a nil id, at or after its time), in the order they were
// raised, at most ViewsMaxLimit: what the watch stream polls. The watch's
// caller was authorized by Watch.
func (f Feed) AlertsAfter(ctx context.Context, after ViewCursor) ([]api.Alert, error) {
	alerts, err := f.s.cfg.Views.AlertsRaisedAfter(ctx, after, viewlog.MaxLimit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Alert, len(alerts))
	for i, a := range alerts {
		out[i] = alert(a)
	}
	return out, nil
}

// Now is the query service's clock, in UTC to the microsecond: where a
// watch starts following the alerts.
func (f Feed) Now() time.Time { return f.s.Now() }

func viewCursor(c viewlog.Cursor) *string {
	if c.IsZero() {
		return nil
	}
	s := c.String()
	return &s
}

func viewEntry(v viewlog.View) api.ViewEntry {
	return api.ViewEntry{ViewID: v.ID, AccountID: v.AccountID, ChildID: v.ChildID, Permission: api.Permission(v.Permission.String()),
		ViewedAt: v.ViewedAt.UTC(), RecordedAt: v.RecordedAt.UTC(), Allowed: v.Allowed, Reason: api.Reason(v.Reason),
		DecidedAtPosition: v.Position, ReportedBy: v.ActorID}
}

func alert(a viewlog.Alert) api.Alert {
	return api.Alert{AlertID: a.ID, Kind: api.AlertKind(a.Kind), AccountID: a.AccountID, ChildID: a.ChildID, At: a.At.UTC(),
		RaisedAt: a.RaisedAt.UTC(), Detail: a.Detail, ViewID: a.ViewID}
}

// exportViews reads every view and alert f selects (Child or Account),
// oldest first.
func (s *Service) exportViews(ctx context.Context, f viewlog.Filter) ([]api.ViewEntry, []api.Alert, error) {
	views, alerts := []api.ViewEntry{}, []api.Alert{}
	f.Limit = viewlog.MaxLimit
	vf := f
	for pages := 0; ; pages++ {
		if pages == maxExportPages {
			return nil, nil, errors.New("read the views: too many pages")
		}
		page, next, err := s.cfg.Views.ListViews(ctx, vf)
		if err != nil {
			return nil, nil, fmt.Errorf("read the views: %w", err)
		}
		for _, v := range page {
			views = append(views, viewEntry(v))
		}
		if next.IsZero() {
			break
		}
		vf.After = next
	}
	af := f
	for pages := 0; ; pages++ {
		if pages == maxExportPages {
			return nil, nil, errors.New("read the alerts: too many pages")
		}
		page, next, err := s.cfg.Views.ListAlerts(ctx, af)
		if err != nil {
			return nil, nil, fmt.Errorf("read the alerts: %w", err)
		}
		for _, a := range page {
			alerts = append(alerts, alert(a))
		}
		if next.IsZero() {
			return views, alerts, nil
		}
		af.After = next
	}
}
