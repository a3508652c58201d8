package domain_test

import (
	"encoding/json"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The tests in this file pin the event codec: every event of the catalogue
// has an example here, encodes and decodes to itself, and a payload that is
// not exactly one valid JSON object of its schema is refused.

var (
	exChild     = uuid.MustParse("a0000000-0000-4000-8000-000000000001")
	exPlacement = uuid.MustParse("a0000000-0000-4000-8000-000000000002")
	exEmail     = "carer.one@example.org"
	exAccount   = domain.AccountIDForEmail(exEmail)
	exOther     = uuid.MustParse("a0000000-0000-4000-8000-000000000003")
	// exAt has whole microseconds, in UTC: the form of every time the
	// package produces.
	exAt = time.Date(2026, 3, 2, 9, 15, 30, 123456000, time.UTC)
)

// codecExample is a valid event of one type and the effective time it must
// report.
type codecExample struct {
	event     domain.Event
	effective time.Time
}

// codecExamples returns a fresh valid example of every event type, by name.
// A new event type in the catalogue without an example here fails
// TestCodec_EveryEventTypeHasAnExample.
func codecExamples() map[string]codecExample {
	at := func(d time.Duration) time.Time { return exAt.Add(d) }
	h := time.Hour
	return map[string]codecExample{
		domain.TypeChildRegistered: {&domain.ChildRegistered{
			ChildID: exChild, Reference: "C-0001", WorkerID: "worker-ann", RegisteredAt: at(1 * h), RetainUntil: at(24 * 3650 * h)}, at(1 * h)},
		domain.TypeWorkerAllocated: {&domain.WorkerAllocated{
			ChildID: exChild, WorkerID: "worker-bob", PreviousWorkerID: "worker-ann", AllocatedAt: at(2 * h)}, at(2 * h)},
		domain.TypePlacementStarted: {&domain.PlacementStarted{
			ChildID: exChild, PlacementID: exPlacement, CarerAccountID: exAccount, StartedAt: at(3 * h)}, at(3 * h)},
		domain.TypePlacementEnded: {&domain.PlacementEnded{
			ChildID: exChild, PlacementID: exPlacement, CarerAccountID: exAccount, EndedAt: at(4 * h),
			GraceUntil: at(4*h + 7*24*h)}, at(4 * h)},
		domain.TypeGraceEndedEarly: {&domain.GraceEndedEarly{
			ChildID: exChild, PlacementID: exPlacement, CarerAccountID: exAccount, EndedAt: at(5 * h)}, at(5 * h)},
		domain.TypeGraceExpired: {&domain.GraceExpired{
			ChildID: exChild, PlacementID: exPlacement, CarerAccountID: exAccount, ExpiredAt: at(6 * h)}, at(6 * h)},
		domain.TypeAccessGranted: {&domain.AccessGranted{
			ChildID: exChild, AccountID: exOther, Relationship: domain.RelParent,
			Permissions: []string{domain.PermView, domain.PermRecord}, GrantedAt: at(7 * h), ExpiresAt: at(7*h + 90*24*h)}, at(7 * h)},
		domain.TypeAccessRevoked: {&domain.AccessRevoked{
			ChildID: exChild, AccountID: exOther, RevokedAt: at(8 * h), GrantedAt: at(7 * h)}, at(8 * h)},
		domain.TypeAccountInvited: {&domain.AccountInvited{
			AccountID: exAccount, Email: exEmail, Kind: domain.KindFosterCarer,
			InvitedAt: at(9 * h), ExpiresAt: at(9*h + 14*24*h)}, at(9 * h)},
		domain.TypeInvitationExpired: {&domain.InvitationExpired{
			AccountID: exAccount, ExpiredAt: at(10 * h)}, at(10 * h)},
		domain.TypeAccountActivated: {&domain.AccountActivated{
			AccountID: exAccount, IdentitySubject: "idp|carer-one", ActivatedAt: at(11 * h)}, at(11 * h)},
		domain.TypeAccountClosed: {&domain.AccountClosed{
			AccountID: exAccount, ClosedAt: at(12 * h)}, at(12 * h)},
		domain.TypePhoneResetRequested: {&domain.PhoneResetRequested{
			AccountID: exAccount, RequestedAt: at(13 * h)}, at(13 * h)},
		domain.TypePhoneCleared: {&domain.PhoneCleared{
			AccountID: exAccount, ClearedAt: at(14 * h)}, at(14 * h)},
		domain.TypePhoneEnrolled: {&domain.PhoneEnrolled{
			AccountID: exAccount, PhoneHint: "***123", EnrolledAt: at(15 * h)}, at(15 * h)},
		domain.TypeIdentityLinked: {&domain.IdentityLinked{
			Subject: "idp|carer-one", AccountID: exAccount, LinkedAt: at(16 * h)}, at(16 * h)},
		domain.TypeAccountErased: {&domain.AccountErased{AccountID: exAccount, ErasedAt: at(17 * h)}, at(17 * h)},
		domain.TypeChildErased:   {&domain.ChildErased{ChildID: exChild, ErasedAt: at(18 * h)}, at(18 * h)},
		domain.TypeChildRetentionSet: {&domain.ChildRetentionSet{ChildID: exChild, RetainUntil: at(24 * 3650 * h),
			SetAt: at(19 * h)}, at(19 * h)},
		domain.TypePlacementCancelled: {&domain.PlacementCancelled{ChildID: exChild, PlacementID: exPlacement,
			CarerAccountID: exAccount, CancelledAt: at(20 * h)}, at(20 * h)},
		domain.TypeAccountReopened: {&domain.AccountReopened{AccountID: exAccount, ClosedAt: at(12 * h), ReopenedAt: at(21 * h)}, at(21 * h)},
		domain.TypeEmailChangeRequested: {&domain.EmailChangeRequested{AccountID: exAccount, Email: "new@example.org",
			RequestedAt: at(22 * h)}, at(22 * h)},
		domain.TypeEmailChanged: {&domain.EmailChanged{AccountID: exAccount, Email: "new@example.org",
			ChangedAt: at(23 * h)}, at(23 * h)},
		domain.TypeEmailClaimed:  {&domain.EmailClaimed{AccountID: exAccount, ClaimedAt: at(24 * h)}, at(24 * h)},
		domain.TypeEmailReleased: {&domain.EmailReleased{AccountID: exAccount, ReleasedAt: at(25 * h)}, at(25 * h)},
		domain.TypePlacementStartReached: {&domain.PlacementStartReached{ChildID: exChild, PlacementID: exPlacement,
			CarerAccountID: exAccount, ReachedAt: at(26 * h)}, at(26 * h)},
		domain.TypePlacementEndReached: {&domain.PlacementEndReached{ChildID: exChild, PlacementID: exPlacement,
			CarerAccountID: exAccount, ReachedAt: at(27 * h)}, at(27 * h)},
		domain.TypePolicySet: {&domain.PolicySet{GracePeriod: 7 * 24 * 3600, InvitationTTL: 14 * 24 * 3600, SessionIdleTimeout: 15 * 60,
			SessionWarningAfter: 10 * 60, ClosedAccountRetention: 2192 * 24 * 3600, ReviewPeriod: 365 * 24 * 3600, SetAt: at(20 * h)}, at(20 * h)},
		domain.TypeGrantReviewed: {&domain.GrantReviewed{ChildID: exChild, AccountID: exOther, GrantedAt: at(7 * h),
			ReviewedAt: at(26 * h), ReviewBy: at(26*h + 365*24*h)}, at(26 * h)},
		domain.TypeGrantExpired: {&domain.GrantExpired{ChildID: exChild, AccountID: exOther, GrantedAt: at(7 * h),
			ExpiredAt: at(7*h + 90*24*h)}, at(7*h + 90*24*h)},
	}
}

// exPayload is the encoded example of typ.
func exPayload(t testing.TB, typ string) []byte {
	t.Helper()
	ex, ok := codecExamples()[typ]
	require.True(t, ok, "no example of %s", typ)
	b, err := domain.Encode(ex.event)
	require.NoError(t, err)
	return b
}

// exMutated is the example payload of typ as a JSON object, changed by f.
func exMutated(t testing.TB, typ string, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(exPayload(t, typ), &m))
	f(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

// jsonField is one field of an event struct as the codec sees it.
type jsonField struct {
	goName   string
	name     string // JSON name
	optional bool   // omitempty
	typ      reflect.Type
}

func jsonFields(e domain.Event) []jsonField {
	rt := reflect.TypeOf(e).Elem()
	var out []jsonField
	for i := 0; i < rt.NumField(); i++ {
		sf := rt.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		}
		out = append(out, jsonField{goName: sf.Name, name: name, optional: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero"), typ: sf.Type})
	}
	return out
}

var (
	uuidType = reflect.TypeOf(uuid.UUID{})
	timeType = reflect.TypeOf(time.Time{})
)

func TestCodec_EveryEventTypeHasAnExample(t *testing.T) {
	examples := codecExamples()
	types := domain.EventTypes()
	require.NotEmpty(t, types)
	require.True(t, sort.StringsAreSorted(types), "EventTypes is sorted")
	name := regexp.MustCompile(`^[a-z][a-z_]*\.[a-z][a-z_]*\.v[1-9][0-9]*$`)
	seen := map[string]bool{}
	for _, typ := range types {
		require.False(t, seen[typ], "%s listed twice", typ)
		seen[typ] = true
		require.Regexp(t, name, typ, "event names are stable and versioned: area.fact.vN")
		ex, ok := examples[typ]
		require.True(t, ok, "event type %s has no example in codecExamples: add one", typ)
		require.Equal(t, typ, ex.event.EventType())
	}
	for typ := range examples {
		require.True(t, seen[typ], "example %s is not in the catalogue", typ)
	}
}

func TestCodec_RoundTrip(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		t.Run(typ, func(t *testing.T) {
			ex := codecExamples()[typ]
			require.NotNil(t, ex.event, "no example of %s", typ)
			require.Equal(t, ex.effective, ex.event.EffectiveAt(), "effective time of %s", typ)

			b, err := domain.Encode(ex.event)
			require.NoError(t, err)
			require.True(t, json.Valid(b))
			require.Equal(t, byte('{'), b[0], "a payload is a JSON object")

			got, err := domain.Decode(typ, b)
			require.NoError(t, err)
			require.Equal(t, ex.event, got)
			require.Equal(t, reflect.TypeOf(ex.event), reflect.TypeOf(got))
			require.Equal(t, ex.effective, got.EffectiveAt())

			again, err := domain.Encode(got)
			require.NoError(t, err)
			require.Equal(t, string(b), string(again), "encoding is stable")

			// Every field of the schema is in the payload (none is lost by
			// a missing json tag), and nothing else.
			var m map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(b, &m))
			// (An optional field the example leaves zero is absent: a
			// time-limited grant has no review date.)
			var names []string
			ev := reflect.ValueOf(ex.event).Elem()
			for _, f := range jsonFields(ex.event) {
				if f.optional && ev.FieldByName(f.goName).IsZero() {
					continue
				}
				names = append(names, f.name)
			}
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			require.ElementsMatch(t, names, keys)
		})
	}
}

func TestCodec_OptionalFieldsMayBeOmitted(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		ex := codecExamples()[typ]
		require.NotNil(t, ex.event, "no example of %s", typ)
		for _, f := range jsonFields(ex.event) {
			if !f.optional {
				continue
			}
			t.Run(typ+"/"+f.name, func(t *testing.T) {
				b := exMutated(t, typ, func(m map[string]any) { delete(m, f.name) })
				got, err := domain.Decode(typ, b)
				require.NoError(t, err)
				again, err := domain.Encode(got)
				require.NoError(t, err)
				require.JSONEq(t, string(b), string(again))
			})
		}
	}
}

