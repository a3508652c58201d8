package queries

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// recorder keeps the refusals it is given.
type recorder struct {
	mu   sync.Mutex
	got  []commands.Refusal
	fail error
}

func (r *recorder) RecordRefusal(_ context.Context, f commands.Refusal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, f)
	return r.fail
}

// fakeIndex is an index at a fixed position that never reaches another.
type fakeIndex struct {
	Index
	pos eventlog.Position
}

func (f fakeIndex) Position() eventlog.Position { return f.pos }

func (f fakeIndex) WaitFor(ctx context.Context, min eventlog.Position, timeout time.Duration) (eventlog.Position, error) {
	if !f.pos.Before(min) {
		return f.pos, nil
	}
	return f.pos, fmt.Errorf("%w: at %s, waited %s for %s", accessindex.ErrStale, f.pos, timeout, min)
}

func newService(t *testing.T, rec *recorder, ix Index, progress []projections.Status) *Service {
	t.Helper()
	s, err := New(Config{Index: ix, History: struct{ History }{}, Accounts: struct{ Accounts }{}, Audit: struct{ Audit }{},
		SecurityLog: struct{ SecurityLog }{}, Views: struct{ Views }{}, ChildRecords: struct{ ChildRecords }{}, Refusals: rec,
		Progress: func() []projections.Status { return progress }, MinPositionWait: 30 * time.Millisecond,
		Clock: func() time.Time { return time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC) }})
	require.NoError(t, err)
	return s
}

// TestAuthorize: the role rules of every query (api.md), and a refusal
// goes to the security log with the query's name.
func TestAuthorize(t *testing.T) {
	all := []domain.Role{domain.RoleWorker, domain.RoleManager, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleService, domain.RoleDPO}
	for _, tc := range []struct {
		q       Name
		allowed []domain.Role
	}{
		{QueryCheck, []domain.Role{domain.RoleService, domain.RoleWorker, domain.RoleAuditor}},
		{QueryChecks, []domain.Role{domain.RoleService, domain.RoleWorker, domain.RoleAuditor}},
		{QueryAccountChildren, []domain.Role{domain.RoleService, domain.RoleWorker, domain.RoleAuditor}},
		{QueryChildViewers, []domain.Role{domain.RoleWorker, domain.RoleAuditor}},
		{QueryWatch, []domain.Role{domain.RoleService, domain.RoleAuditor}},
		{QueryChildHistory, []domain.Role{domain.RoleAuditor}},
		{QueryAccountHistory, []domain.Role{domain.RoleAuditor}},
		{QueryGetChild, []domain.Role{domain.RoleWorker, domain.RoleManager, domain.RoleAuditor, domain.RoleDPO}},
		{QueryGetAccount, []domain.Role{domain.RoleService, domain.RoleWorker, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleDPO}},
		{QueryListAccounts, []domain.Role{domain.RoleService, domain.RoleWorker, domain.RolePortalsTeam, domain.RoleAuditor, domain.RoleDPO}},
		{QueryAuditList, []domain.Role{domain.RoleAuditor}},
		{QueryAuditVerify, []domain.Role{domain.RoleAuditor}},
		{QuerySecurityLog, []domain.Role{domain.RoleAuditor}},
		{QueryPolicy, all},
		{QueryLedgerCheckpoint, []domain.Role{domain.RoleAuditor, domain.RoleService}},
		{QueryLedgerPublicKey, all},
		{QueryLedgerInclusionProof, []domain.Role{domain.RoleAuditor}},
		{QueryLedgerConsistencyProof, []domain.Role{domain.RoleAuditor}},
		{QueryAccountExport, []domain.Role{domain.RoleAuditor, domain.RoleDPO}},
		{QueryChildExport, []domain.Role{domain.RoleAuditor, domain.RoleDPO}},
		{QueryListChildren, []domain.Role{domain.RoleWorker, domain.RoleManager, domain.RoleAuditor, domain.RoleDPO}},
		{QueryListReviews, []domain.Role{domain.RoleWorker, domain.RoleManager, domain.RoleAuditor}},
		{QueryRecordViews, []domain.Role{domain.RoleService}},
		{QueryChildViews, []domain.Role{domain.RoleAuditor}},
		{QueryAccountViews, []domain.Role{domain.RoleAuditor}},
		{QueryAlerts, []domain.Role{domain.RoleAuditor}},
	} {
		t.Run(string(tc.q), func(t *testing.T) {
			require.True(t, Known(tc.q))
			for _, role := range all {
				rec := &recorder{}
				s := newService(t, rec, fakeIndex{}, nil)
				c := Caller{Actor: domain.Actor{ID: "someone", Role: role}, RequestID: "req-1", Target: "/v1/x"}
				err := s.Authorize(context.Background(), tc.q, c)
				if contains(tc.allowed, role) {
					require.NoError(t, err, role)
					require.Empty(t, rec.got)
					continue
				}
				require.ErrorIs(t, err, ErrForbidden, role)
				require.ErrorIs(t, err, domain.ErrRoleNotAllowed)
				require.Equal(t, domain.KindForbidden, domain.KindOf(err))
				require.Equal(t, fmt.Sprintf("role %s may not call %s", role, tc.q), err.Error())
				require.Len(t, rec.got, 1)
				require.Equal(t, commands.Refusal{At: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Actor: c.Actor,
					Command: "query_" + string(tc.q), Target: "/v1/x", Code: "forbidden", Detail: err.Error(), RequestID: "req-1"}, rec.got[0])
			}
		})
	}
	require.Len(t, roles, 26, "every query is in the table above")
}

