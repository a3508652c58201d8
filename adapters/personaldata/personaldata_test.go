package personaldata_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/keystore"
	"github.com/accessledger/accessledger/adapters/memstore"
	"github.com/accessledger/accessledger/adapters/personaldata"
	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/adapters/sqldb/sqltest"
	"github.com/accessledger/accessledger/adapters/sqlstore"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

var at = time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)

type env struct {
	raw   *memstore.Store
	keys  *keystore.Store
	store *personaldata.Store
}

func newEnv(t testing.TB) env {
	t.Helper()
	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	pg, lite := keystore.Migrations()
	require.NoError(t, sqldb.Migrate(context.Background(), db, keystore.Component, pg, lite))
	m, err := keystore.NewMasterKey(bytes.Repeat([]byte{7}, keystore.KeySize))
	require.NoError(t, err)
	keys := keystore.New(db, m)
	raw := memstore.New()
	return env{raw: raw, keys: keys, store: personaldata.New(raw, keys)}
}

// data encodes e with reason as an event to append.
func data(t *testing.T, e domain.Event, reason string) eventlog.EventData {
	t.Helper()
	c := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, Reason: reason, RecordedAt: at}
	d, err := c.EventData(uuid.New(), e)
	require.NoError(t, err)
	return d
}

const (
	email     = "carer.one@example.org"
	newEmail  = "carer.moved@example.org"
	reference = "NCC-2024-00417"
	subject   = "idp|carer-one"
	reason    = "moved to Mrs Patel's on 3 March"
)

// world appends a child and an account with every kind of personal data,
// through the layer, and returns their ids.
func world(t *testing.T, s eventlog.Store) (child, account uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	child, account = uuid.New(), domain.AccountIDForEmail(email)
	_, err := s.Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at}, reason),
		data(t, &domain.AccessRevoked{ChildID: child, AccountID: account, RevokedAt: at.Add(time.Hour)}, reason),
	})
	require.NoError(t, err)
	_, err = s.Append(ctx, domain.AccountStream(account), eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.AccountInvited{AccountID: account, Email: email, Kind: domain.KindFosterCarer,
			InvitedAt: at, ExpiresAt: at.Add(14 * 24 * time.Hour)}, ""),
		data(t, &domain.AccountActivated{AccountID: account, IdentitySubject: subject, ActivatedAt: at.Add(time.Hour)}, ""),
		data(t, &domain.PhoneEnrolled{AccountID: account, PhoneHint: "***417", EnrolledAt: at.Add(2 * time.Hour)}, ""),
		data(t, &domain.EmailChangeRequested{AccountID: account, Email: newEmail, RequestedAt: at.Add(3 * time.Hour)}, reason),
		data(t, &domain.EmailChanged{AccountID: account, Email: newEmail, ChangedAt: at.Add(4 * time.Hour)}, ""),
	})
	require.NoError(t, err)
	_, err = s.Append(ctx, domain.EmailStream(newEmail), eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.EmailClaimed{AccountID: account, ClaimedAt: at.Add(4 * time.Hour)}, "email given to the account"),
	})
	require.NoError(t, err)
	_, err = s.Append(ctx, domain.IdentityStream(subject), eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.IdentityLinked{Subject: subject, AccountID: account, LinkedAt: at.Add(time.Hour)}, ""),
	})
	require.NoError(t, err)
	return child, account
}

// dump is everything a store holds, as text.
func dump(t *testing.T, s eventlog.Store) string {
	t.Helper()
	recs, err := s.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	var b strings.Builder
	for _, r := range recs {
		b.Write(r.Data)
		b.WriteString(r.Meta.Reason)
		b.WriteString("\n")
	}
	return b.String()
}

var personal = []string{email, newEmail, reference, subject, reason, "***417"}

func TestTheStoredLogHoldsNoPersonalData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	world(t, e.store)
	stored := dump(t, e.raw)
	for _, v := range personal {
		require.NotContains(t, stored, v)
	}
	require.Contains(t, stored, personaldata.Prefix)

	read := dump(t, e.store)
	for _, v := range personal {
		require.Contains(t, read, v, "reads open the sealed values")
	}
	recs, err := e.store.ReadAll(context.Background(), eventlog.Start, 0)
	require.NoError(t, err)
	for _, r := range recs {
		_, err := domain.DecodeRecord(r)
		require.NoError(t, err)
	}
}

