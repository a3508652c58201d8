package console

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/api"
)

func TestBuildTimeline(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
	ptr := func(t time.Time) *time.Time { return &t }
	a, b := uuid.MustParse("aaaaaaaa-0000-0000-0000-000000000001"), uuid.MustParse("bbbbbbbb-0000-0000-0000-000000000002")
	reason := "moved"
	ivs := []api.Interval{
		{AccountID: b, Reason: "grant", From: day(100), Permissions: api.Permissions{"view"},
			OpenedByEvent: &api.EventRef{Type: "grant.made.v1", Actor: "worker-ann", ActorRole: "worker"}},
		{AccountID: a, Reason: "placement", From: day(0), To: ptr(day(50)), Permissions: api.Permissions{"view", "record"},
			OpenedByEvent: &api.EventRef{Type: "placement.started.v1", Actor: "worker-ann", ActorRole: "worker"},
			ClosedByEvent: &api.EventRef{Type: "placement.ended.v1", Actor: "worker-bob", ActorRole: "worker", Reason: &reason}},
		{AccountID: a, Reason: "grace_period", From: day(50), To: ptr(day(57)), Permissions: api.Permissions{"view"}},
	}
	views := []api.ViewEntry{{AccountID: a, ViewedAt: day(10), Allowed: true, Permission: "view", Reason: "placement"}}
	alerts := []api.Alert{{AccountID: uuid.MustParse("cccccccc-0000-0000-0000-000000000003"), At: day(60), Kind: "view_without_access"}}
	now := day(365)
	tests := []struct {
		name     string
		at       time.Time
		contains []bool
	}{
		{"no as at", time.Time{}, []bool{false, false, false}},
		{"in the placement", day(20), []bool{false, true, false}},
		{"at the placement's end: the grace period, not the placement", day(50), []bool{false, false, true}},
		{"in the grant", day(200), []bool{true, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl, rows := buildTimeline(ivs, views, alerts, tt.at, now)
			require.False(t, tl.Empty)
			// Lanes in the order accounts first could see the record; the
			// alert's account gets a lane of its own.
			require.Len(t, tl.Lanes, 3)
			require.Equal(t, a, tl.Lanes[0].AccountID)
			require.Equal(t, b, tl.Lanes[1].AccountID)
			require.Len(t, tl.Lanes[0].Bars, 2)
			require.Len(t, tl.Lanes[0].Marks, 1)
			require.True(t, tl.Lanes[2].Marks[0].Alert)
			// Bars sit inside the plot, in time order, and name what made them.
			p, g := tl.Lanes[0].Bars[0], tl.Lanes[0].Bars[1]
			require.GreaterOrEqual(t, p.X, float64(tl.PlotLeft))
			require.LessOrEqual(t, g.X+g.W, float64(tl.PlotRight)+0.01)
			require.InDelta(t, p.X+p.W, g.X, 0.01)
			require.Contains(t, p.Title, "placement.ended.v1 by worker-bob (worker): “moved”")
			require.Equal(t, "#interval-2", p.Href)
			for i, want := range tt.contains {
				require.Equal(t, want, rows[i].Contains, "row %d", i)
			}
			require.Equal(t, !tt.at.IsZero(), tl.At != nil)
			require.NotEmpty(t, tl.Ticks)
		})
	}
	empty, rows := buildTimeline(nil, nil, nil, time.Time{}, now)
	require.True(t, empty.Empty)
	require.Empty(t, rows)
}

func TestTicks(t *testing.T) {
	x := func(time.Time) float64 { return 0 }
	from := time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		to       time.Time
		min, max int
		first    string
	}{
		{from.AddDate(5, 0, 0), 3, 14, "2021"},
		{from.AddDate(0, 6, 0), 3, 14, "Apr 2020"},
		{from.AddDate(0, 0, 10), 3, 14, "2 Mar"},
		{from.AddDate(60, 0, 0), 3, 14, "2021"},
	}
	for _, tt := range tests {
		ts := ticks(from, tt.to, x)
		require.GreaterOrEqual(t, len(ts), tt.min, tt.to)
		require.LessOrEqual(t, len(ts), tt.max, tt.to)
		require.Equal(t, tt.first, ts[0].Label)
	}
}

func TestParseWhen(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"2024-03-03T09:00", time.Date(2024, 3, 3, 9, 0, 0, 0, time.UTC), true},
		{"2024-03-03T09:00:30", time.Date(2024, 3, 3, 9, 0, 30, 0, time.UTC), true},
		{"2024-03-03", time.Date(2024, 3, 3, 0, 0, 0, 0, time.UTC), true},
		{"2024-03-03T09:00:00+01:00", time.Date(2024, 3, 3, 8, 0, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
		{"0001-01-01", time.Time{}, false},
		{"9999-01-01", time.Time{}, false},
		{"2024-13-01", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseWhen("at", tt.in)
		if !tt.ok {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.True(t, tt.want.Equal(got), "%s: %s", tt.in, got)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/children/x":  "/console/children/x",
		"/console":             "/console",
		"":                     "/console",
		"https://evil.example": "/console",
		"//evil.example":       "/console",
		"/console/../v1/audit": "/console",
		"/consoleevil":         "/console",
		"/console/a?b=c":       "/console",
		`/console\evil`:        "/console",
	} {
		require.Equal(t, want, safeNext(in), in)
	}
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"", "2024-03-03T09:00", "2024-03-03", "2024-03-03T09:00:00Z", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen("at", s)
		if err == nil && !got.IsZero() {
			require.True(t, got.Year() >= 1900 && got.Year() <= 9899)
			require.Equal(t, time.UTC, got.Location())
		}
	})
}
