package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// MaxViewsBodyBytes is the largest body of POST /v1/views (1 MiB: 1,000
// views of about 170 bytes each, with room for formatting); a larger one
// is answered 413 "too_large".
const MaxViewsBodyBytes = 1 << 20

// recordViewsBody is the batch form of POST /v1/views; each element is
// decoded as a api.RecordView by decodeBody.
type recordViewsBody struct {
	Views []json.RawMessage `json:"views"`
}

// decodeViews decodes the body of POST /v1/views: one api.RecordView, or
// {"views":[…]} of 1 to queries.MaxViews of them, each checked as
// decodeBody checks a command's body, and parsed. Any bad view refuses the
// whole body (400), naming it.
func decodeViews(body []byte) ([]queries.ViewInput, error) {
	keys, err := scanObject(body)
	if err != nil {
		return nil, err
	}
	if _, batch := keys["views"]; !batch {
		var v api.RecordView
		if err := decodeBody(body, &v); err != nil {
			return nil, err
		}
		in, err := parseView("", v)
		if err != nil {
			return nil, err
		}
		return []queries.ViewInput{in}, nil
	}
	var b recordViewsBody
	if err := decodeBody(body, &b); err != nil {
		return nil, err
	}
	if len(b.Views) == 0 || len(b.Views) > queries.MaxViews {
		return nil, errInvalid("views: send 1 to %d views, not %d", queries.MaxViews, len(b.Views))
	}
	out := make([]queries.ViewInput, len(b.Views))
	for i, raw := range b.Views {
		var v api.RecordView
		if err := decodeBody(raw, &v); err != nil {
			var he *httpError
			if errors.As(err, &he) {
				return nil, errInvalid("views[%d]: %s", i, he.detail)
			}
			return nil, err
		}
		if out[i], err = parseView(viewName(i), v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func viewName(i int) string { return fmt.Sprintf("views[%d].", i) }

// parseView parses one view's fields; prefix names it in errors.
func parseView(prefix string, v api.RecordView) (in queries.ViewInput, err error) {
	if in.Account, err = parseUUID(prefix+"account_id", v.AccountID); err != nil {
		return in, err
	}
	if in.Child, err = parseUUID(prefix+"child_id", v.ChildID); err != nil {
		return in, err
	}
	if in.Permission, err = domain.ParsePermission(v.Permission); err != nil {
		return in, errInvalid("%spermission: must be view, record or complete_outstanding", prefix)
	}
	in.ViewedAt, err = parseTime(prefix+"viewed_at", v.ViewedAt)
	return in, err
}

// recordViews is POST /v1/views (R20): the views a portal reports, each
// kept with the access decision at its viewed_at.
func (s *server) recordViews(w http.ResponseWriter, r *http.Request, c call) error {
	cw, err := consistency(c.q)
	if err != nil {
		return err
	}
	body, err := readBodyLimit(w, r, MaxViewsBodyBytes)
	if err != nil {
		return err
	}
	in, err := decodeViews(body)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.RecordViews(r.Context(), c.caller, in, cw)
	return answerJSON(w, a, err)
}

// viewFilter reads from=, to=, after= (a view cursor), limit= and
// min_position of the views and alerts lists.
func viewFilter(q query) (f queries.ViewFilter, w queries.Consistency, err error) {
	if f.From, f.To, err = q.timeRange(); err != nil {
		return f, w, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, w, errInvalid("to: must be after from")
	}
	if q.has("after") {
		if f.After, err = queries.ParseViewCursor(q.str("after")); err != nil {
			return f, w, errInvalid("after: must be the next of a previous page")
		}
	}
	limit, err := q.int64In("limit", queries.ViewsDefaultLimit, 1, queries.ViewsMaxLimit)
	if err != nil {
		return f, w, err
	}
	f.Limit = int(limit)
	w, err = consistency(q)
	return f, w, err
}

// childViews is GET /v1/children/{child_id}/views (R20).
func (s *server) childViews(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := pathUUID(r, "child_id")
	if err != nil {
		return err
	}
	f, cw, err := viewFilter(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.ChildViews(r.Context(), c.caller, id, f, cw)
	return answerJSON(w, a, err)
}

// accountViews is GET /v1/accounts/{account_id}/views (R20).
func (s *server) accountViews(w http.ResponseWriter, r *http.Request, c call) error {
	id, err := pathUUID(r, "account_id")
	if err != nil {
		return err
	}
	f, cw, err := viewFilter(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.AccountViews(r.Context(), c.caller, id, f, cw)
	return answerJSON(w, a, err)
}

// alerts is GET /v1/alerts (R20).
func (s *server) alerts(w http.ResponseWriter, r *http.Request, c call) error {
	f, cw, err := viewFilter(c.q)
	if err != nil {
		return err
	}
	a, err := s.cfg.Queries.Alerts(r.Context(), c.caller, f, cw)
	return answerJSON(w, a, err)
}