func TestSubscribeAndReadStreamOpenToo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	child, _ := world(t, e.store)
	recs, err := e.store.ReadStream(context.Background(), domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	require.Contains(t, string(recs[0].Data), reference)
	require.Equal(t, reason, recs[0].Meta.Reason)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []eventlog.Record
	err = e.store.Subscribe(ctx, eventlog.Start, func(_ context.Context, r eventlog.Record) error {
		seen = append(seen, r)
		if len(seen) == 6 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, string(seen[2].Data), email)
}

// TestErasure: once a subject's key is destroyed, its personal values read
// as erased and its events still decode, ids and times intact; the other
// subject's values are untouched; nothing stored changed.
func TestErasure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	child, account := world(t, e.store)
	before := dump(t, e.raw)

	err := e.store.EraseAccount(ctx, account)
	require.NoError(t, err)
	require.Equal(t, before, dump(t, e.raw), "the stored log is not edited")
	read := dump(t, e.store)
	for _, v := range []string{email, subject, "***417"} {
		require.NotContains(t, read, v)
	}
	require.Contains(t, read, reference, "the child is not erased")

	recs, err := e.store.ReadStream(ctx, domain.AccountStream(account), 1, 0)
	require.NoError(t, err)
	env, err := domain.DecodeRecord(recs[0])
	require.NoError(t, err)
	inv := env.Event.(*domain.AccountInvited)
	require.Equal(t, domain.ErasedText, inv.Email)
	require.Equal(t, account, inv.AccountID)
	require.Equal(t, at, inv.InvitedAt)

	err = e.store.EraseChild(ctx, child)
	require.NoError(t, err)
	recs, err = e.store.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	require.Equal(t, domain.ErasedText, recs[0].Meta.Reason)
	require.Contains(t, string(recs[0].Data), `"reference":"[erased]"`)

	// New events about an erased subject: personal fields are refused, a
	// reason is kept as erased.
	_, err = e.store.Append(ctx, domain.ChildStream(child), eventlog.Any, []eventlog.EventData{
		data(t, &domain.AccessRevoked{ChildID: child, AccountID: account, RevokedAt: at.Add(3 * time.Hour)}, "grace period over")})
	require.NoError(t, err)
	recs, err = e.raw.ReadStream(ctx, domain.ChildStream(child), 3, 0)
	require.NoError(t, err)
	require.Equal(t, domain.ErasedText, recs[0].Meta.Reason)
	_, err = e.store.Append(ctx, domain.AccountStream(account), eventlog.Any, []eventlog.EventData{
		data(t, &domain.PhoneEnrolled{AccountID: account, PhoneHint: "***999", EnrolledAt: at.Add(4 * time.Hour)}, "")})
	require.ErrorIs(t, err, keystore.ErrErased)
}

// TestSealingIsDeterministic: the same event sealed twice is the same
// bytes (a retried append stores what the first stored); the same value in
// another event is sealed differently.
func TestSealingIsDeterministic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	child := uuid.New()
	ev := data(t, &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at}, reason)
	_, err := e.store.Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{ev})
	require.NoError(t, err)
	_, err = e.store.Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{ev})
	require.NoError(t, err, "a retry of the same event")
	second := memstore.New()
	_, err = personaldata.New(second, e.keys).Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{ev})
	require.NoError(t, err)
	require.Equal(t, dump(t, e.raw), dump(t, second))

	again := ev
	again.ID = uuid.New()
	_, err = e.store.Append(ctx, domain.ChildStream(child), eventlog.Any, []eventlog.EventData{again})
	require.NoError(t, err)
	recs, err := e.raw.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.NotEqual(t, recs[0].Meta.Reason, recs[1].Meta.Reason, "bound to the event")
}