func TestCodec_DecodeRefusesUnknownType(t *testing.T) {
	payload := exPayload(t, domain.TypeAccountClosed)
	for _, typ := range []string{
		"", "account.closed", "account.closed.v2", "Account.Closed.v1", " account.closed.v1",
		"account.closed.v1 ", "nope.v1", strings.Repeat("x", 10_000),
	} {
		t.Run(typ[:min(len(typ), 40)], func(t *testing.T) {
			got, err := domain.Decode(typ, payload)
			require.ErrorIs(t, err, domain.ErrUnknownEventType)
			require.NotErrorIs(t, err, domain.ErrMalformedEvent)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err))
			require.Nil(t, got)
			require.Less(t, len(err.Error()), 200, "the error does not echo a huge type name")
		})
	}
}

func TestCodec_EncodeRefuses(t *testing.T) {
	_, err := domain.Encode(nil)
	require.ErrorIs(t, err, domain.ErrMalformedEvent)

	// An event type outside the catalogue. (The embedded interface is nil:
	// Encode must refuse before calling anything else on it.)
	_, err = domain.Encode(strangerEvent{})
	require.ErrorIs(t, err, domain.ErrUnknownEventType)

	// Every example with its required fields emptied breaks its schema.
	for _, typ := range domain.EventTypes() {
		ex := codecExamples()[typ]
		require.NotNil(t, ex.event, "no example of %s", typ)
		for _, f := range jsonFields(ex.event) {
			if f.optional {
				continue
			}
			t.Run(typ+"/"+f.name, func(t *testing.T) {
				e := codecExamples()[typ].event
				fv := reflect.ValueOf(e).Elem().FieldByName(f.goName)
				fv.Set(reflect.Zero(fv.Type()))
				_, err := domain.Encode(e)
				require.ErrorIs(t, err, domain.ErrMalformedEvent)
				require.ErrorIs(t, err, domain.ErrInvalid, "the field problem is kept in the chain")
			})
		}
	}
}