func contains(list []domain.Role, r domain.Role) bool {
	for _, x := range list {
		if x == r {
			return true
		}
	}
	return false
}

// TestAuthorize_RefusalNotRecorded: a security log that fails does not
// turn a refusal into an allow.
func TestAuthorize_RefusalNotRecorded(t *testing.T) {
	rec := &recorder{fail: errors.New("disk full")}
	s := newService(t, rec, fakeIndex{}, nil)
	err := s.Authorize(context.Background(), QueryAuditList, Caller{Actor: domain.Actor{ID: "w", Role: domain.RoleWorker}, Label: "GET /v1/audit"})
	require.ErrorIs(t, err, ErrForbidden)
	require.Equal(t, "role worker may not call GET /v1/audit", err.Error())
	require.Error(t, s.Authorize(context.Background(), Name("nope"), Caller{Actor: domain.Actor{ID: "a", Role: domain.RoleAuditor}}))
}

// TestConsistency: a token the index or a read model does not reach in
// time is a *Stale naming the position; one reached answers at the read
// model's position.
func TestConsistency(t *testing.T) {
	ctx := context.Background()
	auditor := Caller{Actor: domain.Actor{ID: "a", Role: domain.RoleAuditor}}
	s := newService(t, &recorder{}, fakeIndex{pos: eventlog.At(10)},
		[]projections.Status{{Name: "audit", Position: eventlog.At(8)}})

	_, err := s.Policy(ctx, auditor, After(eventlog.At(11)), time.Time{})
	var stale *Stale
	require.ErrorAs(t, err, &stale)
	require.ErrorIs(t, err, ErrStale)
	require.Equal(t, "the access index of this replica has not reached position 11 within 30ms; retry later", err.Error())

	p, err := s.Policy(ctx, auditor, After(eventlog.At(10)), time.Time{})
	require.NoError(t, err)
	require.Equal(t, "10", p.Position)
	require.EqualValues(t, 7*24*3600, p.GracePeriod)

	pos, err := s.waitReadModel(ctx, "audit", Consistency{})
	require.NoError(t, err)
	require.Equal(t, eventlog.At(8), pos, "no token: the read model's position")
	start := time.Now()
	_, err = s.waitReadModel(ctx, "audit", After(eventlog.At(9)))
	require.ErrorAs(t, err, &stale)
	require.Equal(t, "the read model audit", stale.What)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond, "it waited")
	pos, err = s.waitReadModel(ctx, "audit", After(eventlog.At(8)))
	require.NoError(t, err)
	require.Equal(t, eventlog.At(8), pos)
}

func TestConfigValidate(t *testing.T) {
	err := Config{MinPositionWait: -1, Policy: domain.Policy{GracePeriod: -1}, Ledger: struct{ Ledger }{}}.Validate()
	for _, want := range []string{"Index", "History", "Accounts", "Audit", "SecurityLog", "ChildRecords", "Refusals", "Progress",
		"LedgerLog is nil (required with Ledger)", "policy", "MinPositionWait"} {
		require.ErrorContains(t, err, want)
	}
	_, err = New(Config{})
	require.Error(t, err)
}

// TestPlacementStatus: a placement's status at a decision time (R3, R6).
func TestPlacementStatus(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	end := start.Add(48 * time.Hour)
	grace := end.Add(7 * 24 * time.Hour)
	open := domain.PlacementView{ID: uuid.New(), StartedAt: start}
	ended := open
	ended.Ended, ended.EndedAt, ended.GraceUntil = true, end, grace
	early := ended
	early.GraceEndedEarly = end.Add(time.Hour)
	expired := ended
	expired.ExpiryRecorded = true
	for _, tc := range []struct {
		name string
		p    domain.PlacementView
		at   time.Time
		want string
	}{
		{"before the start", open, start.Add(-time.Second), placementPlanned},
		{"at the start", open, start, placementOpen},
		{"open-ended", open, grace.Add(time.Hour), placementOpen},
		{"before its end", ended, end.Add(-time.Second), placementOpen},
		{"at its end", ended, end, placementInGrace},
		{"in the grace period", ended, grace.Add(-time.Second), placementInGrace},
		{"at the grace period's end", ended, grace, placementEnded},
		{"grace ended early", early, end.Add(2 * time.Hour), placementEnded},
		{"before the early end", early, end.Add(time.Minute), placementInGrace},
		{"expiry recorded, asked about the grace period", expired, end.Add(time.Hour), placementInGrace},
		{"expiry recorded", expired, grace, placementEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, placementStatus(tc.p, tc.at))
		})
	}
	require.Equal(t, early.GraceEndedEarly, graceEnd(early))
	require.Equal(t, grace, graceEnd(ended))
}