// TestSealIsWhatAppendStores: Seal returns the events as Append stores
// them, without storing anything, and refuses what Append refuses.
func TestSealIsWhatAppendStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	child := uuid.New()
	evs := []eventlog.EventData{
		data(t, &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at}, reason),
		data(t, &domain.AccessRevoked{ChildID: child, AccountID: uuid.New(), RevokedAt: at}, ""),
	}
	sealed, err := e.store.Seal(ctx, domain.ChildStream(child), evs)
	require.NoError(t, err)
	require.Empty(t, dump(t, e.raw), "Seal stores nothing")
	_, err = e.store.Append(ctx, domain.ChildStream(child), eventlog.NoStream, evs)
	require.NoError(t, err)
	recs, err := e.raw.ReadAll(ctx, eventlog.Start, 0)
	require.NoError(t, err)
	require.Len(t, recs, len(sealed))
	for i, r := range recs {
		require.Equal(t, sealed[i].Meta.Reason, r.Meta.Reason)
		require.JSONEq(t, string(sealed[i].Data), string(r.Data))
	}
	require.NotContains(t, string(sealed[0].Data), reference)

	require.NoError(t, e.store.EraseChild(ctx, child))
	_, err = e.store.Seal(ctx, domain.ChildStream(child), evs[:1])
	require.ErrorIs(t, err, keystore.ErrErased, "nothing personal is sealed for an erased subject")
}

// TestTamperedValuesDoNotOpen: a sealed value moved to another event or
// field, or changed, fails to open with ErrCorrupt.
func TestTamperedValuesDoNotOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	child, _ := world(t, e.store)
	recs, err := e.raw.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	registered, revoked := recs[0], recs[1]

	moved := revoked
	moved.Meta.Reason = registered.Meta.Reason
	_, err = e.store.Open(ctx, moved)
	require.ErrorIs(t, err, personaldata.ErrCorrupt, "moved to another event")

	var obj map[string]any
	require.NoError(t, json.Unmarshal(registered.Data, &obj))
	obj["reference"] = registered.Meta.Reason
	swapped := registered
	swapped.Data, _ = json.Marshal(obj)
	_, err = e.store.Open(ctx, swapped)
	require.ErrorIs(t, err, personaldata.ErrCorrupt, "moved to another field")

	flipped := registered
	b := []byte(flipped.Meta.Reason)
	b[len(b)-3] ^= 1
	if b[len(b)-3] == '-' || b[len(b)-3] == '_' {
		b[len(b)-3] = 'A'
	}
	flipped.Meta.Reason = string(b)
	_, err = e.store.Open(ctx, flipped)
	require.ErrorIs(t, err, personaldata.ErrCorrupt, "changed")

	unknown := registered
	unknown.Stream = domain.ChildStream(uuid.New())
	_, err = e.store.Open(ctx, unknown)
	require.ErrorIs(t, err, personaldata.ErrCorrupt, "a subject without a key")
}

// TestPlainEventsReadAsTheyAre: events written before encryption was on
// (plain values) read unchanged.
func TestPlainEventsReadAsTheyAre(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	world(t, e.raw) // straight into the store, unsealed
	require.Equal(t, dump(t, e.raw), dump(t, e.store))
}

