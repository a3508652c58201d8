package eventlog_test

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain/eventlog"
)

const maxU = uint64(math.MaxUint64)

func TestPosition_Compare(t *testing.T) {
	cases := []struct {
		a, b eventlog.Position
		want int
	}{
		{eventlog.Start, eventlog.Start, 0},
		{eventlog.Start, eventlog.At(0), 0},
		{eventlog.Start, eventlog.At(1), -1},
		{eventlog.At(1), eventlog.At(2), -1},
		{eventlog.At(7), eventlog.At(7), 0},
		{eventlog.Position{Commit: 1, Prepare: 2}, eventlog.Position{Commit: 1, Prepare: 3}, -1},
		{eventlog.Position{Commit: 1, Prepare: 9}, eventlog.Position{Commit: 2, Prepare: 0}, -1}, // commit first
		{eventlog.Position{Commit: 2, Prepare: 0}, eventlog.Position{Commit: 1, Prepare: maxU}, 1},
		{eventlog.Position{Commit: 5, Prepare: 5}, eventlog.Position{Commit: 5, Prepare: 4}, 1},
		{eventlog.Position{Commit: maxU, Prepare: maxU}, eventlog.At(maxU), 0},
		{eventlog.At(maxU - 1), eventlog.At(maxU), -1},
		{eventlog.Start, eventlog.Position{Commit: 0, Prepare: 1}, -1},
	}
	for _, c := range cases {
		t.Run(c.a.String()+"_vs_"+c.b.String(), func(t *testing.T) {
			require.Equal(t, c.want, c.a.Compare(c.b))
			require.Equal(t, -c.want, c.b.Compare(c.a), "Compare is antisymmetric")
			require.Equal(t, c.want < 0, c.a.Before(c.b))
			require.Equal(t, c.want > 0, c.b.Before(c.a))
			require.Equal(t, c.want == 0, c.a == c.b, "equal positions are the same value")
		})
	}
}

func TestPosition_StartAndAt(t *testing.T) {
	require.True(t, eventlog.Start.IsZero())
	require.True(t, eventlog.Position{}.IsZero())
	require.True(t, eventlog.At(0).IsZero())
	require.False(t, eventlog.At(1).IsZero())
	require.False(t, eventlog.Position{Prepare: 1}.IsZero())
	require.Equal(t, eventlog.Position{Commit: 42, Prepare: 42}, eventlog.At(42))
	require.True(t, eventlog.Start.Before(eventlog.At(1)))
	require.False(t, eventlog.Start.Before(eventlog.Start))
}

func TestPosition_StringAndParse(t *testing.T) {
	cases := []struct {
		pos   eventlog.Position
		token string
	}{
		{eventlog.Start, "0"},
		{eventlog.At(1), "1"},
		{eventlog.At(42), "42"},
		{eventlog.At(maxU), "18446744073709551615"},
		{eventlog.Position{Commit: 5, Prepare: 3}, "5.3"},
		{eventlog.Position{Commit: 3, Prepare: 5}, "3.5"},
		{eventlog.Position{Commit: 0, Prepare: 1}, "0.1"},
		{eventlog.Position{Commit: 1, Prepare: 0}, "1.0"},
		{eventlog.Position{Commit: maxU, Prepare: 0}, "18446744073709551615.0"},
		{eventlog.Position{Commit: 10, Prepare: maxU}, "10.18446744073709551615"},
	}
	for _, c := range cases {
		t.Run(c.token, func(t *testing.T) {
			require.Equal(t, c.token, c.pos.String())
			got, err := eventlog.ParsePosition(c.token)
			require.NoError(t, err)
			require.Equal(t, c.pos, got)
			require.Equal(t, c.token, got.String())
		})
	}
}

func TestParsePosition_EmptyIsStart(t *testing.T) {
	// Documented: "The empty string is Start." (a reader with no token
	// reads from the beginning).
	got, err := eventlog.ParsePosition("")
	require.NoError(t, err)
	require.Equal(t, eventlog.Start, got)
}

func TestParsePosition_Refuses(t *testing.T) {
	cases := []struct {
		name  string
		token string
	}{
		{"leading zero", "01"},
		{"zeros", "00"},
		{"leading zero in prepare", "1.01"},
		{"leading zero in commit", "01.1"},
		{"zeros in prepare", "0.00"},
		{"plus sign", "+1"},
		{"minus sign", "-1"},
		{"minus zero", "-0"},
		{"signed prepare", "1.-2"},
		{"plus prepare", "1.+2"},
		{"leading space", " 1"},
		{"trailing space", "1 "},
		{"space in the middle", "1 2"},
		{"space before the dot", "1 .2"},
		{"space after the dot", "1. 2"},
		{"only a space", " "},
		{"tab", "\t1"},
		{"newline", "1\n"},
		{"overflow", "18446744073709551616"},
		{"overflow by a lot", "99999999999999999999"},
		{"21 digits", "100000000000000000000"},
		{"overflow in prepare", "1.18446744073709551616"},
		{"three parts", "1.2.3"},
		{"two dots", "1..2"},
		{"only a dot", "."},
		{"no prepare", "1."},
		{"no commit", ".1"},
		{"letters", "abc"},
		{"hex", "0x10"},
		{"exponent", "1e3"},
		{"underscore", "1_000"},
		{"comma", "1,2"},
		{"fullwidth digit", "１"},
		{"arabic-indic digit", "٣"},
		{"NUL", "1\x00"},
		{"invalid UTF-8", "1\xff"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := eventlog.ParsePosition(c.token)
			require.ErrorIs(t, err, eventlog.ErrInvalidPosition, "%q", c.token)
			require.Equal(t, eventlog.Start, got)
		})
	}
}

