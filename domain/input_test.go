package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// The engine keeps times in the years 1900 to 9999; a time a command
// brings must leave room for what the engine derives from it (a grace
// period's end, an invitation's expiry), else the decision could never be
// written, or, like a placement started on 9999-12-30, never be ended.

var (
	lateDay     = time.Date(9999, 12, 30, 0, 0, 0, 0, time.UTC)
	lastCommand = domain.LatestCommandTime
)

func TestCommandTimesLeaveRoomForWhatTheEngineDerives(t *testing.T) {
	carer := activeCarer(t)
	open := func() *domain.Child { return givenChild(t, registered()) }
	placed := func(at time.Time) *domain.Child { return givenChild(t, registered(), started(placement, carerID, at)) }
	longest := policy
	longest.GracePeriod = domain.MaxPolicyPeriod
	tests := []struct {
		name string
		when func() ([]domain.Event, error)
		ok   bool
	}{
		{"a placement starting on 9999-12-30", func() ([]domain.Event, error) {
			return open().StartPlacement(worker, placement, carer, lateDay, t0)
		}, false},
		{"a placement starting at the first instant after the latest command time", func() ([]domain.Event, error) {
			return open().StartPlacement(worker, placement, carer, lastCommand.Add(time.Microsecond), t0)
		}, false},
		{"a placement starting before 1900", func() ([]domain.Event, error) {
			return open().StartPlacement(worker, placement, carer, domain.EarliestTime.Add(-time.Second), t0)
		}, false},
		{"a placement starting at the latest command time", func() ([]domain.Event, error) {
			return open().StartPlacement(worker, placement, carer, lastCommand, t0)
		}, true},
		{"a placement starting in 1900", func() ([]domain.Event, error) {
			return open().StartPlacement(worker, placement, carer, domain.EarliestTime, t0)
		}, true},
		{"a placement ending on 9999-12-30", func() ([]domain.Event, error) {
			return placed(t0).EndPlacement(worker, placement, lateDay, t0, policy)
		}, false},
		{"a placement ending at the latest command time, under the longest grace period", func() ([]domain.Event, error) {
			return placed(t0).EndPlacement(worker, placement, lastCommand, t0, longest)
		}, true},
		{"a child registered to be kept until 9999-12-30", func() ([]domain.Event, error) {
			return domain.NewChild(childID).Register(worker, "C-0001", lateDay, t0)
		}, false},
		{"a child registered to be kept until the latest command time", func() ([]domain.Event, error) {
			return domain.NewChild(childID).Register(worker, "C-0001", lastCommand, t0)
		}, true},
		{"a retention date moved to 9999-12-30", func() ([]domain.Event, error) {
			return open().SetRetention(manager, lateDay, "court order", t0)
		}, false},
		{"an invitation whose expiry would fall after 9999", func() ([]domain.Event, error) {
			return domain.NewAccount(parentID).Invite(worker, parentEmail, "parent", lateDay, policy)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.when()
			if !tt.ok {
				thenError(t, got, err, domain.ErrInvalid)
				require.Equal(t, domain.KindInvalid, domain.KindOf(err))
				return
			}
			require.NoError(t, err)
			require.NotEmpty(t, got)
			for _, e := range got {
				_, err := domain.Encode(e)
				require.NoError(t, err, "every decided event can be written")
			}
		})
	}
}

func TestPolicyPeriodsAreBounded(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*domain.Policy)
	}{
		{"grace period", func(p *domain.Policy) { p.GracePeriod = domain.MaxPolicyPeriod + time.Hour }},
		{"invitation ttl", func(p *domain.Policy) { p.InvitationTTL = domain.MaxPolicyPeriod + time.Hour }},
		{"closed account retention", func(p *domain.Policy) { p.ClosedAccountRetention = domain.MaxPolicyPeriod + time.Hour }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.DefaultPolicy
			tt.mod(&p)
			require.ErrorIs(t, p.Validate(), domain.ErrInvalid)
		})
	}
	p := domain.DefaultPolicy
	p.GracePeriod, p.InvitationTTL, p.ClosedAccountRetention = domain.MaxPolicyPeriod, domain.MaxPolicyPeriod, domain.MaxPolicyPeriod
	require.NoError(t, p.Validate())
	require.False(t, domain.LatestCommandTime.Add(domain.MaxPolicyPeriod).After(domain.LatestTime),
		"the latest command time plus the longest policy period is a time the engine keeps")
}

