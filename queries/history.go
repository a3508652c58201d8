package queries

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accesshistory"
)

// History is the access history read model (R15): *accesshistory.Reader
// implements it. Every method answers as known at k.
type History interface {
	// ChildHistory returns every interval in which someone could see child.
	ChildHistory(ctx context.Context, child uuid.UUID, k accesshistory.Known) ([]accesshistory.Interval, error)
	// WhoCouldSee returns the intervals of child that contain effective time at.
	WhoCouldSee(ctx context.Context, child uuid.UUID, at time.Time, k accesshistory.Known) ([]accesshistory.Interval, error)
	// AccountHistory returns every interval in which account could see a child.
	AccountHistory(ctx context.Context, account uuid.UUID, k accesshistory.Known) ([]accesshistory.Interval, error)
	// WhatCouldSee returns the intervals of account that contain effective time at.
	WhatCouldSee(ctx context.Context, account uuid.UUID, at time.Time, k accesshistory.Known) ([]accesshistory.Interval, error)
}

// HistoryParams are the parameters of the history queries: At keeps only
// the intervals that contain that effective time (zero: all); with AsOf
// given, the history as known once the event at AsOf had been recorded
// (which implies that consistency token).
//
// KnownAt, when not zero and HasAs is false, asks for the history as known
// at that recorded time: as of the newest event recorded by then (nothing,
// before the first event).
type HistoryParams struct {
	At      time.Time
	AsOf    eventlog.Position
	HasAs   bool
	KnownAt time.Time
	Consistency
}

// resolveKnownAt turns p.KnownAt into p.AsOf.
func (s *Service) resolveKnownAt(ctx context.Context, p HistoryParams) (HistoryParams, error) {
	if p.HasAs || p.KnownAt.IsZero() {
		return p, nil
	}
	pos, ok, err := s.cfg.Audit.KnownBy(ctx, p.KnownAt)
	if err != nil {
		return p, err
	}
	if !ok {
		pos = eventlog.Start
	}
	p.AsOf, p.HasAs = pos, true
	return p, nil
}

// known returns what p asks to be known, and the consistency it implies.
func (p HistoryParams) known() (accesshistory.Known, Consistency) {
	k, w := accesshistory.Current, p.Consistency
	if p.HasAs {
		k = accesshistory.AsOf(p.AsOf)
		if !w.Given || w.Min.Before(p.AsOf) {
			w = After(p.AsOf)
		}
	}
	return k, w
}

// refOf is e as answered, with its reason from reasons (none when the map
// does not hold it).
func refOf(e *accesshistory.EventRef, reasons map[uuid.UUID]string) *api.EventRef {
	if e == nil {
		return nil
	}
	r := &api.EventRef{EventID: e.ID, Type: e.Type, Actor: e.ActorID, ActorRole: e.ActorRole, Position: e.Position.String()}
	if text, ok := reasons[e.ID]; ok {
		r.Reason = optText(text)
	}
	return r
}

// eventStreams lists the streams that hold the events behind ivs: each
// interval's child stream and account stream.
func eventStreams(ivs []accesshistory.Interval) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, iv := range ivs {
		for _, ref := range []*accesshistory.EventRef{iv.OpenedBy, iv.ClosedBy} {
			if ref == nil {
				continue
			}
			if strings.HasPrefix(ref.Type, "account.") {
				add(domain.AccountStream(iv.AccountID))
			} else {
				add(domain.ChildStream(iv.ChildID))
			}
		}
	}
	return out
}

// withReasons answers ivs with the reasons of the events that opened and
// closed them (the worker's own words: "why", R15), read from the log.
func (s *Service) withReasons(ctx context.Context, ivs []accesshistory.Interval) ([]api.Interval, error) {
	reasons, err := s.cfg.ChildRecords.Reasons(ctx, eventStreams(ivs))
	if err != nil {
		return nil, err
	}
	return intervalsWith(ivs, reasons), nil
}

