package reseal

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

var at = time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)

func record(t *testing.T, stream string, e domain.Event, reason string) eventlog.Record {
	t.Helper()
	d, err := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, RecordedAt: at}.EventData(uuid.New(), e)
	require.NoError(t, err)
	return eventlog.Record{ID: d.ID, Stream: stream, Version: 1, Position: eventlog.At(1), Type: d.Type, Data: d.Data,
		Meta: func() eventlog.Meta { m := d.Meta; m.Reason = reason; return m }()}
}

func keyedIDs(t *testing.T) *domain.KeyedIDs {
	t.Helper()
	ids, err := domain.NewKeyedIDs(bytes.Repeat([]byte{9}, 32))
	require.NoError(t, err)
	return ids
}

func TestReseal_StandIns(t *testing.T) {
	t.Parallel()
	child, account := uuid.New(), uuid.New()
	tests := []struct {
		name       string
		rec        eventlog.Record
		wantReason string
		wantField  map[string]string
	}{
		{"a reference and a reason", record(t, domain.ChildStream(child),
			&domain.ChildRegistered{ChildID: child, Reference: "NCC-1", RegisteredAt: at}, "why"),
			domain.ErasedText, map[string]string{"reference": domain.ErasedText}},
		{"an email, no reason", record(t, domain.AccountStream(account),
			&domain.AccountInvited{AccountID: account, Email: "a@example.org", Kind: domain.KindFosterCarer, InvitedAt: at, ExpiresAt: at.Add(time.Hour)}, ""),
			"", map[string]string{"email": domain.ErasedText}},
		{"a reason without personal fields", record(t, domain.ChildStream(child),
			&domain.AccessRevoked{ChildID: child, AccountID: account, RevokedAt: at}, "no longer needed"),
			domain.ErasedText, nil},
		{"an erasure keeps its reason", record(t, domain.ChildStream(child),
			&domain.ChildErased{ChildID: child, ErasedAt: at}, "retention ended"),
			"retention ended", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlan(keyedIDs(t), map[keystore.Subject]bool{keystore.ChildSubject(child): true, keystore.AccountSubject(account): true})
			st, err := p.step(tt.rec)
			require.NoError(t, err)
			require.True(t, st.erased)
			require.Equal(t, tt.wantReason, st.event.Meta.Reason)
			for f, v := range tt.wantField {
				got, _ := stringField(st.event.Data, f)
				require.Equal(t, v, got, f)
			}
			require.NoError(t, st.check(eventlog.Record{ID: st.event.ID, Stream: st.stream, Version: 1, Type: st.event.Type,
				Data: st.event.Data, Meta: st.event.Meta}), "the step checks what it appends")
			require.Zero(t, p.stats.SubjectsKeyed, "no key for an erased subject")
		})
	}
}

func TestReseal_IdentityStreamNames(t *testing.T) {
	t.Parallel()
	ids := keyedIDs(t)
	account := uuid.New()
	link := func(stream, subject string) eventlog.Record {
		return record(t, stream, &domain.IdentityLinked{Subject: subject, AccountID: account, LinkedAt: at}, "")
	}
	tests := []struct {
		name  string
		rec   eventlog.Record
		want  string
		stats Stats
	}{
		{"name-based: renamed", link(domain.IdentityStream("idp|a"), "idp|a"), ids.IdentityStream("idp|a"), Stats{IdentityRenamed: 1, SubjectsKeyed: 1}},
		{"keyed already", link(ids.IdentityStream("idp|b"), "idp|b"), ids.IdentityStream("idp|b"), Stats{IdentityKeyed: 1, SubjectsKeyed: 1}},
		{"subject erased: kept", erasedLink(link(domain.IdentityStream("idp|c"), "idp|c")), domain.IdentityStream("idp|c"),
			Stats{IdentityKept: 1, ErasedSubjects: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			erased := map[keystore.Subject]bool{}
			if tt.stats.ErasedSubjects > 0 {
				erased[keystore.AccountSubject(account)] = true
			}
			p := newPlan(ids, erased)
			st, err := p.step(tt.rec)
			require.NoError(t, err)
			require.Equal(t, tt.want, st.stream)
			require.Equal(t, tt.stats, p.stats)
			again, err := p.step(tt.rec)
			require.NoError(t, err)
			require.Equal(t, tt.want, again.stream, "every event of the stream goes to the same name")
		})
	}

	p := newPlan(ids, map[keystore.Subject]bool{})
	_, err := p.step(link(domain.IdentityStream("idp|d"), "idp|d"))
	require.NoError(t, err)
	_, err = p.step(link(ids.IdentityStream("idp|d"), "idp|d"))
	require.ErrorContains(t, err, "both link", "two streams of one subject cannot both be copied")
}

// erasedLink is r as it reads once its subject was erased.
func erasedLink(r eventlog.Record) eventlog.Record {
	r.Data = bytes.Replace(r.Data, []byte(`"idp|c"`), []byte(`"`+domain.ErasedText+`"`), 1)
	return r
}

func TestReseal_AnErasureTheLogDoesNotRecordStopsTheCopy(t *testing.T) {
	t.Parallel()
	child := uuid.New()
	p := newPlan(keyedIDs(t), map[keystore.Subject]bool{})
	_, err := p.step(record(t, domain.ChildStream(child), &domain.AccessRevoked{ChildID: child, AccountID: uuid.New(), RevokedAt: at}, domain.ErasedText))
	require.ErrorIs(t, err, ErrUnexplainedErasure)
}

func TestReseal_CheckNamesEveryDifference(t *testing.T) {
	t.Parallel()
	child := uuid.New()
	p := newPlan(keyedIDs(t), map[keystore.Subject]bool{})
	r := record(t, domain.ChildStream(child), &domain.ChildRegistered{ChildID: child, Reference: "NCC-1", RegisteredAt: at}, "why")
	st, err := p.step(r)
	require.NoError(t, err)
	same := r
	same.Data = []byte(`{"registered_at":"2026-03-03T09:00:00Z","reference":"NCC-1","child_id":"` + child.String() + `"}`)
	require.NoError(t, st.check(same), "JSON values, not bytes")

	other := r
	other.ID = uuid.New()
	other.Version = 2
	other.Meta.Reason = "else"
	other.Data = []byte(`{"reference":"NCC-2"}`)
	err = st.check(other)
	require.ErrorIs(t, err, ErrMismatch)
	for _, what := range []string{"id ", "version 2", "reason", "data"} {
		require.ErrorContains(t, err, what)
	}
}