// TestErasureHidesValuesWrittenBeforeSealing: an erased subject's values
// written before sealing (plain in the log, with no key to destroy) read as
// erased too: through the store that erased it, through another replica's
// store once it reads the erasure event, and through a store opened later;
// other subjects' plain values read as they are.
func TestErasureHidesValuesWrittenBeforeSealing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	child, account := world(t, e.raw) // straight into the store, unsealed
	other := uuid.New()
	_, err := e.raw.Append(ctx, domain.ChildStream(other), eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.ChildRegistered{ChildID: other, Reference: "NCC-OTHER", RegisteredAt: at}, "kept"),
	})
	require.NoError(t, err)
	replica := personaldata.New(e.raw, e.keys) // another replica's layer, over the same keys
	require.Contains(t, dump(t, replica), reference, "its erased set loaded before the erasure")

	require.NoError(t, e.store.EraseChild(ctx, child))
	require.NoError(t, e.store.EraseAccount(ctx, account))
	opened := dump(t, e.store)
	for _, v := range personal {
		require.NotContains(t, opened, v)
	}
	require.Contains(t, opened, domain.ErasedText)
	require.Contains(t, opened, "NCC-OTHER")
	require.Contains(t, opened, "kept")

	// The other replica learns of the erasure from its event (the reads
	// after the one that met it).
	_, err = e.raw.Append(ctx, domain.ChildStream(child), eventlog.Any, []eventlog.EventData{
		data(t, &domain.ChildErased{ChildID: child, ErasedAt: at.Add(time.Hour)}, "Art. 17"),
	})
	require.NoError(t, err)
	_, err = replica.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	recs, err := replica.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	require.Equal(t, domain.ErasedText, recs[0].Meta.Reason)
	require.Contains(t, string(recs[0].Data), `"reference":"`+domain.ErasedText+`"`)
	require.Equal(t, "Art. 17", recs[len(recs)-1].Meta.Reason, "the erasure's own reason stays")

	// A store opened later loads the erased subjects from the key store.
	later := dump(t, personaldata.New(e.raw, e.keys))
	for _, v := range personal {
		require.NotContains(t, later, v)
	}
	require.Contains(t, later, "NCC-OTHER")
}

func TestEventsWithoutASubjectAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := data(t, &domain.AccessRevoked{ChildID: uuid.New(), AccountID: uuid.New(), RevokedAt: at}, reason)
	_, err := e.store.Append(context.Background(), "elsewhere-1", eventlog.NoStream, []eventlog.EventData{ev})
	require.ErrorIs(t, err, personaldata.ErrNoSubject)
	head, err := e.raw.Head(context.Background())
	require.NoError(t, err)
	require.True(t, head.IsZero(), "nothing appended")

	noReason := data(t, &domain.AccessRevoked{ChildID: uuid.New(), AccountID: uuid.New(), RevokedAt: at}, "")
	_, err = e.store.Append(context.Background(), "elsewhere-1", eventlog.NoStream, []eventlog.EventData{noReason})
	require.NoError(t, err, "no personal data, no subject needed")
}

// TestPolicyEventsKeepTheirReason: a policy event (R25) is about no data
// subject; its reason, the manager's record of why, is stored and read as
// given.
func TestPolicyEventsKeepTheirReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := data(t, &domain.PolicySet{GracePeriod: 3600, InvitationTTL: 7200, SessionIdleTimeout: 900, SessionWarningAfter: 600,
		ClosedAccountRetention: 86400, SetAt: at}, "shorter grace after the review")
	_, err := e.store.Append(context.Background(), domain.PolicyStream, eventlog.NoStream, []eventlog.EventData{ev})
	require.NoError(t, err)
	for _, s := range []eventlog.Store{e.raw, e.store} {
		recs, err := s.ReadStream(context.Background(), domain.PolicyStream, 1, 10)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, "shorter grace after the review", recs[0].Meta.Reason)
	}
}

// FuzzOpen: whatever a stored reason holds, Open returns an error or a
// value, never panics.
func FuzzOpen(f *testing.F) {
	f.Add(personaldata.Prefix + "AAAA")
	f.Add(personaldata.Prefix)
	f.Add("plain reason")
	f.Add(personaldata.Prefix + strings.Repeat("A", 60))
	e := newEnv(f)
	child := uuid.New()
	_, err := e.keys.Key(context.Background(), keystore.ChildSubject(child))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, stored string) {
		r := eventlog.Record{ID: uuid.New(), Stream: domain.ChildStream(child), Type: domain.TypeAccessRevoked,
			Data: []byte(`{}`), Meta: eventlog.Meta{Reason: stored}}
		got, err := e.store.Open(context.Background(), r)
		if err == nil && !strings.HasPrefix(stored, personaldata.Prefix) {
			require.Equal(t, stored, got.Meta.Reason)
		}
	})
}

