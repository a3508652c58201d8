package domain_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// R24: records moved over from older systems keep their real dates.

var (
	importer = domain.Actor{ID: "import:ops-ian", Role: domain.RoleSystem}
	y2019    = time.Date(2019, 3, 1, 9, 0, 0, 0, time.UTC)
)

// applied applies events to the aggregate through apply.
func applied(t *testing.T, apply func(domain.Event) error, events []domain.Event) {
	t.Helper()
	for _, e := range events {
		require.NoError(t, apply(e))
	}
}

// importedCarer is a foster carer's account invited and activated at
// their real dates in 2019.
func importedCarer(t *testing.T, activated time.Time) *domain.Account {
	t.Helper()
	a := domain.NewAccount(carerID)
	events, err := a.ImportAccount(importer, domain.ImportedAccount{Email: carerEmail, Kind: "foster_carer",
		InvitedAt: y2019, ActivatedAt: activated, IdentitySubject: "idp|carer"}, t0, policy)
	require.NoError(t, err)
	applied(t, a.Apply, events)
	return a
}

func importedChild(t *testing.T) *domain.Child {
	t.Helper()
	c := domain.NewChild(childID)
	events, err := c.ImportRegistration(importer, "NCC-2019-0001", "worker-ann", y2019, time.Time{}, t0)
	require.NoError(t, err)
	applied(t, c.Apply, events)
	return c
}

func TestRule_R24_BackdatedActivationGivesAccessFromItsRealDate(t *testing.T) {
	activated := y2019.Add(4 * day)
	carer := importedCarer(t, activated)
	require.Equal(t, domain.StatusActive, carer.StatusAt(t0))

	child := importedChild(t)
	// The placement started before the account was activated, even before
	// it was invited; it ended in 2021.
	started, ended := y2019.Add(-10*day), time.Date(2021, 6, 30, 0, 0, 0, 0, time.UTC)
	events, err := child.ImportPlacement(importer, placement, carer, started, ended, t0, policy)
	require.NoError(t, err)
	require.Len(t, events, 3, "start, end and the expiry of a grace period over long ago")
	require.IsType(t, &domain.GraceExpired{}, events[2])
	applied(t, child.Apply, events)

	for _, c := range []struct {
		name   string
		at     time.Time
		reason domain.Reason
		view   bool
	}{
		{"placed, account not yet active", activated.Add(-time.Hour), domain.ReasonAccountNotActive, false},
		{"from the real activation on", activated, domain.ReasonPlacement, true},
		{"a year later", activated.Add(365 * day), domain.ReasonPlacement, true},
		{"grace after the real end", ended.Add(day), domain.ReasonGracePeriod, true},
		{"after the grace period", ended.Add(policy.GracePeriod), domain.ReasonGraceExpired, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := child.Access(carer, c.at)
			require.Equal(t, c.reason, a.Reason)
			require.Equal(t, c.view, a.Allows(domain.View))
		})
	}

	// What the issue was: an activation stamped at the time of recording
	// gives no access in the past.
	late := domain.NewAccount(carerID)
	applied(t, late.Apply, []domain.Event{
		&domain.AccountInvited{AccountID: carerID, Email: carerEmail, Kind: domain.KindFosterCarer, InvitedAt: t0, ExpiresAt: t0.Add(policy.InvitationTTL)},
		&domain.AccountActivated{AccountID: carerID, IdentitySubject: "idp|carer", ActivatedAt: t0},
	})
	require.False(t, child.Access(late, activated.Add(365*day)).Allows(domain.View))
}

func TestRule_R24_ImportedGrantsKeepTheirDates(t *testing.T) {
	gran := domain.NewAccount(parentID)
	events, err := gran.ImportAccount(importer, domain.ImportedAccount{Email: parentEmail, Kind: "network_member",
		InvitedAt: y2019, ActivatedAt: y2019.Add(day), IdentitySubject: "idp|gran"}, t0, policy)
	require.NoError(t, err)
	applied(t, gran.Apply, events)
	child := importedChild(t)

	granted, revoked := y2019.Add(30*day), y2019.Add(400*day)
	events, err = child.ImportGrant(importer, gran, "network_member", []string{"view"}, granted, revoked, t0)
	require.NoError(t, err)
	require.Len(t, events, 2)
	applied(t, child.Apply, events)
	require.Equal(t, domain.ReasonGrant, child.Access(gran, granted.Add(day)).Reason)
	require.Equal(t, domain.ReasonRevoked, child.Access(gran, revoked.Add(day)).Reason)
	require.False(t, child.Access(gran, granted.Add(-day)).Allows(domain.View))

	// A later grant replaces nothing back in time; an earlier one, or one
	// within the revoked one, is refused.
	_, err = child.ImportGrant(importer, gran, "network_member", []string{"view"}, granted.Add(day), time.Time{}, t0)
	require.ErrorIs(t, err, domain.ErrImportConflict)
	events, err = child.ImportGrant(importer, gran, "network_member", []string{"view", "record"}, revoked.Add(day), time.Time{}, t0)
	require.NoError(t, err)
	applied(t, child.Apply, events)
	require.True(t, child.Access(gran, t0).Allows(domain.Record))

	// A foster carer's account gets no grant.
	_, err = child.ImportGrant(importer, importedCarer(t, y2019.Add(day)), "parent", []string{"view"}, granted, time.Time{}, t0)
	require.ErrorIs(t, err, domain.ErrInvalid)
}