// The actor-id format: what identity providers put in "sub", nothing a
// reader cannot see or could mistake for another id.
var (
	goodActorIDs = []string{
		"worker-ann",
		"3f2504e0-4f89-41d3-9a0c-0305e82c3301", // a UUID, an Azure AD object id
		"auth0|5f7c8ec7c33c6c004bbafe82",
		"google-oauth2|104532839228761234567",
		"samlp|council|ann.smith",
		"AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", // Azure AD pairwise sub (base64url)
		"ab_cd-EF",
		"ann.smith+portal@norfolk.gov.uk",
		"o'brien@example.org",
		"https://idp.example.org/users/42",
		"dXNlcjo0Mg==",
		"a",
		strings.Repeat("s", domain.MaxActorIDBytes),
	}
	badActorIDs = map[string]string{
		"empty":                     "",
		"too long":                  strings.Repeat("s", domain.MaxActorIDBytes+1),
		"a space":                   "worker ann",
		"blank":                     "  ",
		"leading space":             " worker-ann",
		"tab":                       "worker\tann",
		"newline":                   "w-1\nrole=manager",
		"NUL":                       "w\x00",
		"right-to-left override":    "worker-\u202eenna",
		"left-to-right mark":        "worker-ann\u200e",
		"first strong isolate":      "worker-\u2068ann",
		"zero-width space":          "worker\u200b-ann",
		"zero-width joiner":         "worker\u200d-ann",
		"word joiner":               "worker\u2060-ann",
		"byte order mark":           "\ufeffworker-ann",
		"non-ASCII letter":          "jö-ß",
		"Cyrillic look-alike":       "worker-\u0430nn",
		"fullwidth letters":         "ｗｏｒｋｅｒ",
		"no-break space":            "worker\u00a0ann",
		"invalid UTF-8":             "w\xff",
		"replacement character":     "w\ufffd",
		"double quote":              `w"1`,
		"backslash":                 `corp\ann`,
		"angle brackets":            "<script>",
		"comma":                     "a,b",
		"semicolon":                 "a;b",
		"percent":                   "a%20b",
		"asterisk (a glob in logs)": "w*",
	}
)

func TestActorIDFormat(t *testing.T) {
	for _, id := range goodActorIDs {
		t.Run("accepts "+id[:min(len(id), 40)], func(t *testing.T) {
			require.NoError(t, domain.CheckActorID(id))
			require.NoError(t, domain.Actor{ID: id, Role: domain.RoleWorker}.Validate())
		})
	}
	for name, id := range badActorIDs {
		t.Run("refuses "+name, func(t *testing.T) {
			err := domain.CheckActorID(id)
			require.ErrorIs(t, err, domain.ErrInvalid)
			if len(id) > 1 {
				require.NotContains(t, err.Error(), id, "the error never quotes the id")
			}
			require.ErrorIs(t, domain.Actor{ID: id, Role: domain.RoleWorker}.Validate(), domain.ErrInvalid)
		})
	}
	require.NoError(t, domain.System.Validate(), "the engine's own actor has the format")
}