// TestReadingAnErasureEventCompletesIt: when the erase command stopped
// after appending the erasure event and before destroying the key, the
// first read of the event destroys it.
func TestReadingAnErasureEventCompletesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	_, account := world(t, e.store)
	dpo := domain.Cause{Actor: domain.Actor{ID: "dpo-1", Role: domain.RoleDPO}, Reason: "Art. 17", RecordedAt: at}
	ev, err := dpo.EventData(uuid.New(), &domain.AccountErased{AccountID: account, ErasedAt: at.Add(time.Hour)})
	require.NoError(t, err)
	_, err = e.store.Append(ctx, domain.AccountStream(account), eventlog.Any, []eventlog.EventData{ev})
	require.NoError(t, err)
	st, err := e.keys.Status(ctx, keystore.AccountSubject(account))
	require.NoError(t, err)
	require.False(t, st.Erased(), "appending alone erases nothing")

	first := dump(t, e.store) // reads the events before the erasure opened, then the erasure
	require.Contains(t, first, email)
	require.Contains(t, first, "Art. 17", "an erasure's reason is kept as given")
	st, err = e.keys.Status(ctx, keystore.AccountSubject(account))
	require.NoError(t, err)
	require.True(t, st.Erased(), "reading the erasure event completed it")
	require.NotContains(t, dump(t, e.store), email)
	raw := dump(t, e.raw)
	require.Contains(t, raw, "Art. 17")
}

// TestCountPlain: the events written before sealing was on are counted;
// sealed ones, erasures and events without personal data are not.
func TestCountPlain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	world(t, e.store) // 9 events, sealed
	plain, total, err := personaldata.CountPlain(ctx, e.raw)
	require.NoError(t, err)
	require.Equal(t, [2]int64{0, 9}, [2]int64{plain, total})

	old := newEnv(t)
	world(t, old.raw) // 9 events unsealed: each has a reason or a personal field
	child := uuid.New()
	_, err = old.raw.Append(ctx, domain.ChildStream(child), eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.AccessRevoked{ChildID: child, AccountID: uuid.New(), RevokedAt: at}, "")})
	require.NoError(t, err)
	plain, total, err = personaldata.CountPlain(ctx, old.raw)
	require.NoError(t, err)
	require.Equal(t, [2]int64{9, 10}, [2]int64{plain, total})
}

// bulkReader gives the in-memory store the SQL store's ReadStreams.
type bulkReader struct{ *memstore.Store }

func (b bulkReader) ReadStreams(ctx context.Context, streams []string) (map[string][]eventlog.Record, error) {
	out := map[string][]eventlog.Record{}
	for _, name := range streams {
		recs, err := b.ReadStream(ctx, name, 1, 0)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 {
			out[name] = recs
		}
	}
	return out, nil
}

