package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/queries"
)

// watchWriteTimeout bounds each write of a watch stream: a client that
// stops reading is cut off.
const watchWriteTimeout = 30 * time.Second

// errTooOldForWatch answers a watch that starts before the change buffer.
func errTooOldForWatch(err error) error {
	return &httpError{status: http.StatusGone, code: codeConflict, err: err,
		detail: "the changes after this position are no longer kept: read the full lists (GET /v1/accounts/{account_id}/children, GET /v1/children/{child_id}/viewers), then watch after their position"}
}

// watch is GET /v1/watch: a text/event-stream of access changes from the
// index's change feed, after the position given by after= or, on a
// reconnect, by the Last-Event-ID header (after= wins); with neither, from
// the index's current position (new changes only).
//
// Each change is an event "access" whose data is a watchEvent. Several
// changes can share a position (closing an account changes all its
// pairs); only the last change of a position carries the SSE id, so a
// client that reconnects with Last-Event-ID never skips part of a
// position. An idle stream sends a comment line every WatchHeartbeat. A
// client too slow for the change buffer gets an event "reset" and the
// stream ends; so does every stream once the ledger has found the log
// tampered with. The stream ends when the client disconnects or the
// request's context ends.
//
// The same stream carries the alerts (R20): every WatchAlertPoll it reads
// the alerts raised since it started (on any replica: they are read from
// the read store), and sends each once as an event "alert" whose data is
// an api.Alert, without an SSE id (alerts have no position in the log; a
// reconnect does not replay them: GET /v1/alerts is their record).
func (s *server) watch(w http.ResponseWriter, r *http.Request, c call) error {
	feed, err := s.cfg.Queries.Watch(r.Context(), c.caller)
	if err != nil {
		return err
	}
	// The alerts raised from now on: taken before the stream answers, so
	// that an alert raised after the client sees the answer is sent.
	// Only a caller who may list the alerts (GET /v1/alerts) gets them.
	var alerts *alertFollower
	if queries.Allows(queries.QueryAlerts, c.actor.Role) {
		alerts = newAlertFollower(feed.Now())
	}
	var after eventlog.Position
	switch p, given, err := c.q.position("after"); {
	case err != nil:
		return err
	case given:
		after = p
	case r.Header.Get("Last-Event-ID") != "":
		if after, err = parsePosition("Last-Event-ID", r.Header.Get("Last-Event-ID")); err != nil {
			return err
		}
	default:
		after = feed.Position()
	}
	changes, pos, wait, err := feed.Changes(after)
	if errors.Is(err, queries.ErrTooOld) {
		return errTooOldForWatch(err)
	}
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()
	ctx := r.Context()
	log := logger(ctx, s.log)

	var buf bytes.Buffer
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if _, err := w.Write(buf.Bytes()); err != nil {
			log.DebugContext(ctx, "watch stream ended", "error", err)
			return false
		}
		buf.Reset()
		if err := rc.Flush(); err != nil {
			log.DebugContext(ctx, "watch stream ended", "error", err)
			return false
		}
		return true
	}
	fmt.Fprintf(&buf, "retry: 1000\n: watching after position %s\n\n", after)
	if !send() {
		return nil
	}
	heartbeat := time.NewTicker(s.cfg.WatchHeartbeat)
	defer heartbeat.Stop()
	alertTick := time.NewTicker(s.cfg.WatchAlertPoll)
	defer alertTick.Stop()
	for {
		if err := s.ledgerFault(); err != nil {
			// The ledger found the log tampered with while the stream ran:
			// no more decisions; a reconnect is answered 503 ledger_mismatch.
			data, _ := json.Marshal(api.WatchReset{Position: after.String(), Detail: problemFor(err).Detail})
			fmt.Fprintf(&buf, "event: reset\ndata: %s\n\n", data)
			send()
			return nil
		}
		for i, ch := range changes {
			writeChange(&buf, ch, i == len(changes)-1 || changes[i+1].Position != ch.Position)
		}
		if buf.Len() > 0 && !send() {
			return nil
		}
		if after.Before(pos) {
			after = pos
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.cfg.Stopping:
			fmt.Fprintf(&buf, "event: shutdown\ndata: {}\n\n")
			_ = send()
			return nil
		case <-alertTick.C:
			changes = nil
			if alerts == nil {
				continue
			}
			if err := alerts.poll(ctx, feed, &buf); err != nil {
				log.WarnContext(ctx, "watch stream: cannot read the alerts", "error", err)
			}
		case <-heartbeat.C:
			fmt.Fprintf(&buf, ": heartbeat %s\n\n", after)
			if !send() {
				return nil
			}
			changes = nil
		case <-wait:
			changes, pos, wait, err = feed.Changes(after)
			if err != nil {
				data, _ := json.Marshal(api.WatchReset{Position: after.String(),
					Detail: "the stream fell behind the change buffer: read the full lists again and watch after their position"})
				fmt.Fprintf(&buf, "event: reset\ndata: %s\n\n", data)
				send()
				log.WarnContext(ctx, "watch stream reset", "error", err)
				return nil
			}
		}
	}
}

// alertLag is how far back a watch reads the alerts again at each poll:
// alerts committed late (a concurrent transaction, a replica's clock a
// little behind) are still sent, once.
const alertLag = 10 * time.Second

// alertFollower follows the alerts of the view log for one watch stream
// (R20): from the moment the stream started, each alert once.
type alertFollower struct {
	start, newest time.Time
	seen          map[uuid.UUID]time.Time // alert id → raised_at, within alertLag of newest
}

func newAlertFollower(start time.Time) *alertFollower {
	return &alertFollower{start: start, newest: start, seen: map[uuid.UUID]time.Time{}}
}

// maxAlertPages bounds the pages of one poll; the rest come at the next.
const maxAlertPages = 10

// poll appends to buf an "alert" event for every alert raised since the
// last poll (and not yet sent).
func (a *alertFollower) poll(ctx context.Context, feed queries.Feed, buf *bytes.Buffer) error {
	cur := queries.ViewCursor{At: a.newest.Add(-alertLag)}
	if cur.At.Before(a.start) {
		cur.At = a.start
	}
	for range maxAlertPages {
		page, err := feed.AlertsAfter(ctx, cur)
		if err != nil {
			return err
		}
		for _, al := range page {
			if _, ok := a.seen[al.AlertID]; ok {
				continue
			}
			a.seen[al.AlertID] = al.RaisedAt
			if al.RaisedAt.After(a.newest) {
				a.newest = al.RaisedAt
			}
			data, _ := json.Marshal(al)
			fmt.Fprintf(buf, "event: alert\ndata: %s\n\n", data)
		}
		if len(page) < queries.ViewsMaxLimit {
			break
		}
		last := page[len(page)-1]
		cur = queries.ViewCursor{At: last.RaisedAt, ID: last.AlertID}
	}
	for id, at := range a.seen {
		if at.Before(a.newest.Add(-alertLag)) {
			delete(a.seen, id)
		}
	}
	return nil
}

// writeChange appends one "access" event to buf, with the SSE id when
// withID.
func writeChange(buf *bytes.Buffer, ch api.WatchEvent, withID bool) {
	data, _ := json.Marshal(ch)
	if withID {
		fmt.Fprintf(buf, "id: %s\n", ch.Position)
	}
	fmt.Fprintf(buf, "event: access\ndata: %s\n\n", data)
}
