package bus_test

import (
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/bus"
	"github.com/accessledger/accessledger/adapters/bus/bustest"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Every event of every type survives EncodeEvent → DecodeRecord/DecodeEvent
// unchanged, with the event id as UUID and the documented metadata.
func TestEventRoundTrip(t *testing.T) {
	recs := bustest.History(t, 80)
	types := map[string]bool{}
	for _, rec := range recs {
		msg, err := bus.EncodeEvent(rec)
		require.NoError(t, err)
		types[rec.Type] = true

		require.Equal(t, rec.ID.String(), msg.UUID)
		require.Equal(t, message.Metadata{
			bus.MetaName:          rec.Type,
			bus.MetaEventType:     rec.Type,
			bus.MetaStream:        rec.Stream,
			bus.MetaPosition:      rec.Position.String(),
			bus.MetaCorrelationID: rec.Meta.CorrelationID.String(),
			bus.MetaCausationID:   rec.Meta.CausationID.String(),
		}, msg.Metadata)

		got, err := bus.DecodeRecord(msg)
		require.NoError(t, err)
		require.Equal(t, rec, got)

		env, err := bus.DecodeEvent(msg)
		require.NoError(t, err)
		want, err := domain.DecodeRecord(rec)
		require.NoError(t, err)
		require.Equal(t, want, env)
	}
	require.Len(t, types, len(domain.EventTypes()), "the history holds every event type")
}

// The payload is the documented JSON object: these keys, times in RFC 3339
// UTC, the position as a token, the event's data as stored.
func TestEventPayloadFormat(t *testing.T) {
	rec := bustest.History(t, 1)[0]
	rec.Meta.RecordedAt = time.Date(2026, 3, 2, 9, 0, 0, 123456000, time.FixedZone("CET", 3600))
	rec.Meta.Reason = "<b>why</b> & how"
	msg, err := bus.EncodeEvent(rec)
	require.NoError(t, err)

	var payload map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(msg.Payload, &payload))
	keys := make([]string, 0, len(payload))
	for k := range payload {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	require.Equal(t, []string{"actor_id", "actor_role", "causation_id", "correlation_id", "data", "effective_at",
		"event_id", "position", "reason", "recorded_at", "stream", "stream_version", "type"}, keys)
	require.JSONEq(t, `"2026-03-02T08:00:00.123456Z"`, string(payload["recorded_at"]))
	require.JSONEq(t, `"`+rec.Position.String()+`"`, string(payload["position"]))
	require.Equal(t, string(rec.Data), string(payload["data"]), "data travels as stored")
	require.Contains(t, string(msg.Payload), `"reason":"<b>why</b> & how"`, "no HTML escaping")
}

func TestDecodeRefusesWhatIsNotTheWireFormat(t *testing.T) {
	rec := bustest.History(t, 1)[0]
	good, err := bus.EncodeEvent(rec)
	require.NoError(t, err)
	edit := func(f func(map[string]any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(good.Payload, &m))
		f(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name    string
		uuid    string
		payload []byte
	}{
		{"empty", good.UUID, nil},
		{"not json", good.UUID, []byte("{")},
		{"array", good.UUID, []byte("[]")},
		{"trailing data", good.UUID, append(append([]byte{}, good.Payload...), []byte(" {}")...)},
		{"uuid is not the event id", uuid.NewString(), good.Payload},
		{"no event id", good.UUID, edit(func(m map[string]any) { delete(m, "event_id") })},
		{"no type", good.UUID, edit(func(m map[string]any) { m["type"] = "" })},
		{"type with a newline", good.UUID, edit(func(m map[string]any) { m["type"] = "a\nb" })},
		{"no stream", good.UUID, edit(func(m map[string]any) { delete(m, "stream") })},
		{"no stream version", good.UUID, edit(func(m map[string]any) { m["stream_version"] = 0 })},
		{"bad position", good.UUID, edit(func(m map[string]any) { m["position"] = "01" })},
		{"start position", good.UUID, edit(func(m map[string]any) { m["position"] = "" })},
		{"data not an object", good.UUID, edit(func(m map[string]any) { m["data"] = []int{1} })},
		{"no data", good.UUID, edit(func(m map[string]any) { delete(m, "data") })},
		{"bad time", good.UUID, edit(func(m map[string]any) { m["recorded_at"] = "yesterday" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bus.DecodeRecord(message.NewMessage(tc.uuid, tc.payload))
			require.ErrorIs(t, err, bus.ErrMalformedMessage)
			_, err = bus.DecodeEvent(message.NewMessage(tc.uuid, tc.payload))
			require.ErrorIs(t, err, bus.ErrMalformedMessage)
		})
	}

	t.Run("unknown field is ignored", func(t *testing.T) {
		got, err := bus.DecodeRecord(message.NewMessage(good.UUID, edit(func(m map[string]any) { m["new_field"] = 1 })))
		require.NoError(t, err)
		require.JSONEq(t, string(rec.Data), string(got.Data)) // re-marshaled by the edit
		got.Data = rec.Data
		require.Equal(t, rec, got)
	})
	t.Run("unknown event type decodes as a record only", func(t *testing.T) {
		msg := message.NewMessage(good.UUID, edit(func(m map[string]any) { m["type"] = "future.thing.v9" }))
		got, err := bus.DecodeRecord(msg)
		require.NoError(t, err)
		require.Equal(t, "future.thing.v9", got.Type)
		_, err = bus.DecodeEvent(msg)
		require.ErrorIs(t, err, domain.ErrUnknownEventType)
	})
	t.Run("malformed event data", func(t *testing.T) {
		msg := message.NewMessage(good.UUID, edit(func(m map[string]any) { m["data"] = map[string]any{"x": 1} }))
		_, err := bus.DecodeEvent(msg)
		require.ErrorIs(t, err, domain.ErrMalformedEvent)
	})
}

func TestEncodeEventRefusesBrokenRecords(t *testing.T) {
	rec := bustest.History(t, 1)[0]
	for name, f := range map[string]func(*eventlog.Record){
		"no id":              func(r *eventlog.Record) { r.ID = uuid.Nil },
		"no type":            func(r *eventlog.Record) { r.Type = "" },
		"stream with a CRLF": func(r *eventlog.Record) { r.Stream = "child-1\r\nX-Evil: 1" },
		"data not JSON":      func(r *eventlog.Record) { r.Data = []byte("{") },
		"data not an object": func(r *eventlog.Record) { r.Data = []byte(`"x"`) },
		"no data":            func(r *eventlog.Record) { r.Data = nil },
	} {
		t.Run(name, func(t *testing.T) {
			r := rec
			f(&r)
			_, err := bus.EncodeEvent(r)
			require.ErrorIs(t, err, bus.ErrMalformedMessage)
		})
	}
	t.Run("unknown type is published", func(t *testing.T) {
		r := rec
		r.Type = "future.thing.v9"
		msg, err := bus.EncodeEvent(r)
		require.NoError(t, err)
		require.Equal(t, "future.thing.v9", msg.Metadata.Get(bus.MetaName))
	})
}

// FuzzDecodeEvent: DecodeEvent never panics, fails only with the documented
// errors, and what it accepts survives the way back: EncodeEvent accepts
// the decoded record, with the same UUID, and decoding that gives the same
// envelope again.
func FuzzDecodeEvent(f *testing.F) {
	for _, rec := range bustest.History(f, 40) {
		msg, err := bus.EncodeEvent(rec)
		require.NoError(f, err)
		f.Add(msg.UUID, []byte(msg.Payload))
	}
	id := uuid.NewString()
	for _, p := range []string{"", "null", "{}", "[]", `{"event_id":"` + id + `"}`,
		`{"event_id":"` + id + `","type":"x","stream":"s","stream_version":1,"position":"1.2","data":{}}`,
		`{"event_id":"` + id + `","type":"account.closed.v1","stream":"s","stream_version":1,"position":"1","recorded_at":"2026-03-02T09:00:00+01:00","data":{"account_id":"` + id + `","closed_at":"2026-03-02T09:00:00+01:00"}}`,
	} {
		f.Add(id, []byte(p))
	}
	f.Fuzz(func(t *testing.T, id string, payload []byte) {
		msg := message.NewMessage(id, payload)
		env, err := bus.DecodeEvent(msg)
		if err != nil {
			require.True(t, errors.Is(err, bus.ErrMalformedMessage) || errors.Is(err, domain.ErrUnknownEventType) ||
				errors.Is(err, domain.ErrMalformedEvent), "%v", err)
			return
		}
		require.Equal(t, env.EventID.String(), id)
		rec, err := bus.DecodeRecord(msg)
		require.NoError(t, err)
		again, err := bus.EncodeEvent(rec)
		require.NoError(t, err)
		require.Equal(t, id, again.UUID)
		env2, err := bus.DecodeEvent(again)
		require.NoError(t, err)
		require.Equal(t, env, env2)
		require.False(t, strings.ContainsAny(again.Metadata.Get(bus.MetaStream), "\r\n"))
	})
}