type strangerEvent struct{ domain.Event }

func (strangerEvent) EventType() string { return "stranger.appeared.v1" }

// TestCodec_DecodeRefusesMalformedPayloads runs, for every event type, the
// generic refusals (shape, unknown fields, wrong JSON types, missing and empty
// required fields) and then the out-of-range cases of particular events.
func TestCodec_DecodeRefusesMalformedPayloads(t *testing.T) {
	type bad struct {
		name    string
		typ     string
		payload []byte
	}
	var cases []bad
	add := func(typ, name string, payload []byte) { cases = append(cases, bad{name, typ, payload}) }
	set := func(typ, field string, v any) []byte {
		return exMutated(t, typ, func(m map[string]any) { m[field] = v })
	}

	for _, typ := range domain.EventTypes() {
		ex := codecExamples()[typ]
		require.NotNil(t, ex.event, "no example of %s", typ)
		valid := exPayload(t, typ)

		// The shape: exactly one JSON object.
		add(typ, "empty", []byte{})
		add(typ, "whitespace", []byte(" \n\t"))
		add(typ, "null", []byte("null"))
		add(typ, "empty object", []byte("{}"))
		add(typ, "array", []byte("[]"))
		add(typ, "array of the object", append(append([]byte("["), valid...), ']'))
		add(typ, "string", []byte(`"x"`))
		add(typ, "number", []byte("42"))
		add(typ, "true", []byte("true"))
		add(typ, "not JSON", []byte("child_id=1"))
		add(typ, "truncated", valid[:len(valid)-1])
		add(typ, "trailing object", append(append([]byte{}, valid...), []byte(" {}")...))
		add(typ, "object twice", append(append([]byte{}, valid...), valid...))
		add(typ, "trailing garbage", append(append([]byte{}, valid...), []byte("x")...))
		add(typ, "trailing comma", append(append([]byte{}, valid...), ','))
		add(typ, "trailing bracket", append(append([]byte{}, valid...), ']'))
		add(typ, "trailing null", append(append([]byte{}, valid...), []byte("null")...))

		// Unknown fields, including secrets that must never get in (R11, R12).
		for _, extra := range []string{"extra", "password", "phone", "phone_number", "secret", "id"} {
			add(typ, "unknown field "+extra, set(typ, extra, "x"))
		}

		for _, f := range jsonFields(ex.event) {
			// Wrong JSON types.
			wrong := []any{12345, true, map[string]any{}, []any{}}
			switch f.typ {
			case uuidType:
				wrong = append(wrong, "not-a-uuid", "a0000000-0000-4000-8000-00000000000", 1.5)
				add(typ, f.name+" nil uuid", set(typ, f.name, uuid.Nil.String()))
			case timeType:
				wrong = append(wrong, "yesterday", "2026-03-02", "2026-03-02 09:00:00", 1772442930)
				if !f.optional { // an optional time's zero value is its absence
					add(typ, f.name+" zero time", set(typ, f.name, time.Time{}.Format(time.RFC3339Nano)))
				}
				add(typ, f.name+" before 1900", set(typ, f.name, "1899-12-31T23:59:59Z"))
				add(typ, f.name+" year 0", set(typ, f.name, "0000-06-01T00:00:00Z"))
			}
			if f.typ.Kind() == reflect.Int64 { // a policy's seconds: a positive whole number
				wrong = []any{"600", true, map[string]any{}, []any{}, 1.5, 0, -1, nil}
				if f.optional { // absent or zero: the default (R19's review period)
					wrong = []any{"600", true, map[string]any{}, []any{}, 1.5, -1}
				}
			}
			if f.typ.Kind() == reflect.Slice {
				wrong = []any{"view", 1, true, map[string]any{}, []any{1}, []any{nil}, []any{[]any{"view"}}}
			}
			if f.typ.Kind() == reflect.String {
				wrong = []any{12345, true, map[string]any{}, []any{"x"}}
				add(typ, f.name+" blank", set(typ, f.name, "   "))
				add(typ, f.name+" control character", set(typ, f.name, "a\u0007b"))
				add(typ, f.name+" NUL", set(typ, f.name, "a\u0000b"))
				add(typ, f.name+" too long", set(typ, f.name, strings.Repeat("x", 300)))
				if !f.optional {
					add(typ, f.name+" empty", set(typ, f.name, ""))
				}
			}
			for _, w := range wrong {
				b, err := json.Marshal(w)
				require.NoError(t, err)
				add(typ, f.name+" = "+string(b), set(typ, f.name, w))
			}
			if !f.optional {
				add(typ, f.name+" missing", exMutated(t, typ, func(m map[string]any) { delete(m, f.name) }))
				add(typ, f.name+" null", set(typ, f.name, nil))
			}
		}
	}

	// Out-of-range values of particular events.
	for _, perms := range [][]any{
		{},
		{"record"},
		{"view", "complete_outstanding"},
		{"view", "record", "complete_outstanding"},
		{"complete_outstanding"},
		{"view", "view"},
		{"view", "admin"},
		{"VIEW"},
		{" view"},
		{""},
	} {
		b, _ := json.Marshal(perms)
		add(domain.TypeAccessGranted, "permissions "+string(b), set(domain.TypeAccessGranted, "permissions", perms))
	}
	for _, rel := range []string{"", "foster_carer", "Parent", "friend", "parent "} {
		add(domain.TypeAccessGranted, "relationship "+rel, set(domain.TypeAccessGranted, "relationship", rel))
	}
	for _, kind := range []string{"", "worker", "FOSTER_CARER", "carer", "system"} {
		add(domain.TypeAccountInvited, "kind "+kind, set(domain.TypeAccountInvited, "kind", kind))
	}
	for _, hint := range []string{
		"", "+447700900123", "07700900123", "***", "***12", "***1234", "**123", "****123", "***abc",
		"***12a", "***١٢٣", "***１２３", "123***", "*** 123", "xxx123",
	} {
		add(domain.TypePhoneEnrolled, "phone_hint "+hint, set(domain.TypePhoneEnrolled, "phone_hint", hint))
	}
	ended := codecExamples()[domain.TypePlacementEnded].event.(*domain.PlacementEnded)
	add(domain.TypePlacementEnded, "grace_until before ended_at",
		set(domain.TypePlacementEnded, "grace_until", ended.EndedAt.Add(-time.Microsecond).Format(time.RFC3339Nano)))
	add(domain.TypePlacementEnded, "grace_until long before ended_at",
		set(domain.TypePlacementEnded, "grace_until", ended.EndedAt.Add(-7*24*time.Hour).Format(time.RFC3339Nano)))
	add(domain.TypePolicySet, "session warning after the idle timeout", set(domain.TypePolicySet, "session_warning_after", 15*60))
	add(domain.TypePolicySet, "grace period over the longest policy period", set(domain.TypePolicySet, "grace_period", 36501*24*3600))
	invited := codecExamples()[domain.TypeAccountInvited].event.(*domain.AccountInvited)
	add(domain.TypeAccountInvited, "expires_at equal to invited_at",
		set(domain.TypeAccountInvited, "expires_at", invited.InvitedAt.Format(time.RFC3339Nano)))
	add(domain.TypeAccountInvited, "expires_at before invited_at",
		set(domain.TypeAccountInvited, "expires_at", invited.InvitedAt.Add(-time.Hour).Format(time.RFC3339Nano)))
	for _, email := range []string{"carer", "carer@", "@example.org", "carer@example", "carer@@example.org",
		"carer one@example.org", "<carer@example.org>", " carer@example.org", "carer@example..org", "carer@.example.org"} {
		add(domain.TypeAccountInvited, "email "+email, set(domain.TypeAccountInvited, "email", email))
	}

	for _, c := range cases {
		t.Run(c.typ+"/"+c.name, func(t *testing.T) {
			got, err := domain.Decode(c.typ, c.payload)
			require.Error(t, err, "payload %s", c.payload)
			require.ErrorIs(t, err, domain.ErrMalformedEvent, "payload %s", c.payload)
			require.NotErrorIs(t, err, domain.ErrUnknownEventType)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err))
			require.Nil(t, got)
		})
	}
}

