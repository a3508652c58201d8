package console

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
)

// The timeline's geometry, in SVG user units.
const (
	tlLabelWidth = 180
	tlPlotWidth  = 780
	tlLaneHeight = 30
	tlBarHeight  = 14
	tlAxisHeight = 34
	tlWidth      = tlLabelWidth + tlPlotWidth + 20
)

// timeline is a child's access history drawn as one lane per account.
type timeline struct {
	Width, Height int
	PlotLeft      int
	PlotRight     int
	From, To      time.Time
	Lanes         []lane
	Ticks         []tick
	At            *marker // the "as at" time
	Now           *marker
	Empty         bool
}

type lane struct {
	AccountID uuid.UUID
	Label     string
	Y, BarY   int
	LabelY    int
	Bars      []bar
	Marks     []mark
}

type bar struct {
	X, W  float64
	Class string
	Title string
	Href  string // the row of the table that says the same
}

type mark struct {
	X     float64
	Y     int
	Class string
	Title string
	Alert bool
	// Points draws an alert's triangle.
	Points string
}

type tick struct {
	X     float64
	Label string
}

type marker struct {
	X     float64
	Label string
}

// intervalRow is one interval in the table beside the timeline: the
// timeline's text alternative.
type intervalRow struct {
	Anchor      string
	AccountID   uuid.UUID
	Reason      string
	Permissions string
	From        time.Time
	To          *time.Time
	Opened      *api.EventRef
	Closed      *api.EventRef
	GracePeriod string
	Contains    bool // contains the "as at" time
}

// reasonLabel names an interval's reason in words.
func reasonLabel(r string) string {
	switch r {
	case "placement":
		return "Placement"
	case "grace_period":
		return "Grace period"
	case "grant":
		return "Grant"
	case "own_record":
		return "Own record"
	}
	return r
}

func permissionsText(ps api.Permissions) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return strings.Join(out, ", ")
}

func refText(e *api.EventRef) string {
	if e == nil {
		return "—"
	}
	s := fmt.Sprintf("%s by %s (%s)", e.Type, e.Actor, e.ActorRole)
	if e.Reason != nil && *e.Reason != "" {
		s += ": “" + *e.Reason + "”"
	}
	return s
}

