package bus_test

import (
	"time"

	"encoding/json"
	"sort"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// changes feeds a real access index with a history and returns its change
// feed.
func changes(t *testing.T, n int) []accessindex.Change {
	t.Helper()
	ix := accessindex.New()
	require.NoError(t, ix.Apply(bustest.History(t, n)...))
	chs, _, _, err := ix.Changes(eventlog.Start)
	require.NoError(t, err)
	require.NotEmpty(t, chs)
	return chs
}

func TestAccessChangedRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	withUntil := 0
	for _, c := range changes(t, 200) {
		msg, err := bus.EncodeAccessChanged(c)
		require.NoError(t, err)
		require.Equal(t, bus.AccessChangedUUID(c.Position, c.Account, c.Child).String(), msg.UUID)
		require.False(t, seen[msg.UUID], "one UUID per (position, account, child)")
		seen[msg.UUID] = true
		require.Equal(t, message.Metadata{bus.MetaName: bus.MessageAccessChanged, bus.MetaPosition: c.Position.String(),
			bus.MetaAccountID: c.Account.String(), bus.MetaChildID: c.Child.String()}, msg.Metadata)

		again, err := bus.EncodeAccessChanged(c)
		require.NoError(t, err)
		require.Equal(t, msg.UUID, again.UUID, "deterministic")

		got, err := bus.DecodeAccessChanged(msg)
		require.NoError(t, err)
		want := c
		want.At = want.At.UTC()
		want.Access.ExpiresAt = time.Time{} // not in access.changed: the checks carry it (R19)
		if !want.Access.Until.IsZero() {
			want.Access.Until = want.Access.Until.UTC()
			withUntil++
		}
		require.Equal(t, want, got)
	}
	require.Positive(t, withUntil, "some changes carry an until")
}

// The payload has the fields of the watch stream's "access" event.
func TestAccessChangedPayloadFormat(t *testing.T) {
	for _, c := range changes(t, 40) {
		msg, err := bus.EncodeAccessChanged(c)
		require.NoError(t, err)
		var payload map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(msg.Payload, &payload))
		keys := make([]string, 0, len(payload))
		for k := range payload {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		require.Equal(t, []string{"account_id", "at", "child_id", "permissions", "position", "reason", "until"}, keys)
		require.NotEqual(t, "null", string(payload["permissions"]), "permissions is a list, maybe empty")
		if c.Access.Until.IsZero() {
			require.Equal(t, "null", string(payload["until"]))
		}
	}
}

func TestDecodeAccessChangedRefuses(t *testing.T) {
	c := changes(t, 10)[0]
	good, err := bus.EncodeAccessChanged(c)
	require.NoError(t, err)
	reset, err := bus.EncodeAccessReset(eventlog.At(3), eventlog.At(9))
	require.NoError(t, err)
	for name, msg := range map[string]*message.Message{
		"another name":    reset,
		"another uuid":    withMeta(message.NewMessage("x", good.Payload), good.Metadata),
		"not json":        withMeta(message.NewMessage(good.UUID, []byte("{")), good.Metadata),
		"bad permissions": withMeta(message.NewMessage(good.UUID, []byte(`{"account_id":"`+c.Account.String()+`","child_id":"`+c.Child.String()+`","permissions":["fly"],"reason":"x","until":null,"at":"2026-03-02T09:00:00Z","position":"`+c.Position.String()+`"}`)), good.Metadata),
		"no position":     withMeta(message.NewMessage(good.UUID, []byte(`{"account_id":"`+c.Account.String()+`","child_id":"`+c.Child.String()+`","permissions":[],"reason":"x","until":null,"at":"2026-03-02T09:00:00Z"}`)), good.Metadata),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := bus.DecodeAccessChanged(msg)
			require.ErrorIs(t, err, bus.ErrMalformedMessage)
		})
	}
}

func TestAccessReset(t *testing.T) {
	msg, err := bus.EncodeAccessReset(eventlog.At(3), eventlog.At(9))
	require.NoError(t, err)
	require.Equal(t, bus.MessageAccessReset, msg.Metadata.Get(bus.MetaName))
	require.Equal(t, "9", msg.Metadata.Get(bus.MetaPosition))
	var r bus.AccessReset
	require.NoError(t, json.Unmarshal(msg.Payload, &r))
	require.Equal(t, "3", r.After)
	require.Equal(t, "9", r.Resumed)
	again, err := bus.EncodeAccessReset(eventlog.At(3), eventlog.At(9))
	require.NoError(t, err)
	require.Equal(t, msg.UUID, again.UUID)
}

func withMeta(msg *message.Message, md message.Metadata) *message.Message {
	for k, v := range md {
		msg.Metadata.Set(k, v)
	}
	return msg
}