// TestActorIDsEnterEventsOnlyInTheFormat: a worker id given to a command,
// and the actor of any command, are refused outside the format; nothing is
// decided.
func TestActorIDsEnterEventsOnlyInTheFormat(t *testing.T) {
	carer := activeCarer(t)
	for name, id := range badActorIDs {
		t.Run(name, func(t *testing.T) {
			c := givenChild(t, registered())
			got, err := c.AllocateWorker(manager, id, t0)
			thenError(t, got, err, domain.ErrInvalid)

			got, err = domain.NewChild(childID).Register(domain.Actor{ID: id, Role: domain.RoleWorker}, "C-0001", time.Time{}, t0)
			thenError(t, got, err, domain.ErrInvalid)

			self := givenChild(t, &domain.ChildRegistered{ChildID: childID, Reference: "C-0001", WorkerID: id, RegisteredAt: t0})
			got, err = self.StartPlacement(domain.Actor{ID: id, Role: domain.RoleWorker}, placement, carer, t0, t0)
			thenError(t, got, err, domain.ErrInvalid)

			_, err = domain.Cause{Actor: domain.Actor{ID: id, Role: domain.RoleWorker}, RecordedAt: t0}.
				EventData(uuid.New(), &domain.AccountClosed{AccountID: carerID, ClosedAt: t0})
			require.ErrorIs(t, err, domain.ErrInvalid)
		})
	}
	got, err := givenChild(t, registered()).AllocateWorker(manager, "auth0|5f7c8ec7c33c6c004bbafe82", t0)
	require.NoError(t, err)
	require.Len(t, got, 1)
}

// TestIdentifiersHoldNothingInvisible: references, emails and identity
// subjects identify something to people: two that look the same must be
// the same text.
func TestIdentifiersHoldNothingInvisible(t *testing.T) {
	svc := service
	bad := map[string]string{
		"zero-width space":        "\u200b",
		"zero-width non-joiner":   "\u200c",
		"zero-width joiner":       "\u200d",
		"left-to-right mark":      "\u200e",
		"right-to-left mark":      "\u200f",
		"left-to-right embedding": "\u202a",
		"right-to-left override":  "\u202e",
		"word joiner":             "\u2060",
		"invisible separator":     "\u2063",
		"invisible plus":          "\u2064",
		"left-to-right isolate":   "\u2066",
		"pop directional isolate": "\u2069",
		"byte order mark":         "\ufeff",
		"soft hyphen":             "\u00ad",
		"Arabic letter mark":      "\u061c",
		"no-break space":          "\u00a0",
		"ideographic space":       "\u3000",
		"tab":                     "\t",
		"line feed":               "\n",
		"replacement character":   "\ufffd",
	}
	for name, ch := range bad {
		t.Run(name, func(t *testing.T) {
			got, err := domain.NewChild(childID).Register(worker, "NCC-2024"+ch+"-00417", time.Time{}, t0)
			thenError(t, got, err, domain.ErrInvalid)
			require.NotContains(t, err.Error(), ch)

			email := "ann" + ch + "@example.org"
			got, err = domain.NewAccount(domain.AccountIDForEmail(email)).Invite(worker, email, "parent", t0, policy)
			thenError(t, got, err, domain.ErrInvalid)

			acct := givenAccount(t, parentID, invited(parentID, parentEmail, domain.KindParent, t0))
			got, err = acct.Activate(svc, "idp|"+ch+"ann", parentEmail, t0.Add(time.Hour))
			thenError(t, got, err, domain.ErrInvalid)
			got, err = domain.NewIdentityLink("idp|"+ch+"ann").Link(parentID, t0)
			thenError(t, got, err, domain.ErrInvalid)
		})
	}
	for _, ref := range []string{" NCC-1", "NCC-1 "} {
		got, err := domain.NewChild(childID).Register(worker, ref, time.Time{}, t0)
		thenError(t, got, err, domain.ErrInvalid)
	}
	for _, ref := range []string{"NCC-2024-00417", "NCC 2024 00417", "Réf-é/12", "子ども-7"} {
		got, err := domain.NewChild(childID).Register(worker, ref, time.Time{}, t0)
		require.NoError(t, err, "%q", ref)
		require.Len(t, got, 1)
	}
}

