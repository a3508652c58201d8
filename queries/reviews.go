package queries

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// ListReviewsParams are the parameters of ListReviews (R19): the due time
// (zero for now), the worker whose children to list ("" for a worker: the
// caller; for a manager or an auditor: every worker's), and a page (After:
// the Next of the previous page; Limit: 0 means DefaultReviewsLimit, at most
// MaxReviewsLimit).
type ListReviewsParams struct {
	DueBefore time.Time
	WorkerID  string
	After     string
	Limit     int
	Consistency
}

// Page sizes of ListReviews.
const (
	DefaultReviewsLimit = 100
	MaxReviewsLimit     = 1000
)

// ListReviews answers the grants due for review, or ending, before
// p.DueBefore (R19): the grants in force now (neither revoked, replaced
// nor run out) of the children allocated to the worker, an open-ended one
// when its review date is before DueBefore, a time-limited one when its
// end is, earliest first. A worker lists only the children allocated to
// them: another worker's id is refused (forbidden, in the security log).
func (s *Service) ListReviews(ctx context.Context, c Caller, p ListReviewsParams) (api.ReviewList, error) {
	if err := s.Authorize(ctx, QueryListReviews, c); err != nil {
		return api.ReviewList{}, err
	}
	if p.Limit < 0 || p.Limit > MaxReviewsLimit {
		return api.ReviewList{}, &Invalid{Detail: fmt.Sprintf("limit: %d not in 0..%d", p.Limit, MaxReviewsLimit)}
	}
	if p.Limit == 0 {
		p.Limit = DefaultReviewsLimit
	}
	if p.WorkerID != "" {
		if err := domain.CheckActorID(p.WorkerID); err != nil {
			return api.ReviewList{}, &Invalid{Detail: "worker_id: not a worker id: " + err.Error()}
		}
	}
	if c.Actor.Role == domain.RoleWorker {
		switch p.WorkerID {
		case "":
			p.WorkerID = c.Actor.ID
		case c.Actor.ID:
		default:
			return api.ReviewList{}, s.refuse(ctx, QueryListReviews, c, &Forbidden{Role: c.Actor.Role, Query: QueryListReviews,
				Detail: fmt.Sprintf("a worker lists the grants of the children allocated to them only, not %q's", p.WorkerID)})
		}
	}
	after, err := parseDueKey(p.After)
	if err != nil {
		return api.ReviewList{}, &Invalid{Detail: "after: " + err.Error()}
	}
	if err := s.waitIndex(ctx, p.Consistency); err != nil {
		return api.ReviewList{}, err
	}
	now := s.Now()
	due := now
	if !p.DueBefore.IsZero() {
		due = p.DueBefore.UTC()
	}
	grants, more, pos := s.cfg.Index.GrantsDue(p.WorkerID, due, now, after, p.Limit)
	out := api.ReviewList{Grants: make([]api.ReviewItem, 0, len(grants)), Position: pos.String()}
	for _, g := range grants {
		grantedAt := g.GrantedAt.UTC()
		it := api.ReviewItem{ChildID: g.Child, AccountID: g.Account, Relationship: api.ReviewItemRelationship(g.Relationship),
			ReviewBy: optTime(g.ReviewBy), ExpiresAt: optTime(g.ExpiresAt), GrantedAt: &grantedAt}
		if g.Worker != "" {
			w := g.Worker
			it.WorkerID = &w
		}
		out.Grants = append(out.Grants, it)
	}
	if more {
		next := formatDueKey(grants[len(grants)-1].Key())
		out.Next = &next
	}
	return out, nil
}

// formatDueKey is the opaque cursor of a place in the reviews list:
// base64url of "<due unix micros>.<child>.<account>".
func formatDueKey(k accessindex.DueKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k.Due.UnixMicro(), 10) + "." + k.Child.String() + "." + k.Account.String()))
}

// parseDueKey reads a cursor of formatDueKey ("" is the start).
func parseDueKey(s string) (accessindex.DueKey, error) {
	if s == "" {
		return accessindex.DueKey{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return accessindex.DueKey{}, fmt.Errorf("not a cursor of this list")
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 {
		return accessindex.DueKey{}, fmt.Errorf("not a cursor of this list")
	}
	us, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return accessindex.DueKey{}, fmt.Errorf("not a cursor of this list")
	}
	child, err1 := uuid.Parse(parts[1])
	account, err2 := uuid.Parse(parts[2])
	if err1 != nil || err2 != nil {
		return accessindex.DueKey{}, fmt.Errorf("not a cursor of this list")
	}
	return accessindex.DueKey{Due: time.UnixMicro(us).UTC(), Child: child, Account: account}, nil
}
