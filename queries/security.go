package queries

import (
	"context"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/securitylog"
	"github.com/accessledger/accessledger/api"
)

// SecurityLog reads the security log of refused commands and queries:
// *securitylog.Log implements it.
type SecurityLog interface {
	List(ctx context.Context, f securitylog.Filter) ([]securitylog.Entry, int64, error)
}

// SecurityLogPage answers one page of the security log, newest first. The
// log is not derived from the event log: its "position" is the access
// index's, and the consistency token waits for the index.
func (s *Service) SecurityLogPage(ctx context.Context, c Caller, f securitylog.Filter, w Consistency) (api.SecurityLogPage, error) {
	if err := s.Authorize(ctx, QuerySecurityLog, c); err != nil {
		return api.SecurityLogPage{}, err
	}
	if err := s.waitIndex(ctx, w); err != nil {
		return api.SecurityLogPage{}, err
	}
	pos := s.cfg.Index.Position()
	entries, next, err := s.cfg.SecurityLog.List(ctx, f)
	if err != nil {
		return api.SecurityLogPage{}, err
	}
	out := api.SecurityLogPage{Entries: make([]api.SecurityLogEntry, 0, len(entries)), Next: cursor(next), Position: pos.String()}
	for _, e := range entries {
		out.Entries = append(out.Entries, securityEntry(e))
	}
	return out, nil
}

// securityEntry is e as answered.
func securityEntry(e securitylog.Entry) api.SecurityLogEntry {
	se := api.SecurityLogEntry{ID: int(e.ID), At: e.At.UTC(), ActorID: e.ActorID, ActorRole: e.ActorRole, Command: e.Command,
		Target: e.Target, Code: e.Code, Detail: e.Detail, RequestID: e.RequestID}
	if e.CorrelationID != uuid.Nil {
		c := e.CorrelationID
		se.CorrelationID = &c
	}
	return se
}