func intervalsWith(in []accesshistory.Interval, reasons map[uuid.UUID]string) []api.Interval {
	out := make([]api.Interval, 0, len(in))
	for _, iv := range in {
		j := api.Interval{AccountID: iv.AccountID, ChildID: iv.ChildID, Permissions: permissions(iv.Permissions),
			Reason: api.Reason(iv.Reason), From: iv.From.UTC(), To: optTime(iv.To),
			OpenedByEvent: refOf(iv.OpenedBy, reasons), ClosedByEvent: refOf(iv.ClosedBy, reasons), RecordedPosition: iv.RecordedAt.String()}
		if iv.SupersededAt != nil {
			p := iv.SupersededAt.String()
			j.SupersededPosition = &p
		}
		if iv.GracePeriod > 0 {
			secs := int(iv.GracePeriod / time.Second)
			j.GracePeriod = &secs
		}
		if iv.GracePolicy != nil {
			j.GracePolicy = &api.PolicyRef{EventID: iv.GracePolicy.ID, Position: iv.GracePolicy.Position.String()}
		}
		out = append(out, j)
	}
	return out
}

func asOf(k accesshistory.Known) *string {
	if k.AsOf == nil {
		return nil
	}
	p := k.AsOf.String()
	return &p
}

// ChildHistory answers every interval in which someone could see child
// (R15), or those that contain p.At.
func (s *Service) ChildHistory(ctx context.Context, c Caller, child uuid.UUID, p HistoryParams) (api.ChildHistory, error) {
	if err := s.Authorize(ctx, QueryChildHistory, c); err != nil {
		return api.ChildHistory{}, err
	}
	p, err := s.resolveKnownAt(ctx, p)
	if err != nil {
		return api.ChildHistory{}, err
	}
	k, w := p.known()
	pos, err := s.waitReadModel(ctx, accesshistory.Name, w)
	if err != nil {
		return api.ChildHistory{}, err
	}
	if err := s.knownChild(child); err != nil {
		return api.ChildHistory{}, err
	}
	var ivs []accesshistory.Interval
	if p.At.IsZero() {
		ivs, err = s.cfg.History.ChildHistory(ctx, child, k)
	} else {
		ivs, err = s.cfg.History.WhoCouldSee(ctx, child, p.At, k)
	}
	if err != nil {
		return api.ChildHistory{}, err
	}
	out, err := s.withReasons(ctx, ivs)
	if err != nil {
		return api.ChildHistory{}, err
	}
	return api.ChildHistory{ChildID: child, At: optTime(p.At), AsOf: asOf(k), Intervals: out, Position: pos.String()}, nil
}

// AccountHistory answers every interval in which account could see a
// child's record, or those that contain p.At.
func (s *Service) AccountHistory(ctx context.Context, c Caller, account uuid.UUID, p HistoryParams) (api.AccountHistory, error) {
	if err := s.Authorize(ctx, QueryAccountHistory, c); err != nil {
		return api.AccountHistory{}, err
	}
	p, err := s.resolveKnownAt(ctx, p)
	if err != nil {
		return api.AccountHistory{}, err
	}
	k, w := p.known()
	pos, err := s.waitReadModel(ctx, accesshistory.Name, w)
	if err != nil {
		return api.AccountHistory{}, err
	}
	if err := s.knownAccount(account); err != nil {
		return api.AccountHistory{}, err
	}
	var ivs []accesshistory.Interval
	if p.At.IsZero() {
		ivs, err = s.cfg.History.AccountHistory(ctx, account, k)
	} else {
		ivs, err = s.cfg.History.WhatCouldSee(ctx, account, p.At, k)
	}
	if err != nil {
		return api.AccountHistory{}, err
	}
	out, err := s.withReasons(ctx, ivs)
	if err != nil {
		return api.AccountHistory{}, err
	}
	return api.AccountHistory{AccountID: account, At: optTime(p.At), AsOf: asOf(k), Intervals: out, Position: pos.String()}, nil
}
