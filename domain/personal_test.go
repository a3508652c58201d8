package domain_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
)

// TestPersonalFieldsOfEveryEvent pins which payload fields are personal
// (R22): adapters/personaldata encrypts exactly these, and the reason.
func TestPersonalFieldsOfEveryEvent(t *testing.T) {
	want := map[string][]string{
		domain.TypeChildRegistered:  {"reference"},
		domain.TypeAccountInvited:   {"email"},
		domain.TypeAccountActivated: {"identity_subject"},
		domain.TypePhoneEnrolled:    {"phone_hint"},
		domain.TypeIdentityLinked:   {"subject"},

		domain.TypeEmailChangeRequested: {"email"},
		domain.TypeEmailChanged:         {"email"},
	}
	for _, typ := range domain.EventTypes() {
		require.Equal(t, want[typ], domain.PersonalFields(typ), typ)
	}
	require.Nil(t, domain.PersonalFields("no.such.event.v1"))
}

// TestErasedAndSealedFieldsDecodeButCannotBeWritten: an erased personal
// field, or one as stored (sealed), decodes (the event's ids and times
// still count), but no command can write either, in a payload or as a
// reason.
func TestErasedAndSealedFieldsDecodeButCannotBeWritten(t *testing.T) {
	for _, stand := range []string{domain.ErasedText, domain.SealedPrefix + "AAAA"} {
		for _, typ := range domain.EventTypes() {
			fields := domain.PersonalFields(typ)
			if len(fields) == 0 {
				continue
			}
			t.Run(typ+" "+stand, func(t *testing.T) {
				payload := exMutated(t, typ, func(m map[string]any) {
					for _, f := range fields {
						m[f] = stand
					}
				})
				e, err := domain.Decode(typ, payload)
				require.NoError(t, err)
				_, err = domain.Encode(e)
				require.ErrorIs(t, err, domain.ErrMalformedEvent)
				require.ErrorContains(t, err, "cannot be written")
			})
		}
		cause := domain.Cause{Actor: domain.Actor{ID: "worker-ann", Role: domain.RoleWorker}, Reason: stand, RecordedAt: time.Now()}
		_, err := cause.EventData(uuid.New(), codecExamples()[domain.TypeAccessRevoked].event)
		require.ErrorContains(t, err, "cannot be written", stand)
	}
}