// TestCodec_DecodeAcceptsValidVariants lists payloads that differ from the
// examples but are valid, so that the refusals above are not too wide.
func TestCodec_DecodeAcceptsValidVariants(t *testing.T) {
	set := func(typ, field string, v any) []byte {
		return exMutated(t, typ, func(m map[string]any) { m[field] = v })
	}
	cases := []struct {
		name    string
		typ     string
		payload []byte
	}{
		{"view only", domain.TypeAccessGranted, set(domain.TypeAccessGranted, "permissions", []string{"view"})},
		{"record listed first", domain.TypeAccessGranted, set(domain.TypeAccessGranted, "permissions", []string{"record", "view"})},
		{"guardian", domain.TypeAccessGranted, set(domain.TypeAccessGranted, "relationship", "guardian")},
		{"network member", domain.TypeAccessGranted, set(domain.TypeAccessGranted, "relationship", "network_member")},
		{"parent kind", domain.TypeAccountInvited, set(domain.TypeAccountInvited, "kind", "parent")},
		{"hint 000", domain.TypePhoneEnrolled, set(domain.TypePhoneEnrolled, "phone_hint", "***000")},
		{"grace_until equal to ended_at", domain.TypePlacementEnded,
			set(domain.TypePlacementEnded, "grace_until", codecExamples()[domain.TypePlacementEnded].event.EffectiveAt().Format(time.RFC3339Nano))},
		{"no worker", domain.TypeChildRegistered, exMutated(t, domain.TypeChildRegistered, func(m map[string]any) { delete(m, "worker_id") })},
		{"leading and trailing whitespace", domain.TypeAccountClosed, append(append([]byte(" \n"), exPayload(t, domain.TypeAccountClosed)...), '\n', ' ')},
		{"year 1900", domain.TypeAccountClosed, set(domain.TypeAccountClosed, "closed_at", "1900-01-01T00:00:00Z")},
		{"year 9999", domain.TypeAccountClosed, set(domain.TypeAccountClosed, "closed_at", "9999-12-31T23:59:59.999999Z")},
	}
	for _, c := range cases {
		t.Run(c.typ+"/"+c.name, func(t *testing.T) {
			got, err := domain.Decode(c.typ, c.payload)
			require.NoError(t, err, "payload %s", c.payload)
			b, err := domain.Encode(got)
			require.NoError(t, err)
			again, err := domain.Decode(c.typ, b)
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

var (
	exCorrelation = uuid.MustParse("c0000000-0000-4000-8000-000000000001")
	exCausation   = uuid.MustParse("c0000000-0000-4000-8000-000000000002")
	exEventID     = uuid.MustParse("e0000000-0000-4000-8000-000000000001")
)

// TestCodec_CauseEventDataCarriesMetadata: the metadata of every event type
// carries actor, role, reason, correlation and causation (R14); its effective
// time is the event's own and both times are UTC, whole microseconds. The
// record read back decodes to an Envelope with every field.
func TestCodec_CauseEventDataCarriesMetadata(t *testing.T) {
	recorded := time.Date(2026, 3, 4, 10, 11, 12, 345678999, time.FixedZone("BST", 3600))
	recordedUTC := time.Date(2026, 3, 4, 9, 11, 12, 345678000, time.UTC)
	cause := domain.Cause{
		Actor:         domain.Actor{ID: "worker-ann", Role: domain.RoleWorker},
		Reason:        "safeguarding concern",
		RecordedAt:    recorded,
		CorrelationID: exCorrelation,
		CausationID:   exCausation,
	}
	for i, typ := range domain.EventTypes() {
		t.Run(typ, func(t *testing.T) {
			ex := codecExamples()[typ]
			require.NotNil(t, ex.event, "no example of %s", typ)
			ed, err := cause.EventData(exEventID, ex.event)
			require.NoError(t, err)
			payload, err := domain.Encode(ex.event)
			require.NoError(t, err)
			require.Equal(t, eventlog.EventData{
				ID:   exEventID,
				Type: typ,
				Data: payload,
				Meta: eventlog.Meta{
					ActorID:       "worker-ann",
					ActorRole:     "worker",
					Reason:        "safeguarding concern",
					EffectiveAt:   ex.effective,
					RecordedAt:    recordedUTC,
					CorrelationID: exCorrelation,
					CausationID:   exCausation,
				},
			}, ed)
			requireNormalized(t, ed.Meta.EffectiveAt)
			requireNormalized(t, ed.Meta.RecordedAt)
			require.NoError(t, eventlog.Validate("stream-1", []eventlog.EventData{ed}))

			rec := eventlog.Record{
				ID: ed.ID, Stream: "stream-1", Version: uint64(i + 1),
				Position: eventlog.Position{Commit: 100 + uint64(i), Prepare: 99},
				Type:     ed.Type, Data: ed.Data, Meta: ed.Meta,
			}
			env, err := domain.DecodeRecord(rec)
			require.NoError(t, err)
			require.Equal(t, domain.Envelope{
				EventID:       exEventID,
				Stream:        "stream-1",
				StreamVersion: uint64(i + 1),
				Position:      eventlog.Position{Commit: 100 + uint64(i), Prepare: 99},
				Type:          typ,
				ActorID:       "worker-ann",
				ActorRole:     domain.RoleWorker,
				Reason:        "safeguarding concern",
				EffectiveAt:   ex.effective,
				RecordedAt:    recordedUTC,
				CorrelationID: exCorrelation,
				CausationID:   exCausation,
				Event:         ex.event,
			}, env)
			require.Equal(t, env.EffectiveAt, env.Event.EffectiveAt(), "metadata and payload agree")
		})
	}
}

func requireNormalized(t *testing.T, tm time.Time) {
	t.Helper()
	require.Equal(t, time.UTC, tm.Location(), "%s is in UTC", tm)
	require.Zero(t, tm.Nanosecond()%1000, "%s has whole microseconds", tm)
}

// TestCodec_CauseEventDataEffectiveTimeInUTC: an event whose effective time
// is not in the package's form (UTC, whole microseconds) is either refused,
// or gets the same instant, in UTC, in its metadata: metadata and payload
// never disagree (R14).
func TestCodec_CauseEventDataEffectiveTimeInUTC(t *testing.T) {
	bst := time.FixedZone("BST", 3600)
	cases := []struct {
		name     string
		closedAt time.Time
	}{
		{"UTC", time.Date(2026, 7, 1, 17, 30, 0, 250000000, time.UTC)},
		{"another zone", time.Date(2026, 7, 1, 18, 30, 0, 250000000, bst)},
		{"nanoseconds", time.Date(2026, 7, 1, 17, 30, 0, 250000001, time.UTC)},
		{"another zone and nanoseconds", time.Date(2026, 7, 1, 18, 30, 0, 250000999, bst)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &domain.AccountClosed{AccountID: exAccount, ClosedAt: c.closedAt}
			ed, err := domain.Cause{Actor: domain.System, RecordedAt: exAt}.EventData(exEventID, e)
			if err != nil {
				require.ErrorIs(t, err, domain.ErrMalformedEvent)
				require.NotEqual(t, "UTC", c.name, "a time in the package's form is accepted")
				return
			}
			requireNormalized(t, ed.Meta.EffectiveAt)
			require.Equal(t, "accessledger", ed.Meta.ActorID)
			require.Equal(t, "system", ed.Meta.ActorRole)
			require.Empty(t, ed.Meta.Reason)
			require.Equal(t, uuid.Nil, ed.Meta.CorrelationID)

			got, err := domain.Decode(ed.Type, ed.Data)
			require.NoError(t, err)
			require.True(t, got.EffectiveAt().Equal(ed.Meta.EffectiveAt),
				"payload %s, metadata %s", got.EffectiveAt(), ed.Meta.EffectiveAt)
			require.True(t, c.closedAt.Truncate(time.Microsecond).Equal(ed.Meta.EffectiveAt))
		})
	}
}

func TestCodec_CauseEventDataRefuses(t *testing.T) {
	good := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, RecordedAt: exAt}
	valid := codecExamples()[domain.TypeAccountClosed].event
	cases := []struct {
		name   string
		cause  domain.Cause
		id     uuid.UUID
		event  domain.Event
		target error
	}{
		{"nil event id", good, uuid.Nil, valid, domain.ErrInvalid},
		{"no actor", domain.Cause{RecordedAt: exAt}, exEventID, valid, domain.ErrInvalid},
		{"actor without id", domain.Cause{Actor: domain.Actor{Role: domain.RoleWorker}, RecordedAt: exAt}, exEventID, valid, domain.ErrInvalid},
		{"actor with blank id", domain.Cause{Actor: domain.Actor{ID: "  ", Role: domain.RoleWorker}, RecordedAt: exAt}, exEventID, valid, domain.ErrInvalid},
		{"actor without role", domain.Cause{Actor: domain.Actor{ID: "x"}, RecordedAt: exAt}, exEventID, valid, domain.ErrInvalid},
		{"unknown role", domain.Cause{Actor: domain.Actor{ID: "x", Role: "admin"}, RecordedAt: exAt}, exEventID, valid, domain.ErrInvalid},
		{"no recorded time", domain.Cause{Actor: good.Actor}, exEventID, valid, domain.ErrInvalid},
		{"nil event", good, exEventID, nil, domain.ErrMalformedEvent},
		{"invalid event", good, exEventID, &domain.AccountClosed{ClosedAt: exAt}, domain.ErrMalformedEvent},
		{"unknown event", good, exEventID, strangerEvent{}, domain.ErrUnknownEventType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ed, err := c.cause.EventData(c.id, c.event)
			require.ErrorIs(t, err, c.target)
			require.Equal(t, eventlog.EventData{}, ed)
		})
	}
}

func TestCodec_DecodeRecordRefuses(t *testing.T) {
	valid := exPayload(t, domain.TypeAccountClosed)
	rec := eventlog.Record{ID: exEventID, Stream: "s", Version: 1, Position: eventlog.At(7), Type: domain.TypeAccountClosed, Data: valid}

	unknown := rec
	unknown.Type = "account.vanished.v1"
	_, err := domain.DecodeRecord(unknown)
	require.ErrorIs(t, err, domain.ErrUnknownEventType)
	require.Contains(t, err.Error(), exEventID.String(), "the error names the event")

	malformed := rec
	malformed.Data = []byte(`{"account_id":"` + exAccount.String() + `"}`)
	env, err := domain.DecodeRecord(malformed)
	require.ErrorIs(t, err, domain.ErrMalformedEvent)
	require.Contains(t, err.Error(), "7", "the error names the position")
	require.Equal(t, domain.Envelope{}, env)
}

// TestRule_R11_R12_EventSchemasHaveNoPasswordSecretOrPhoneField: the engine
// never receives or stores a password or secret (R12), and keeps only a
// masked phone number (R11): no event schema, nor the metadata, has a field
// for one. The only phone field is the masked phone_hint.
func TestRule_R11_R12_EventSchemasHaveNoPasswordSecretOrPhoneField(t *testing.T) {
	for _, typ := range domain.EventTypes() {
		ex := codecExamples()[typ]
		require.NotNil(t, ex.event, "no example of %s", typ)
		require.Empty(t, secretFields(typ, reflect.TypeOf(ex.event).Elem()))
	}
	require.Empty(t, secretFields("eventlog.Meta", reflect.TypeOf(eventlog.Meta{})))
	require.Empty(t, secretFields("domain.Envelope", reflect.TypeOf(domain.Envelope{})))

	// The check itself finds such fields, by JSON name or Go name.
	type leaky struct {
		Password          string `json:"pwd"`
		PhoneNumber       string `json:"phone_number"`
		MobilePhone       string
		ClientSecretValue string `json:"client"`
		OTP               string `json:"otp"`
		Hint              string `json:"phone_hint"`
		Pinned            bool   `json:"pinned"`
	}
	require.Len(t, secretFields("leaky", reflect.TypeOf(leaky{})), 5)
}

// secretFields lists the fields of rt whose JSON or Go name says that they
// hold a password, a secret or a phone number (other than phone_hint).
func secretFields(owner string, rt reflect.Type) []string {
	substrings := []string{"password", "passwd", "secret", "phone"}
	words := []string{"pin", "otp", "pwd", "token"} // only as whole words: "pinned" is fine
	var out []string
	for i := 0; i < rt.NumField(); i++ {
		sf := rt.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if name == "phone_hint" {
			continue
		}
		names := []string{strings.ToLower(name), camelToSnake(sf.Name)}
		hit := false
		for _, n := range names {
			for _, s := range substrings {
				hit = hit || strings.Contains(n, s)
			}
			for _, w := range words {
				hit = hit || containsWord(n, w)
			}
		}
		if hit {
			out = append(out, owner+"."+sf.Name+" (json "+name+")")
		}
	}
	return out
}

func containsWord(snake, word string) bool {
	for _, part := range strings.Split(snake, "_") {
		if part == word {
			return true
		}
	}
	return false
}

func camelToSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