// TestSealStreamsAndReadStreamsAgreeWithOneByOne: the bulk paths seal and
// open exactly as Seal and ReadStream do, stream by stream, with the same
// refusals, over subjects with a key, without one and erased.
func TestSealStreamsAndReadStreamsAgreeWithOneByOne(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	child, account := world(t, e.store)
	erased := uuid.New()
	require.NoError(t, e.store.EraseChild(ctx, erased))
	fresh := uuid.New()
	streams := []personaldata.StreamEvents{
		{Stream: domain.ChildStream(child), Events: []eventlog.EventData{
			data(t, &domain.AccessRevoked{ChildID: child, AccountID: account, RevokedAt: at.Add(5 * time.Hour)}, reason)}},
		{Stream: domain.ChildStream(fresh), Events: []eventlog.EventData{
			data(t, &domain.ChildRegistered{ChildID: fresh, Reference: "NCC-2024-00999", RegisteredAt: at}, reason),
			data(t, &domain.AccessRevoked{ChildID: fresh, AccountID: account, RevokedAt: at.Add(time.Hour)}, "")}},
		{Stream: domain.ChildStream(erased), Events: []eventlog.EventData{
			data(t, &domain.AccessRevoked{ChildID: erased, AccountID: account, RevokedAt: at.Add(time.Hour)}, reason)}},
	}

	for _, c := range []struct {
		name    string
		streams []personaldata.StreamEvents
		wantErr error
	}{
		{"keys kept, made and erased", streams, nil},
		{"personal data of an erased subject", append(streams[:1:1], personaldata.StreamEvents{Stream: domain.ChildStream(erased),
			Events: []eventlog.EventData{data(t, &domain.ChildRegistered{ChildID: erased, Reference: reference, RegisteredAt: at}, "")}}),
			keystore.ErrErased},
		{"no subject", []personaldata.StreamEvents{{Stream: "other-1", Events: streams[0].Events}}, personaldata.ErrNoSubject},
	} {
		t.Run(c.name, func(t *testing.T) {
			bulk, err := personaldata.New(e.raw, e.keys).SealStreams(ctx, c.streams)
			if c.wantErr != nil {
				require.ErrorIs(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, bulk, len(c.streams))
			one := personaldata.New(e.raw, e.keys) // its own cache
			for i, st := range c.streams {
				want, err := one.Seal(ctx, st.Stream, st.Events)
				require.NoError(t, err)
				require.Equal(t, want, bulk[i], st.Stream)
				for _, ev := range bulk[i] {
					require.NotContains(t, string(ev.Data)+ev.Meta.Reason, reason)
					require.NotContains(t, string(ev.Data), "NCC-")
				}
			}
			require.Equal(t, domain.ErasedText, bulk[2][0].Meta.Reason, "an erased subject's reason reads as erased")
		})
	}

	for _, st := range streams {
		_, err := e.store.Append(ctx, st.Stream, eventlog.Any, st.Events)
		require.NoError(t, err)
	}
	names := []string{domain.ChildStream(child), domain.AccountStream(account), domain.EmailStream(newEmail),
		domain.ChildStream(fresh), domain.ChildStream(erased), "missing-1", domain.ChildStream(child)}
	_, err := personaldata.New(e.raw, e.keys).ReadStreams(ctx, names)
	require.ErrorIs(t, err, eventlog.ErrBatchUnsupported, "over a store without bulk reads, read one by one")
	for _, layer := range []struct {
		name  string
		store *personaldata.Store
	}{
		{"bulk reads", personaldata.New(bulkReader{e.raw}, e.keys)},
	} {
		t.Run(layer.name, func(t *testing.T) {
			got, err := layer.store.ReadStreams(ctx, names)
			require.NoError(t, err)
			require.Len(t, got, 5, "every stream once; a missing one absent")
			for _, name := range names[:5] {
				want, err := e.store.ReadStream(ctx, name, 1, 0)
				require.NoError(t, err)
				require.NotEmpty(t, want)
				require.Equal(t, want, got[name], name)
			}
			var registered struct {
				Reference string `json:"reference"`
			}
			require.NoError(t, json.Unmarshal(got[domain.ChildStream(child)][0].Data, &registered))
			require.Equal(t, reference, registered.Reference, "opened")
		})
	}
}

// TestReadStreamsCompletesAnErasureItReads: an erasure event whose key
// was not destroyed yet (the command stopped) is completed by the bulk
// read too, and what follows it in the stream reads as erased, as
// ReadStream reads it.
func TestReadStreamsCompletesAnErasureItReads(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	child := uuid.New()
	stream := domain.ChildStream(child)
	_, err := e.store.Append(ctx, stream, eventlog.NoStream, []eventlog.EventData{
		data(t, &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at}, reason)})
	require.NoError(t, err)
	dpo := domain.Cause{Actor: domain.Actor{ID: "dpo-1", Role: domain.RoleDPO}, Reason: "Art. 17", RecordedAt: at}
	erasure, err := dpo.EventData(uuid.New(), &domain.ChildErased{ChildID: child, ErasedAt: at.Add(time.Hour)})
	require.NoError(t, err)
	_, err = e.raw.Append(ctx, stream, eventlog.Exactly(1), []eventlog.EventData{erasure}) // the key not destroyed
	require.NoError(t, err)
	_, err = e.store.Append(ctx, stream, eventlog.Exactly(2), []eventlog.EventData{
		data(t, &domain.AccessRevoked{ChildID: child, AccountID: uuid.New(), RevokedAt: at.Add(2 * time.Hour)}, reason)})
	require.NoError(t, err)

	got, err := personaldata.New(bulkReader{e.raw}, e.keys).ReadStreams(ctx, []string{stream})
	require.NoError(t, err)
	require.Len(t, got[stream], 3)
	require.Equal(t, domain.ErasedText, got[stream][2].Meta.Reason, "after the erasure, erased")
	_, err = e.keys.Find(ctx, keystore.ChildSubject(child))
	require.ErrorIs(t, err, keystore.ErrErased, "the erasure completed")
	again, err := personaldata.New(bulkReader{e.raw}, e.keys).ReadStreams(ctx, []string{stream})
	require.NoError(t, err)
	one, err := personaldata.New(e.raw, e.keys).ReadStream(ctx, stream, 1, 0)
	require.NoError(t, err)
	require.Equal(t, one, again[stream])
	require.Equal(t, domain.ErasedText, again[stream][0].Meta.Reason)
}