// TestReasonsRefuseBidirectionalControls: a reason is free text (tab and
// line feed allowed, zero-width joiners too: emoji and several scripts need
// them) but no bidirectional control, which would make an audit line read
// otherwise than it is. Every reason a command records is checked, the
// optional ones too (Cause.EventData).
func TestReasonsRefuseBidirectionalControls(t *testing.T) {
	carer := activeCarer(t)
	for _, ch := range []string{"\u202e", "\u202a", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"} {
		reason := "moved on" + ch + " per court order"
		t.Run(reason, func(t *testing.T) {
			got, err := carer.Close(portals, reason, t0)
			thenError(t, got, err, domain.ErrInvalid)
			got, err = givenChild(t, registered()).Grant(worker, activeParent(t), "parent", []string{"view"}, reason, t0)
			thenError(t, got, err, domain.ErrInvalid)
			_, err = domain.Cause{Actor: worker, Reason: reason, RecordedAt: t0}.
				EventData(uuid.New(), &domain.AccountClosed{AccountID: carerID, ClosedAt: t0})
			require.ErrorIs(t, err, domain.ErrInvalid)
		})
	}
	for _, reason := range []string{"line one\nline two", "col\tcol", "family 👨\u200d👩\u200d👧 agreed", "می\u200cخواهم"} {
		got, err := carer.Close(portals, reason, t0)
		require.NoError(t, err, "%q", reason)
		require.Len(t, got, 1)
		_, err = domain.Cause{Actor: worker, Reason: reason, RecordedAt: t0}.
			EventData(uuid.New(), &domain.AccountClosed{AccountID: carerID, ClosedAt: t0})
		require.NoError(t, err)
	}
}

// TestStoredEventsWrittenUnderOlderRulesStillLoad: the checks above are on
// new input only. Events already in a log with such values (a worker id
// with a space or a non-ASCII letter, a reference with a zero-width space,
// a placement starting on 9999-12-30) still decode and apply.
func TestStoredEventsWrittenUnderOlderRulesStillLoad(t *testing.T) {
	stored := []struct {
		typ  string
		data string
	}{
		{domain.TypeChildRegistered, `{"child_id":"` + childID.String() + `","reference":"NCC\u200b-1","worker_id":"worker ann","registered_at":"2026-03-02T09:00:00Z"}`},
		{domain.TypeWorkerAllocated, `{"child_id":"` + childID.String() + `","worker_id":"jö-ß","previous_worker_id":"worker ann","allocated_at":"2026-03-02T10:00:00Z"}`},
		{domain.TypePlacementStarted, `{"child_id":"` + childID.String() + `","placement_id":"` + placement.String() + `","carer_account_id":"` + carerID.String() + `","started_at":"9999-12-30T00:00:00Z"}`},
		{domain.TypeChildRetentionSet, `{"child_id":"` + childID.String() + `","retain_until":"9999-12-31T00:00:00Z","set_at":"2026-03-02T11:00:00Z"}`},
	}
	c := domain.NewChild(childID)
	for _, s := range stored {
		e, err := domain.Decode(s.typ, []byte(s.data))
		require.NoError(t, err, s.typ)
		require.NoError(t, c.Apply(e))
	}
	require.Equal(t, "jö-ß", c.Worker())
	require.Equal(t, lateDay, c.Placements()[0].StartedAt)

	a := domain.NewAccount(parentID)
	for _, s := range []struct{ typ, data string }{
		{domain.TypeAccountInvited, `{"account_id":"` + parentID.String() + `","email":"parent@example.org","kind":"parent","invited_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-16T09:00:00Z"}`},
		{domain.TypeAccountActivated, `{"account_id":"` + parentID.String() + `","identity_subject":"idp|\u202eann","activated_at":"2026-03-02T10:00:00Z"}`},
	} {
		e, err := domain.Decode(s.typ, []byte(s.data))
		require.NoError(t, err, s.typ)
		require.NoError(t, a.Apply(e))
	}
	require.Equal(t, domain.StatusActive, a.StatusAt(t0.Add(day)))

	// A worker id outside the format can no longer act (no token carries
	// it): a manager reallocates the child.
	got, err := c.AllocateWorker(manager, worker.ID, t0.Add(day))
	require.NoError(t, err)
	require.Equal(t, "jö-ß", got[0].(*domain.WorkerAllocated).PreviousWorkerID)
	require.NoError(t, c.Apply(got[0]))
	// The placement started on 9999-12-30 cannot be ended (no end time is
	// late enough), and the refusal is a clear invalid, not a decision that
	// cannot be written.
	got, err = c.EndPlacement(worker, placement, lateDay, t0, policy)
	thenError(t, got, err, domain.ErrInvalid)
	require.ErrorContains(t, err, "ended_at")
}