// FuzzParsePosition: ParsePosition never panics; a position it parses
// prints as a token that parses to the same position, and that token is
// canonical (it prints as itself).
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"", "0", "1", "5.3", "0.1", "18446744073709551615", "18446744073709551616",
		"01", "-1", "+1", " 1", "1.2.3", "1.", ".1", "0.0", "7.7", "١"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := eventlog.ParsePosition(s)
		if err != nil {
			require.ErrorIs(t, err, eventlog.ErrInvalidPosition)
			require.Equal(t, eventlog.Start, p)
			return
		}
		token := p.String()
		q, err := eventlog.ParsePosition(token)
		require.NoError(t, err, "String wrote %q, which does not parse", token)
		require.Equal(t, p, q)
		require.Equal(t, token, q.String())
		require.Zero(t, p.Compare(q))
		// Whatever parsed is digits and at most one dot.
		for _, r := range s {
			require.True(t, r == '.' || (r >= '0' && r <= '9'), "%q parsed", s)
		}
	})
}

// FuzzPositionRoundTrip: every position prints as a token that parses back to
// it, and Compare agrees with the numbers.
func FuzzPositionRoundTrip(f *testing.F) {
	f.Add(uint64(0), uint64(0))
	f.Add(uint64(5), uint64(3))
	f.Add(maxU, maxU)
	f.Add(maxU, uint64(0))
	f.Fuzz(func(t *testing.T, commit, prepare uint64) {
		p := eventlog.Position{Commit: commit, Prepare: prepare}
		got, err := eventlog.ParsePosition(p.String())
		require.NoError(t, err)
		require.Equal(t, p, got)
		next := eventlog.Position{Commit: commit, Prepare: prepare + 1}
		if prepare < maxU {
			require.True(t, p.Before(next))
		}
		if commit == prepare {
			require.Equal(t, strconv.FormatUint(commit, 10), p.String())
		}
	})
}

func TestExpectedVersion_Allows(t *testing.T) {
	cases := []struct {
		name     string
		expected eventlog.ExpectedVersion
		allowed  []uint64
		refused  []uint64
	}{
		{"Any", eventlog.Any, []uint64{0, 1, 2, 100, maxU}, nil},
		{"zero value is Any", eventlog.ExpectedVersion{}, []uint64{0, 1, maxU}, nil},
		{"NoStream", eventlog.NoStream, []uint64{0}, []uint64{1, 2, maxU}},
		{"Exactly(0) is NoStream", eventlog.Exactly(0), []uint64{0}, []uint64{1, maxU}},
		{"Exactly(1)", eventlog.Exactly(1), []uint64{1}, []uint64{0, 2, maxU}},
		{"Exactly(3)", eventlog.Exactly(3), []uint64{3}, []uint64{0, 1, 2, 4}},
		{"Exactly(max)", eventlog.Exactly(maxU), []uint64{maxU}, []uint64{0, 1, maxU - 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range c.allowed {
				require.True(t, c.expected.Allows(v), "%s allows %d", c.expected, v)
			}
			for _, v := range c.refused {
				require.False(t, c.expected.Allows(v), "%s refuses %d", c.expected, v)
			}
		})
	}
}

func TestExpectedVersion_Accessors(t *testing.T) {
	require.Equal(t, eventlog.Any, eventlog.ExpectedVersion{})
	require.True(t, eventlog.Any.IsAny())
	require.False(t, eventlog.Any.IsNoStream())
	v, ok := eventlog.Any.Version()
	require.False(t, ok)
	require.Zero(t, v)
	require.Equal(t, "any version", eventlog.Any.String())

	require.True(t, eventlog.NoStream.IsNoStream())
	require.False(t, eventlog.NoStream.IsAny())
	_, ok = eventlog.NoStream.Version()
	require.False(t, ok)
	require.Equal(t, "no stream", eventlog.NoStream.String())

	require.Equal(t, eventlog.NoStream, eventlog.Exactly(0))
	e := eventlog.Exactly(7)
	require.False(t, e.IsAny())
	require.False(t, e.IsNoStream())
	v, ok = e.Version()
	require.True(t, ok)
	require.Equal(t, uint64(7), v)
	require.Equal(t, "version 7", e.String())
}