// AppendBatch and ReadStreams are the wrapped store's, sealing and opening
// as Append and ReadStream do; over a store without AppendBatch (the
// in-memory one, EventStoreDB) they write and read nothing and say so
// (eventlog.ErrBatchUnsupported).
func TestBatchesSealAndOpenOrAreUnsupported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	child := uuid.New()
	evs := []eventlog.EventData{data(t, &domain.ChildRegistered{ChildID: child, Reference: reference, RegisteredAt: at}, reason)}
	batch := []eventlog.StreamAppend{{Stream: domain.ChildStream(child), Expected: eventlog.NoStream, Events: evs}}

	e := newEnv(t)
	_, err := e.store.AppendBatch(ctx, batch)
	require.ErrorIs(t, err, eventlog.ErrBatchUnsupported)
	_, err = e.store.ReadStreams(ctx, []string{domain.ChildStream(child)})
	require.ErrorIs(t, err, eventlog.ErrBatchUnsupported)
	_, err = e.store.ReadStreamsFrom(ctx, []eventlog.StreamFrom{{Stream: domain.ChildStream(child), From: 1}})
	require.ErrorIs(t, err, eventlog.ErrBatchUnsupported)
	require.Empty(t, dump(t, e.raw), "nothing written")

	db := sqltest.Open(t, sqltest.SQLiteMemory(t))
	require.NoError(t, sqlstore.Migrate(ctx, db))
	raw, err := sqlstore.New(ctx, db)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, raw.Close()) })
	s := personaldata.New(raw, e.keys)
	_, err = s.AppendBatch(ctx, batch)
	require.NoError(t, err)
	stored, err := raw.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	require.Len(t, stored, 1)
	require.NotContains(t, string(stored[0].Data), reference, "sealed")
	require.NotEqual(t, reason, stored[0].Meta.Reason)
	got, err := s.ReadStreams(ctx, []string{domain.ChildStream(child), "child-missing"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	opened, err := s.ReadStream(ctx, domain.ChildStream(child), 1, 0)
	require.NoError(t, err)
	require.Equal(t, opened, got[domain.ChildStream(child)], "opened as ReadStream opens")
	require.Equal(t, reason, opened[0].Meta.Reason)

	// The ends of streams, opened as ReadStream opens them from there.
	_, err = s.Append(ctx, domain.ChildStream(child), eventlog.Exactly(1), []eventlog.EventData{
		data(t, &domain.AccessRevoked{ChildID: child, AccountID: uuid.New(), RevokedAt: at.Add(time.Hour)}, reason)})
	require.NoError(t, err)
	ends, err := s.ReadStreamsFrom(ctx, []eventlog.StreamFrom{{Stream: domain.ChildStream(child), From: 2}, {Stream: "child-missing", From: 1}})
	require.NoError(t, err)
	require.Len(t, ends, 1)
	tail, err := s.ReadStream(ctx, domain.ChildStream(child), 2, 0)
	require.NoError(t, err)
	require.Len(t, tail, 1)
	require.Equal(t, tail, ends[domain.ChildStream(child)])
	require.Equal(t, reason, tail[0].Meta.Reason, "opened")
	stored, err = raw.ReadStream(ctx, domain.ChildStream(child), 2, 0)
	require.NoError(t, err)
	require.NotEqual(t, reason, stored[0].Meta.Reason, "sealed")
}
