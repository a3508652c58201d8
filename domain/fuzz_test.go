package domain_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// FuzzDecode: Decode never panics, and what it accepts survives the way back
// unchanged: Encode accepts it, and decoding that encoding gives the same
// event and the same bytes again. Its metadata, as Cause.EventData builds it,
// agrees with the payload on the effective time (R14) and can be stored.
//
// The seeds (every example event, and some rubbish) run in plain go test.
func FuzzDecode(f *testing.F) {
	for _, typ := range domain.EventTypes() {
		f.Add(typ, exPayload(f, typ))
	}
	valid := exPayload(f, domain.TypeAccountClosed)
	for _, seed := range []struct {
		typ  string
		data string
	}{
		{"", ""},
		{"nope.v1", string(valid)},
		{domain.TypeAccountClosed, ""},
		{domain.TypeAccountClosed, "null"},
		{domain.TypeAccountClosed, "[]"},
		{domain.TypeAccountClosed, "{}"},
		{domain.TypeAccountClosed, "{"},
		{domain.TypeAccountClosed, string(valid) + " {}"},
		{domain.TypeAccountClosed, `{"account_id":"` + exAccount.String() + `","closed_at":"2026-03-02T09:00:00+01:00"}`},
		{domain.TypeAccountClosed, `{"account_id":"` + exAccount.String() + `","closed_at":1}`},
		{domain.TypeAccountClosed, `{"account_id":{},"closed_at":"2026-03-02T09:00:00Z"}`},
		{domain.TypeAccountClosed, `{"account_id":"` + exAccount.String() + `","closed_at":"2026-03-02T09:00:00Z","x":1}`},
		{domain.TypeAccountInvited, `{"account_id":"` + exAccount.String() + `","email":"a@b.c","kind":"parent","invited_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T09:00:00.000001Z"}`},
		{domain.TypePhoneEnrolled, `{"account_id":"` + exAccount.String() + `","phone_hint":"+447700900123","enrolled_at":"2026-03-02T09:00:00Z"}`},
		{domain.TypeAccessGranted, `{"child_id":"` + exChild.String() + `","account_id":"` + exOther.String() + `","relationship":"parent","permissions":["view","complete_outstanding"],"granted_at":"2026-03-02T09:00:00Z"}`},
		{domain.TypeChildRegistered, "{\"child_id\":\"" + exChild.String() + "\",\"reference\":\"\xff\xfe\",\"registered_at\":\"2026-03-02T09:00:00Z\"}"},
	} {
		f.Add(seed.typ, []byte(seed.data))
	}

	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := domain.Decode(typ, data)
		if err != nil {
			require.Nil(t, e)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
			require.True(t, errorIsOneOf(err, domain.ErrUnknownEventType, domain.ErrMalformedEvent), "%v", err)
			return
		}
		require.NotNil(t, e)
		require.Equal(t, typ, e.EventType())
		require.False(t, e.EffectiveAt().IsZero())

		b, err := domain.Encode(e)
		require.NoError(t, err, "Encode refuses what Decode accepted")
		again, err := domain.Decode(typ, b)
		require.NoError(t, err, "Decode refuses what Encode wrote: %s", b)
		require.Equal(t, e, again, "re-encoding changed the event: %s", b)
		b2, err := domain.Encode(again)
		require.NoError(t, err)
		require.Equal(t, string(b), string(b2), "re-encoding is not stable")

		ed, err := domain.Cause{Actor: domain.System, RecordedAt: exAt}.EventData(exEventID, e)
		require.NoError(t, err)
		require.True(t, ed.Meta.EffectiveAt.Equal(e.EffectiveAt()),
			"metadata effective time %s, payload %s", ed.Meta.EffectiveAt, e.EffectiveAt())
		_, err = json.Marshal(ed.Meta)
		require.NoError(t, err, "the metadata cannot be stored")
	})
}

func errorIsOneOf(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
