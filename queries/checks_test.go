package queries

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// batchIndex answers CheckMany from a table, at a fixed position, and
// counts its calls.
type batchIndex struct {
	fakeIndex
	answers map[uuid.UUID]accessindex.ItemAnswer // by account
	calls   *int
}

func (b batchIndex) CheckMany(items []accessindex.CheckItem, _ time.Time, dst []accessindex.ItemAnswer) ([]accessindex.ItemAnswer, eventlog.Position) {
	*b.calls++
	for _, it := range items {
		a := b.answers[it.Account]
		a.Position = b.pos
		dst = append(dst, a)
	}
	return dst, b.pos
}

// TestChecks: one CheckMany per request; results in order, unknown ids as
// not_found, permissions as lists; 1 to MaxChecks items; the consistency
// token waits as Check's.
func TestChecks(t *testing.T) {
	ctx := context.Background()
	service := Caller{Actor: domain.Actor{ID: "portal", Role: domain.RoleService}}
	allowed, denied, unknown := uuid.New(), uuid.New(), uuid.New()
	until := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	calls := 0
	ix := batchIndex{fakeIndex: fakeIndex{pos: eventlog.At(7)}, calls: &calls, answers: map[uuid.UUID]accessindex.ItemAnswer{
		allowed: {Answer: accessindex.Answer{Allowed: true, Permissions: domain.All, Reason: domain.ReasonPlacement}},
		denied: {Answer: accessindex.Answer{Permissions: domain.PermissionSet(domain.CompleteOutstanding),
			Reason: domain.ReasonGracePeriod, Until: until}},
		unknown: {Answer: accessindex.Answer{Reason: domain.ReasonNoRelationship}, Unknown: true},
	}}
	s := newService(t, &recorder{}, ix, nil)
	child := uuid.New()
	item := func(acct uuid.UUID) CheckItem {
		return CheckItem{Account: acct, Child: child, Permission: domain.Record}
	}

	got, err := s.Checks(ctx, service, ChecksParams{Items: []CheckItem{item(allowed), item(unknown), item(denied), item(allowed)}})
	require.NoError(t, err)
	require.Equal(t, 1, calls)
	require.Equal(t, "7", got.Position)
	require.Equal(t, time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), got.At, "now")
	all := api.Permissions{api.PermissionView, api.PermissionRecord, api.PermissionCompleteOutstanding}
	u := until
	require.Equal(t, []api.CheckResult{
		{Allowed: true, Reason: api.CheckResultReasonPlacement, Permissions: all},
		{Allowed: false, Reason: api.CheckResultReasonNotFound, Permissions: api.Permissions{}},
		{Allowed: false, Reason: api.CheckResultReasonGracePeriod, Permissions: api.Permissions{api.PermissionCompleteOutstanding}, Until: &u},
		{Allowed: true, Reason: api.CheckResultReasonPlacement, Permissions: all},
	}, got.Results)

	for _, n := range []int{0, MaxChecks + 1} {
		items := make([]CheckItem, n)
		for i := range items {
			items[i] = item(allowed)
		}
		_, err := s.Checks(ctx, service, ChecksParams{Items: items})
		var inv *Invalid
		require.ErrorAs(t, err, &inv, n)
		require.ErrorIs(t, err, domain.ErrInvalid)
		require.Contains(t, inv.Detail, "give 1 to 1000 checks")
	}
	_, err = s.Checks(ctx, service, ChecksParams{Items: []CheckItem{item(allowed)}, Consistency: After(eventlog.At(8))})
	require.ErrorIs(t, err, ErrStale)
	_, err = s.Checks(ctx, Caller{Actor: domain.Actor{ID: "m", Role: domain.RoleManager}}, ChecksParams{Items: []CheckItem{item(allowed)}})
	require.ErrorIs(t, err, ErrForbidden)
	require.Equal(t, 1, calls, "refused requests read nothing")
}