// buildTimeline lays out intervals, views and alerts between the earliest
// start and the latest end (or now), with the "as at" time marked when
// given.
func buildTimeline(ivs []api.Interval, views []api.ViewEntry, alerts []api.Alert, at, now time.Time) (timeline, []intervalRow) {
	t := timeline{Width: tlWidth, PlotLeft: tlLabelWidth, PlotRight: tlLabelWidth + tlPlotWidth}
	rows := make([]intervalRow, len(ivs))
	if len(ivs) == 0 && len(views) == 0 && len(alerts) == 0 {
		t.Empty = true
		t.Height = tlAxisHeight + tlLaneHeight
		return t, rows
	}
	from, to := now, now
	grow := func(x time.Time) {
		if x.Before(from) {
			from = x
		}
		if x.After(to) {
			to = x
		}
	}
	for _, iv := range ivs {
		grow(iv.From)
		if iv.To != nil && iv.To.Before(maxDrawn) {
			grow(*iv.To)
		}
	}
	for _, v := range views {
		grow(v.ViewedAt)
	}
	for _, a := range alerts {
		grow(a.At)
	}
	if !at.IsZero() {
		grow(at)
	}
	// A margin of 2% each side, and at least a day in all.
	span := to.Sub(from)
	if span < 24*time.Hour {
		span = 24 * time.Hour
	}
	from, to = from.Add(-span/50), to.Add(span/50)
	t.From, t.To = from, to
	x := func(v time.Time) float64 {
		if v.Before(from) {
			v = from
		}
		if v.After(to) {
			v = to
		}
		return float64(tlLabelWidth) + float64(tlPlotWidth)*float64(v.Sub(from))/float64(to.Sub(from))
	}

	laneOf := map[uuid.UUID]int{}
	addLane := func(id uuid.UUID) int {
		if i, ok := laneOf[id]; ok {
			return i
		}
		i := len(t.Lanes)
		laneOf[id] = i
		y := tlAxisHeight + i*tlLaneHeight
		t.Lanes = append(t.Lanes, lane{AccountID: id, Label: shortID(id), Y: y, BarY: y + (tlLaneHeight-tlBarHeight)/2,
			LabelY: y + tlLaneHeight/2 + 4})
		return i
	}
	// Lanes in the order the accounts first could see the record.
	order := make([]int, len(ivs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ivs[order[a]].From.Before(ivs[order[b]].From) })
	for _, i := range order {
		addLane(ivs[i].AccountID)
	}
	for i, iv := range ivs {
		anchor := fmt.Sprintf("interval-%d", i+1)
		end := to // an open-ended interval runs to the end of the plot
		endText := "open-ended"
		if iv.To != nil {
			end = *iv.To
			endText = fmtTime(*iv.To)
		}
		l := &t.Lanes[addLane(iv.AccountID)]
		x0, x1 := x(iv.From), x(end)
		if x1-x0 < 2 {
			x1 = x0 + 2
		}
		title := fmt.Sprintf("%s (%s), %s to %s. Opened by %s. Closed by %s.", reasonLabel(string(iv.Reason)),
			permissionsText(iv.Permissions), fmtTime(iv.From), endText, refText(iv.OpenedByEvent), refText(iv.ClosedByEvent))
		l.Bars = append(l.Bars, bar{X: x0, W: x1 - x0, Class: "bar-" + string(iv.Reason), Title: title, Href: "#" + anchor})
		row := intervalRow{Anchor: anchor, AccountID: iv.AccountID, Reason: reasonLabel(string(iv.Reason)),
			Permissions: permissionsText(iv.Permissions), From: iv.From, To: iv.To, Opened: iv.OpenedByEvent, Closed: iv.ClosedByEvent,
			Contains: !at.IsZero() && !at.Before(iv.From) && (iv.To == nil || at.Before(*iv.To))}
		if iv.GracePeriod != nil {
			row.GracePeriod = (time.Duration(*iv.GracePeriod) * time.Second).String()
		}
		rows[i] = row
	}
	for _, v := range views {
		l := &t.Lanes[addLane(v.AccountID)]
		outcome := "allowed (" + string(v.Reason) + ")"
		if !v.Allowed {
			outcome = "refused (" + string(v.Reason) + ")"
		}
		l.Marks = append(l.Marks, mark{X: x(v.ViewedAt), Y: l.Y + tlLaneHeight/2, Class: "view-" + map[bool]string{true: "allowed", false: "refused"}[v.Allowed],
			Title: fmt.Sprintf("Record view (%s) at %s: %s, reported by %s", v.Permission, fmtTime(v.ViewedAt), outcome, v.ReportedBy)})
	}
	for _, a := range alerts {
		l := &t.Lanes[addLane(a.AccountID)]
		cx, cy := x(a.At), l.Y+tlLaneHeight/2
		l.Marks = append(l.Marks, mark{X: cx, Y: cy, Class: "alert", Alert: true,
			Points: fmt.Sprintf("%.1f,%d %.1f,%d %.1f,%d", cx, cy-7, cx-6, cy+5, cx+6, cy+5),
			Title:  fmt.Sprintf("Alert (%s) at %s: %s", a.Kind, fmtTime(a.At), a.Detail)})
	}
	t.Height = tlAxisHeight + len(t.Lanes)*tlLaneHeight + 8
	t.Ticks = ticks(from, to, x)
	t.Now = &marker{X: x(now), Label: "now"}
	if !at.IsZero() {
		t.At = &marker{X: x(at), Label: "as at " + fmtTime(at)}
	}
	return t, rows
}

// maxDrawn bounds the ends drawn: an end far in the future (a grant's
// expiry) is drawn to it only when it is within a century.
var maxDrawn = time.Now().AddDate(100, 0, 0)

// ticks returns the axis' labelled ticks between from and to: years,
// months or days, whichever gives 3 to 14 of them.
func ticks(from, to time.Time, x func(time.Time) float64) []tick {
	from, to = from.UTC(), to.UTC()
	span := to.Sub(from)
	var out []tick
	switch {
	case span > 3*365*24*time.Hour:
		step := 1
		for int(span.Hours()/24/365)/step > 12 {
			step++
		}
		for y := from.Year() + 1; y <= to.Year(); y += step {
			v := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
			out = append(out, tick{X: x(v), Label: fmt.Sprint(y)})
		}
	case span > 60*24*time.Hour:
		step := 1
		for int(span.Hours()/24/30)/step > 12 {
			step++
		}
		for m := time.Date(from.Year(), from.Month()+1, 1, 0, 0, 0, 0, time.UTC); m.Before(to); m = m.AddDate(0, step, 0) {
			out = append(out, tick{X: x(m), Label: m.Format("Jan 2006")})
		}
	default:
		step := 1
		for int(span.Hours()/24)/step > 12 {
			step++
		}
		for d := time.Date(from.Year(), from.Month(), from.Day()+1, 0, 0, 0, 0, time.UTC); d.Before(to); d = d.AddDate(0, 0, step) {
			out = append(out, tick{X: x(d), Label: d.Format("2 Jan")})
		}
	}
	return out
}

// shortID is the first 8 hex digits of an id, for labels.
func shortID(id uuid.UUID) string { return id.String()[:8] }

// fmtTime formats a time for people: UTC, to the second.
func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