func TestRule_R24_AnImportIsIdempotentAndRefusesOtherData(t *testing.T) {
	carer := importedCarer(t, y2019.Add(day))
	events, err := carer.ImportAccount(importer, domain.ImportedAccount{Email: carerEmail, Kind: "foster_carer",
		InvitedAt: y2019, ActivatedAt: y2019.Add(day), IdentitySubject: "idp|carer"}, t0, policy)
	require.NoError(t, err)
	require.Empty(t, events, "the same account again")
	_, err = carer.ImportAccount(importer, domain.ImportedAccount{Email: carerEmail, Kind: "foster_carer",
		InvitedAt: y2019, ActivatedAt: y2019.Add(2 * day), IdentitySubject: "idp|carer"}, t0, policy)
	require.ErrorIs(t, err, domain.ErrImportConflict)

	child := importedChild(t)
	events, err = child.ImportRegistration(importer, "NCC-2019-0001", "worker-ann", y2019, time.Time{}, t0)
	require.NoError(t, err)
	require.Empty(t, events)
	_, err = child.ImportRegistration(importer, "NCC-2019-0001", "worker-bob", y2019, time.Time{}, t0)
	require.ErrorIs(t, err, domain.ErrImportConflict)

	events, err = child.ImportPlacement(importer, placement, carer, y2019.Add(2*day), time.Time{}, t0, policy)
	require.NoError(t, err)
	applied(t, child.Apply, events)
	events, err = child.ImportPlacement(importer, placement, carer, y2019.Add(2*day), time.Time{}, t0, policy)
	require.NoError(t, err)
	require.Empty(t, events, "the same placement again")
	_, err = child.ImportPlacement(importer, placement, carer, y2019.Add(3*day), time.Time{}, t0, policy)
	require.ErrorIs(t, err, domain.ErrImportConflict)
	_, err = child.ImportPlacement(importer, uuid.New(), carer, y2019.Add(5*day), time.Time{}, t0, policy)
	require.ErrorIs(t, err, domain.ErrPlacementOverlap, "the carer's open placement")
}

func TestRule_R24_OnlyAnImportRecordsPastDatesAndOnlyPastOnes(t *testing.T) {
	child := domain.NewChild(childID)
	for _, by := range []domain.Actor{worker, manager, domain.System} {
		_, err := child.ImportRegistration(by, "NCC-1", "", y2019, time.Time{}, t0)
		require.ErrorIs(t, err, domain.ErrRoleNotAllowed, by.ID)
	}
	_, err := child.ImportRegistration(importer, "NCC-1", "", t0.Add(time.Hour), time.Time{}, t0)
	require.ErrorIs(t, err, domain.ErrInvalid, "registered in the future")

	a := domain.NewAccount(carerID)
	for _, in := range []domain.ImportedAccount{
		{Email: carerEmail, Kind: "foster_carer", InvitedAt: y2019, ActivatedAt: y2019.Add(-day), IdentitySubject: "s"},
		{Email: carerEmail, Kind: "foster_carer", InvitedAt: y2019, ActivatedAt: y2019.Add(day)},
		{Email: carerEmail, Kind: "foster_carer", InvitedAt: y2019, IdentitySubject: "s"},
		{Email: carerEmail, Kind: "foster_carer", InvitedAt: y2019, ClosedAt: y2019.Add(-day)},
		{Email: "not-an-email", Kind: "foster_carer", InvitedAt: y2019},
	} {
		_, err := a.ImportAccount(importer, in, t0, policy)
		require.ErrorIs(t, err, domain.ErrInvalid, "%+v", in)
	}

	// An invitation never accepted is recorded as run out at its deadline.
	events, err := a.ImportAccount(importer, domain.ImportedAccount{Email: carerEmail, Kind: "parent", InvitedAt: y2019}, t0, policy)
	require.NoError(t, err)
	require.Len(t, events, 2)
	require.Equal(t, y2019.Add(policy.InvitationTTL), events[1].EffectiveAt())

	_, err = domain.ImportActor("ops ian")
	require.ErrorIs(t, err, domain.ErrInvalid)
	act, err := domain.ImportActor("")
	require.NoError(t, err)
	require.True(t, domain.IsImport(act.ID, act.Role))
	require.False(t, domain.IsImport("import", domain.RoleWorker), "a worker called import is not an import")
}