func TestConflictError(t *testing.T) {
	var err error = &eventlog.ConflictError{Stream: "child-1", Expected: eventlog.Exactly(3), Actual: 5}
	require.ErrorIs(t, err, eventlog.ErrConflict)
	require.NotErrorIs(t, err, eventlog.ErrInvalidAppend)
	wrapped := errors.Join(errors.New("append"), err)
	require.ErrorIs(t, wrapped, eventlog.ErrConflict)
	var ce *eventlog.ConflictError
	require.True(t, errors.As(wrapped, &ce))
	require.Equal(t, uint64(5), ce.Actual)
	require.Contains(t, err.Error(), `"child-1"`)
	require.Contains(t, err.Error(), "version 3")
	require.Contains(t, err.Error(), "5")
}

func TestValidate(t *testing.T) {
	id1 := uuid.MustParse("d0000000-0000-4000-8000-000000000001")
	id2 := uuid.MustParse("d0000000-0000-4000-8000-000000000002")
	ev := func(id uuid.UUID, typ, data string) eventlog.EventData {
		return eventlog.EventData{ID: id, Type: typ, Data: []byte(data)}
	}
	good := ev(id1, "thing.happened.v1", `{"a":1}`)
	cases := []struct {
		name   string
		stream string
		events []eventlog.EventData
		ok     bool
	}{
		{"one event", "child-1", []eventlog.EventData{good}, true},
		{"two events", "child-1", []eventlog.EventData{good, ev(id2, "t.v1", `{}`)}, true},
		{"empty object", "s", []eventlog.EventData{ev(id1, "t.v1", `{}`)}, true},
		{"whitespace around the object", "s", []eventlog.EventData{ev(id1, "t.v1", " \t\r\n{} \n")}, true},
		{"nested object", "s", []eventlog.EventData{ev(id1, "t.v1", `{"a":{"b":[1,2,{"c":null}]}}`)}, true},
		{"stream of 200 bytes", strings.Repeat("s", 200), []eventlog.EventData{good}, true},

		{"empty stream name", "", []eventlog.EventData{good}, false},
		{"blank stream name", " \t\n", []eventlog.EventData{good}, false},
		{"stream of 201 bytes", strings.Repeat("s", 201), []eventlog.EventData{good}, false},
		{"no events (nil)", "s", nil, false},
		{"no events (empty)", "s", []eventlog.EventData{}, false},
		{"event without id", "s", []eventlog.EventData{ev(uuid.Nil, "t.v1", `{}`)}, false},
		{"second event without id", "s", []eventlog.EventData{good, ev(uuid.Nil, "t.v1", `{}`)}, false},
		{"id twice", "s", []eventlog.EventData{good, ev(id1, "t.v1", `{}`)}, false},
		{"event without type", "s", []eventlog.EventData{ev(id1, "", `{}`)}, false},
		{"blank type", "s", []eventlog.EventData{ev(id1, "  ", `{}`)}, false},
		{"nil data", "s", []eventlog.EventData{{ID: id1, Type: "t.v1"}}, false},
		{"empty data", "s", []eventlog.EventData{ev(id1, "t.v1", "")}, false},
		{"whitespace data", "s", []eventlog.EventData{ev(id1, "t.v1", "  \n")}, false},
		{"null", "s", []eventlog.EventData{ev(id1, "t.v1", "null")}, false},
		{"array", "s", []eventlog.EventData{ev(id1, "t.v1", "[]")}, false},
		{"array of an object", "s", []eventlog.EventData{ev(id1, "t.v1", "[{}]")}, false},
		{"string", "s", []eventlog.EventData{ev(id1, "t.v1", `"{}"`)}, false},
		{"number", "s", []eventlog.EventData{ev(id1, "t.v1", "1")}, false},
		{"true", "s", []eventlog.EventData{ev(id1, "t.v1", "true")}, false},
		{"unclosed object", "s", []eventlog.EventData{ev(id1, "t.v1", `{"a":1`)}, false},
		{"two objects", "s", []eventlog.EventData{ev(id1, "t.v1", `{}{}`)}, false},
		{"object and garbage", "s", []eventlog.EventData{ev(id1, "t.v1", `{} x`)}, false},
		{"trailing comma", "s", []eventlog.EventData{ev(id1, "t.v1", `{"a":1,}`)}, false},
		{"single quotes", "s", []eventlog.EventData{ev(id1, "t.v1", `{'a':1}`)}, false},
		{"leading byte order mark", "s", []eventlog.EventData{ev(id1, "t.v1", "\ufeff{}")}, false},
		{"second event's data not an object", "s", []eventlog.EventData{good, ev(id2, "t.v1", "[]")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := eventlog.Validate(c.stream, c.events)
			if c.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, eventlog.ErrInvalidAppend)
			require.NotErrorIs(t, err, eventlog.ErrConflict)
		})
	}
}
