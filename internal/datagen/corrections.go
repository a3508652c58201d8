package datagen

import (
	"fmt"
	"strings"

	"github.com/accessledger/accessledger/domain"
)

// Corrections (R18), decided by the aggregates and appended as the
// handlers of commands/corrections.go append them.

// planCancelled is a short break with carer c that the worker plans ahead
// and cancels, with a reason, before it starts: the child has no short
// break this time.
func (r *region) planCancelled(k *kid, c *acct) error {
	startedAt := r.office(r.now + r.between(3*day, 10*day))
	if startedAt >= r.end || !r.canPlace(k, c, startedAt) {
		return nil
	}
	by := r.actor(k.agg.Worker())
	id := r.newID()
	evs, err := k.agg.StartPlacement(by, id, c.agg, r.time(startedAt), r.time(r.now))
	if err != nil {
		return refused("planning a placement", err)
	}
	if _, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, ""), k.agg.Apply, evs); err != nil {
		return err
	}
	c.open++ // a carer with a planned placement does not retire
	p := &placement{id: id, carer: c, start: startedAt, respite: true}
	at := min(r.office(r.now+r.between(hour, 2*day)), startedAt-hour)
	r.schedule(task{at: at, kind: tCancelPlacement, k: k, p: p})
	return nil
}

// cancelPlacement is the child's worker cancelling a planned placement
// before it starts (commands.Service.CancelPlacement).
func (r *region) cancelPlacement(k *kid, p *placement) error {
	by := r.actor(k.agg.Worker())
	reason := pick(r, reasonsCancelPlacement)
	evs, err := k.agg.CancelPlacement(by, p.id, reason, r.time(r.now))
	if err != nil {
		return refused("cancelling a placement", err)
	}
	if _, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, reason), k.agg.Apply, evs); err != nil {
		return err
	}
	p.carer.open--
	return nil
}

// reopen is the portals team reopening a closed account
// (commands.Service.ReopenAccount). The access it had before the closure
// does not come back (R18): a carer can be placed again, and a member's
// grants that were active at the closure are given anew by the children's
// workers, for the children still in care. No review of those grants is
// pending any more: reviews stop at a closure, and reopenMin is longer
// than reviewMax.
func (r *region) reopen(a *acct) error {
	if !a.closed {
		return nil
	}
	by := pick(r, r.portals)
	reason := pick(r, reasonsReopenMember)
	if a.kind == domain.KindFosterCarer {
		reason = pick(r, reasonsReopenCarer)
	}
	evs, err := a.agg.Reopen(by, reason, r.time(r.now))
	if err != nil {
		return refused("reopening an account", err)
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), r.cause(by, reason), a.agg.Apply, evs); err != nil {
		return err
	}
	a.closed, a.retiring = false, false
	for _, k := range r.kids {
		for _, g := range k.grants {
			if g.a != a || !g.active {
				continue
			}
			g.active = false // ended with the closure
			if !k.left {
				r.schedule(task{at: r.office(r.now + r.between(hour, 20*day)), kind: tGrant, g: g})
			}
		}
	}
	if a.agg.PhoneHint() != "" {
		r.schedule(task{at: r.office(r.now + r.exp(phoneResetMean)), kind: tRequestReset, a: a})
	}
	return nil
}

// requestEmailChange is a worker asking, with a reason, that the portals
// team change an active account's email (commands.Service.RequestEmailChange);
// the new address is the account's own, held by no other account.
func (r *region) requestEmailChange(a *acct) error {
	if a.closed || a.newEmail != "" {
		return nil
	}
	local, _, _ := strings.Cut(a.email, "@")
	if n := strings.Count(local, "."); n > 2 { // changed before: drop the last change's number
		local = local[:strings.LastIndexByte(local, '.')]
	}
	email := fmt.Sprintf("%s.%d@%s", local, a.emails+1, pick(r, emailDomains))
	by := r.actor(r.worker())
	reason := pick(r, reasonsEmailChange)
	evs, err := a.agg.RequestEmailChange(by, email, reason, r.time(r.now))
	if err != nil {
		return refused("an email change request", err)
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), r.cause(by, reason), a.agg.Apply, evs); err != nil {
		return err
	}
	a.newEmail = email
	r.schedule(task{at: r.office(r.now + r.between(2*hour, 4*day)), kind: tChangeEmail, a: a})
	return nil
}

// changeEmail is the portals team applying the open request as
// commands.Service.ChangeEmail does: it decides the change, the claim of
// the new email and the release of the old one, and appends, with one
// cause, the claim to the new email's claim stream, the change to the
// account's stream, and the release to the old email's claim stream.
func (r *region) changeEmail(a *acct) error {
	if a.closed || a.newEmail == "" {
		return nil // a closed account's email is not changed; the request stays open
	}
	by := pick(r, r.portals)
	now := r.time(r.now)
	change, err := a.agg.ChangeEmail(by, a.newEmail, now)
	if err != nil {
		return refused("an email change", err)
	}
	claim := domain.NewEmailClaim()
	claiming, err := claim.Claim(a.id, false, now)
	if err != nil {
		return refused("an email claim", err)
	}
	releasing := a.claim.Release(a.id, now)
	c := r.cause(by, "")
	if _, err := r.emit(domain.EmailStream(a.newEmail), claim.Version(), c, claim.Apply, claiming); err != nil {
		return err
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), c, a.agg.Apply, change); err != nil {
		return err
	}
	if _, err := r.emit(domain.EmailStream(a.email), a.claim.Version(), c, a.claim.Apply, releasing); err != nil {
		return err
	}
	a.email, a.claim, a.newEmail = a.newEmail, claim, ""
	a.emails++
	return nil
}

var (
	reasonsCancelPlacement = []string{"carer unavailable", "short break no longer needed", "child unwell",
		"family holiday", "carer's household illness"}
	reasonsReopenCarer  = []string{"carer re-approved", "carer returned to fostering", "closed in error"}
	reasonsReopenMember = []string{"back in contact with the child", "closed in error", "involved again after review"}
	reasonsEmailChange  = []string{"new email address", "old address no longer used", "work address changed",
		"requested by the account holder"}
	emailDomains = []string{"mail.example.com", "post.example.net", "inbox.example.org"}
)
