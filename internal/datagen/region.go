package datagen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
)

// Durations in Unix microseconds, the region's unit of time.
const (
	second = int64(time.Second / time.Microsecond)
	minute = 60 * second
	hour   = 60 * minute
	day    = 24 * hour
	year   = 365 * day
)

// The model's rates. They are calibrated so that a county (one region of
// 10,000 children, 3,000 carers and 20,000 members over five years) comes
// to about a million events; TestCountyCalibration checks it.
const (
	onboardShare      = 0.5 // children of the existing caseload, registered in the first three months
	managerRegisters  = 0.1 // children registered by a manager, who then allocates a worker
	reallocationMean  = 12 * 30 * day
	leaveCare         = 0.18 // chance that a child leaves care when a placement ends
	respiteShare      = 0.6  // children with regular short breaks
	respiteMinGap     = 14 * day
	respiteMaxGap     = 42 * day
	respiteCarerMin   = 120 * day // how long a respite carer stays the same
	respiteCarerMax   = 400 * day
	reviewMin         = 45 * day // contact reviews of a grant
	reviewMax         = 120 * day
	reviewRevoke      = 0.12
	reviewChange      = 0.14
	reviewRegrant     = 0.35
	reviewConfirm     = 0.8  // of the open-ended grants a review leaves as they are, due for review within reviewMax: confirmed (R19)
	timeLimited       = 0.15 // grants with an end (R19)
	leaveRevoke       = 0.7
	carerRetire       = 0.12
	memberClose       = 0.03
	neverActivates    = 0.06
	invitationLapses  = 0.1 // chance that an invitation runs out unaccepted
	renewLapsed       = 0.6
	phoneAtSignIn     = 0.88
	phoneResetMean    = 2 * year
	lateExpiry        = 0.05 // expiries the process manager writes hours late
	caseloadPerWorker = 20
	retainedShare     = 0.6  // children registered with a retention date (R22)
	retentionMoved    = 0.05 // children whose retention date a manager moves later

	// Corrections (R18).
	breakCancelled = 0.02 // short breaks planned ahead and cancelled before they start
	breakPlanned   = 0.05 // short breaks booked a few days ahead (the process manager marks their start)
	reopenEvery    = 40   // every reopenEvery-th closure that leaves time to reopen is reopened,
	reopenFirst    = 8    // from the reopenFirst-th on (a share of 2.5%, and one in a small region)
	reopenMin      = 150 * day
	reopenMax      = 2 * year
	emailChange    = 0.02 // activated accounts whose email a worker asks to change later
)

// acct is one portal account of the region and what the simulation knows
// of it besides the aggregate.
type acct struct {
	id      uuid.UUID
	agg     *domain.Account
	email   string
	kind    domain.AccountKind
	rel     domain.Relationship // for members: the relationship of their grants
	never   bool                // never accepts an invitation
	invited bool                // invited at least once (carers: in invited)
	closed  bool
	// The current invitation's event and correlation: the causation of
	// its expiry.
	invID, invCorr uuid.UUID
	// Carers: retiring (no new placements), placements started and not
	// ended, and the latest end of a grace period.
	retiring  bool
	open      int
	busyUntil int64
	inviteAt  int64
	// claim is the aggregate of the claim stream of the account's current
	// email (R10, R18); emails counts the changes of the email.
	claim  *domain.EmailClaim
	emails int
	// newEmail is the email of the open change request.
	newEmail string
}

// kid is one child of the region.
type kid struct {
	id      uuid.UUID
	agg     *domain.Child
	ref     string
	worker  string // the worker who registers the child
	regAt   int64
	fam     *family
	main    *placement // the latest main placement
	respite bool
	// The current respite carer and until when.
	respiteCarer *acct
	respiteUntil int64
	left         bool
	grants       []*grant
	related      []*acct // accounts with a placement or a grant, ever
}

func (k *kid) relate(a *acct) {
	for _, b := range k.related {
		if b == a {
			return
		}
	}
	k.related = append(k.related, a)
}

// family is a sibling group and its network.
type family struct {
	regAt   int64
	kids    []*kid
	members []*acct
}

// placement is one placement and its end's ids (the causation of its
// expiry).
type placement struct {
	id                 uuid.UUID
	carer              *acct
	start              int64
	respite            bool
	startID, startCorr uuid.UUID // the start's event and correlation (the causation of its time mark)
	endID, endCorr     uuid.UUID
	graceUntil         int64
}

// grant is one (member, child) pair of a family and its grant's state.
type grant struct {
	k      *kid
	a      *acct
	active bool
	record bool // the grant includes record
	// until is the end of a time-limited grant (R19), 0 for an open-ended
	// one; grantedAt, grantID and grantCorr name the grant event.
	until, grantedAt   int64
	grantID, grantCorr uuid.UUID
}

// ended reports whether the time-limited grant ran out by now.
func (g *grant) ended(now int64) bool { return g.until != 0 && now >= g.until }

// Placement kinds (task.n of tPlace).
const (
	plMain uint8 = iota
	plAgain
	plRespite
)

// End flavours (task.n of tEnd).
const (
	endOnTime uint8 = iota
	endLate         // recorded after the grace period: the expiry is decided with it
	endAhead        // recorded before it happens
	endEarly        // the worker ends the grace period early (R6)
	endAgain        // the carer is placed again within the grace (R5)
)

// region simulates one county: its agenda of tasks, run in time order, each
// a command decided by the aggregates.
type region struct {
	idx      int
	rng      *rand.Rand
	w        *writer
	policy   domain.Policy
	grace    int64
	ttl      int64
	start    int64
	end      int64
	now      int64
	seq      uint64
	q        queue
	workers  []string
	managers []domain.Actor
	portals  []domain.Actor
	carers   []*acct
	invited  []*acct // carers invited so far, in order
	members  []*acct
	kids     []*kid
	families []*family
	// closures counts the closures that leave time to reopen (reopenEvery).
	closures int
}

var service = domain.Actor{ID: "portal-backend", Role: domain.RoleService}

func newRegion(idx, nKids, nCarers, nMembers int, horizon time.Time, seed uint64, w *writer) *region {
	r := &region{
		idx:    idx,
		rng:    rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15*uint64(idx+1))),
		w:      w,
		policy: domain.DefaultPolicy,
		start:  Epoch.UnixMicro(),
		end:    horizon.UnixMicro(),
	}
	r.grace = r.policy.GracePeriod.Microseconds()
	r.ttl = r.policy.InvitationTTL.Microseconds()
	r.now = r.start
	r.plan(nKids, nCarers, nMembers)
	return r
}

// ---- random helpers ----

// between returns a uniform time in [lo, hi].
func (r *region) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + r.rng.Int64N(hi-lo+1)
}

func (r *region) chance(p float64) bool { return r.rng.Float64() < p }

func (r *region) exp(mean int64) int64 { return int64(r.rng.ExpFloat64() * float64(mean)) }

func (r *region) time(t int64) time.Time { return time.UnixMicro(t).UTC() }

// office moves t into working hours (weekdays 09:00 to 17:00 UTC): the
// time a worker, manager or the portals team acts.
func (r *region) office(t int64) int64 {
	midnight := t - t%day
	tm := r.time(t)
	switch h := tm.Hour(); {
	case tm.Weekday() == time.Saturday:
		midnight += 2 * day
	case tm.Weekday() == time.Sunday:
		midnight += day
	case h < 9:
	case h >= 17:
		midnight += day
		if tm.Weekday() == time.Friday {
			midnight += 2 * day
		}
	default:
		return t
	}
	return midnight + 9*hour + r.between(0, 3*hour)
}

// pmDelay is how long after a deadline the process manager writes the
// expiry: seconds, now and then hours.
func (r *region) pmDelay() int64 {
	if r.chance(lateExpiry) {
		return r.between(hour, 48*hour)
	}
	return r.between(200_000, 90*second)
}

func (r *region) worker() string { return r.workers[r.rng.IntN(len(r.workers))] }

func (r *region) actor(worker string) domain.Actor {
	return domain.Actor{ID: worker, Role: domain.RoleWorker}
}

func pick[T any](r *region, list []T) T { return list[r.rng.IntN(len(list))] }

// schedule puts a task on the agenda; a task beyond the horizon is
// dropped, and one in the past (never meant) runs now.
func (r *region) schedule(t task) {
	if t.at > r.end {
		return
	}
	t.at = max(t.at, r.now)
	r.seq++
	t.seq = r.seq
	r.q.push(t)
}

// ---- the plan ----

func (r *region) plan(nKids, nCarers, nMembers int) {
	for i := range max(2, nKids/caseloadPerWorker) {
		r.workers = append(r.workers, fmt.Sprintf("worker-%02d-%03d", r.idx, i))
	}
	for i := range max(1, nKids/300) {
		r.managers = append(r.managers, domain.Actor{ID: fmt.Sprintf("manager-%02d-%02d", r.idx, i), Role: domain.RoleManager})
	}
	for i := range max(1, nKids/2000) {
		r.portals = append(r.portals, domain.Actor{ID: fmt.Sprintf("portals-%02d-%d", r.idx, i), Role: domain.RolePortalsTeam})
	}

	for i := range nCarers {
		a := r.newAccount(fmt.Sprintf("carer.%02d.%05d@fostering.example.org", r.idx, i), domain.KindFosterCarer)
		r.carers = append(r.carers, a)
		at := r.start + r.between(0, 30*day)
		if !r.chance(0.8) { // recruited later
			at = r.between(r.start+30*day, r.end-90*day)
		}
		a.inviteAt = r.office(at)
		r.schedule(task{at: a.inviteAt, kind: tInvite, a: a})
		if r.chance(carerRetire) {
			r.schedule(task{at: r.office(r.between(a.inviteAt+180*day, r.end)), kind: tCloseAccount, a: a})
		}
	}

	for left := nKids; left > 0; {
		size := 1
		switch x := r.rng.IntN(100); {
		case x < 15:
			size = 3
		case x < 40:
			size = 2
		}
		size = min(size, left)
		left -= size
		f := &family{regAt: r.between(r.start+90*day, r.end-30*day)}
		if r.chance(onboardShare) {
			f.regAt = r.start + r.between(7*day, 90*day)
		}
		f.regAt = r.office(f.regAt)
		r.families = append(r.families, f)
		worker := r.worker()
		for j := range size {
			n := len(r.kids)
			k := &kid{id: r.idAt(f.regAt), ref: fmt.Sprintf("R%02d-C%06d", r.idx, n), worker: worker, fam: f,
				regAt: f.regAt + int64(j)*r.between(2*minute, 10*minute), respite: r.chance(respiteShare)}
			k.agg = domain.NewChild(k.id)
			r.kids = append(r.kids, k)
			f.kids = append(f.kids, k)
			r.schedule(task{at: k.regAt, kind: tRegister, k: k})
		}
		parents := 1
		if r.chance(0.55) {
			parents = 2
		}
		for range parents {
			r.join(f, domain.KindParent, nMembers, 45*day)
		}
		if r.chance(0.12) {
			r.join(f, domain.KindGuardian, nMembers, 45*day)
		}
		for range r.rng.IntN(3) {
			r.join(f, domain.KindNetworkMember, nMembers, 365*day)
		}
	}
	// Members left over: relatives and friends who join a network later.
	for len(r.members) < nMembers {
		r.join(pick(r, r.families), domain.KindNetworkMember, nMembers, 2*year)
	}
}

func (r *region) newAccount(email string, kind domain.AccountKind) *acct {
	id := domain.AccountIDForEmail(email)
	a := &acct{id: id, agg: domain.NewAccount(id), email: email, kind: kind, never: r.chance(neverActivates),
		claim: domain.NewEmailClaim()}
	switch kind {
	case domain.KindParent:
		a.rel = domain.RelParent
	case domain.KindGuardian:
		a.rel = domain.RelGuardian
	default:
		a.rel = domain.RelNetworkMember
	}
	return a
}

// join adds a member of kind to family f: a new account while the region
// has members to spare (invited within within of the family's
// registration), else an existing one (a relative in two networks).
func (r *region) join(f *family, kind domain.AccountKind, nMembers int, within int64) {
	var a *acct
	if len(r.members) < nMembers {
		prefix := map[domain.AccountKind]string{domain.KindParent: "parent", domain.KindGuardian: "guardian"}[kind]
		if prefix == "" {
			prefix = "network"
		}
		a = r.newAccount(fmt.Sprintf("%s.%02d.%06d@family.example.net", prefix, r.idx, len(r.members)), kind)
		r.members = append(r.members, a)
		a.inviteAt = r.office(min(f.regAt+r.between(hour, within), r.end-day-r.between(0, 30*day)))
		r.schedule(task{at: a.inviteAt, kind: tInvite, a: a})
		if r.chance(memberClose) {
			r.schedule(task{at: r.office(r.between(a.inviteAt+30*day, r.end)), kind: tCloseAccount, a: a})
		}
	} else {
		a = pick(r, r.members)
	}
	for _, b := range f.members {
		if b == a {
			return
		}
	}
	f.members = append(f.members, a)
}

// ---- running ----

// run carries out the agenda in time order until it is empty (tasks beyond
// the horizon are never scheduled).
func (r *region) run(ctx context.Context) error {
	for n := 0; len(r.q) > 0; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		t := r.q.pop()
		r.now = t.at
		if err := r.do(&t); err != nil {
			return fmt.Errorf("at %s: %w", r.time(r.now).Format(time.RFC3339), err)
		}
	}
	return nil
}

func (r *region) do(t *task) error {
	switch t.kind {
	case tInvite:
		return r.invite(t.a)
	case tActivate:
		return r.activate(t.a)
	case tExpireInvitation:
		return r.expireInvitation(t.a)
	case tEnrolPhone:
		return r.enrolPhone(t.a)
	case tRequestReset:
		return r.requestReset(t.a)
	case tClearPhone:
		return r.clearPhone(t.a)
	case tCloseAccount:
		return r.closeAccount(t.a)
	case tRegister:
		return r.register(t.k)
	case tAllocate:
		return r.allocate(t.k, t.n)
	case tPlace:
		return r.place(t)
	case tEnd:
		return r.endPlacement(t.k, t.p, t.eff, t.n)
	case tEndGrace:
		return r.endGrace(t.k, t.p)
	case tExpireGrace:
		return r.expireGrace(t.k, t.p)
	case tRespite:
		return r.respite(t.k)
	case tGrant:
		return r.grant(t.g)
	case tReview:
		return r.review(t.g)
	case tRevoke:
		return r.revoke(t.g, pick(r, reasonsLeaveCare))
	case tLeave:
		return r.leave(t.k)
	case tCancelPlacement:
		return r.cancelPlacement(t.k, t.p)
	case tReopen:
		return r.reopen(t.a)
	case tRequestEmail:
		return r.requestEmailChange(t.a)
	case tChangeEmail:
		return r.changeEmail(t.a)
	case tMarkStart:
		return r.markStart(t.k, t.p)
	case tMarkEnd:
		return r.markEnd(t.k, t.p)
	case tExpireGrant:
		return r.expireGrant(t.g, t.eff)
	}
	return fmt.Errorf("unknown task kind %d", t.kind)
}

// refused reports a command the domain refused although the generator
// meant it to be accepted: a bug of the generator.
func refused(what string, err error) error {
	return fmt.Errorf("the domain refused %s: %w", what, err)
}

// ---- accounts ----

func (r *region) invite(a *acct) error {
	if a.closed {
		return nil
	}
	by := r.actor(r.worker())
	evs, err := a.agg.Invite(by, a.email, string(a.kind), r.time(r.now), r.policy)
	if err != nil {
		return refused("an invitation", err)
	}
	// The email is claimed for the account before the invitation is
	// appended, as commands.Service.Invite does; a renewal finds it
	// claimed already and claims nothing.
	claiming, err := a.claim.Claim(a.id, false, r.time(r.now))
	if err != nil {
		return refused("an email claim", err)
	}
	c := r.cause(by, "")
	if _, err := r.emit(domain.EmailStream(a.email), a.claim.Version(), c, a.claim.Apply, claiming); err != nil {
		return err
	}
	data, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), c, a.agg.Apply, evs)
	if err != nil {
		return err
	}
	a.invID, a.invCorr = data[0].ID, c.CorrelationID
	if !a.invited && a.kind == domain.KindFosterCarer {
		r.invited = append(r.invited, a)
	}
	a.invited = true
	if a.never || r.chance(invitationLapses) {
		r.schedule(task{at: r.now + r.ttl + r.pmDelay(), kind: tExpireInvitation, a: a})
		return nil
	}
	r.schedule(task{at: r.now + r.between(10*minute, 13*day), kind: tActivate, a: a})
	return nil
}

func (r *region) expireInvitation(a *acct) error {
	evs, err := a.agg.ExpireInvitation(r.time(r.now))
	if err != nil {
		return refused("an invitation's expiry", err)
	}
	c := domain.Cause{Actor: domain.System, Reason: reasonInvitationRanOut, RecordedAt: r.time(r.now),
		CorrelationID: a.invCorr, CausationID: a.invID}
	ids := deadlineIDs(a.id, a.agg.InvitationExpiresAt().UnixMicro())
	if _, err := r.emitIDs(domain.AccountStream(a.id), a.agg.Version(), c, a.agg.Apply, evs, ids); err != nil {
		return err
	}
	if len(evs) > 0 && r.chance(renewLapsed) {
		r.schedule(task{at: r.office(r.now + r.between(7*day, 120*day)), kind: tInvite, a: a})
	}
	return nil
}

// activate is the service reporting the first sign-in: the identity link
// and the activation, decided together and appended one after the other,
// as commands.Service.Activate does.
func (r *region) activate(a *acct) error {
	if a.closed {
		return nil
	}
	now := r.time(r.now)
	subject := "idp|" + a.id.String()
	activation, err := a.agg.Activate(service, subject, a.email, now)
	if err != nil {
		return refused("an activation", err)
	}
	link := domain.NewIdentityLink(subject)
	linking, err := link.Link(a.id, now)
	if err != nil {
		return refused("an identity link", err)
	}
	c := r.cause(service, "")
	if _, err := r.emit(domain.IdentityStream(subject), link.Version(), c, link.Apply, linking); err != nil {
		return err
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), c, a.agg.Apply, activation); err != nil {
		return err
	}
	switch {
	case r.chance(phoneAtSignIn):
		r.schedule(task{at: r.now + r.between(30*second, 10*minute), kind: tEnrolPhone, a: a})
	case r.chance(0.5):
		r.schedule(task{at: r.now + r.between(day, 60*day), kind: tEnrolPhone, a: a})
	}
	if r.chance(emailChange) {
		r.schedule(task{at: r.office(r.now + r.between(60*day, 4*year)), kind: tRequestEmail, a: a})
	}
	return nil
}

func (r *region) enrolPhone(a *acct) error {
	if a.closed || a.agg.PhoneHint() != "" {
		return nil
	}
	phone := fmt.Sprintf("+44 7700 %06d", r.rng.IntN(1_000_000))
	evs, err := a.agg.EnrolPhone(service, phone, r.time(r.now))
	if err != nil {
		return refused("a phone enrolment", err)
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), r.cause(service, ""), a.agg.Apply, evs); err != nil {
		return err
	}
	r.schedule(task{at: r.office(r.now + r.exp(phoneResetMean)), kind: tRequestReset, a: a})
	return nil
}

func (r *region) requestReset(a *acct) error {
	if a.closed || a.agg.PhoneHint() == "" || a.agg.PhoneResetRequested() {
		return nil
	}
	by := r.actor(r.worker())
	reason := pick(r, reasonsPhoneReset)
	evs, err := a.agg.RequestPhoneReset(by, reason, r.time(r.now))
	if err != nil {
		return refused("a phone reset request", err)
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), r.cause(by, reason), a.agg.Apply, evs); err != nil {
		return err
	}
	r.schedule(task{at: r.office(r.now + r.between(2*hour, 3*day)), kind: tClearPhone, a: a})
	return nil
}

func (r *region) clearPhone(a *acct) error {
	if a.closed {
		return nil
	}
	by := pick(r, r.portals)
	evs, err := a.agg.ClearPhone(by, r.time(r.now))
	if err != nil {
		return refused("clearing a phone", err)
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), r.cause(by, ""), a.agg.Apply, evs); err != nil {
		return err
	}
	r.schedule(task{at: r.now + r.between(hour, 10*day), kind: tEnrolPhone, a: a})
	return nil
}

// closeAccount closes an account; a retiring carer's account waits until
// their last placement has ended and its grace period is over.
func (r *region) closeAccount(a *acct) error {
	if a.closed {
		return nil
	}
	reasons := reasonsCloseMember
	if a.kind == domain.KindFosterCarer {
		a.retiring = true
		if a.open > 0 || r.now <= a.busyUntil {
			r.schedule(task{at: r.office(max(r.now+14*day, a.busyUntil+day)), kind: tCloseAccount, a: a})
			return nil
		}
		reasons = reasonsCloseCarer
	}
	by := pick(r, r.portals)
	reason := pick(r, reasons)
	evs, err := a.agg.Close(by, reason, r.time(r.now))
	if err != nil {
		return refused("closing an account", err)
	}
	if _, err := r.emit(domain.AccountStream(a.id), a.agg.Version(), r.cause(by, reason), a.agg.Apply, evs); err != nil {
		return err
	}
	a.closed = true
	// An activated account closed early enough may be reopened (R18).
	if left := r.end - r.now - 10*day; a.agg.IdentitySubject() != "" && left > reopenMin {
		if r.closures++; r.closures%reopenEvery == reopenFirst {
			r.schedule(task{at: r.office(r.now + r.between(reopenMin, min(reopenMax, left))), kind: tReopen, a: a})
		}
	}
	return nil
}

// initialPolicy records the region's policy as the log's first policy
// (R25), as accessd serve does from its flags on an empty log.
func (r *region) initialPolicy() error {
	evs, err := domain.NewPolicyHistory(r.policy).SetPolicy(domain.System, domain.PolicyChange{}, "", r.time(r.now))
	if err != nil {
		return refused("recording the initial policy", err)
	}
	_, err = r.emit(domain.PolicyStream, 0, r.cause(domain.System, commands.InitialPolicyReason),
		func(domain.Event) error { return nil }, evs)
	return err
}

// ---- children ----

func (r *region) register(k *kid) error {
	by := r.actor(k.worker)
	if r.chance(managerRegisters) {
		by = pick(r, r.managers)
	}
	var retain time.Time
	if r.chance(retainedShare) {
		retain = r.time(r.now + r.between(25*year, 75*year))
	}
	evs, err := k.agg.Register(by, k.ref, retain, r.time(r.now))
	if err != nil {
		return refused("registering a child", err)
	}
	if _, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, ""), k.agg.Apply, evs); err != nil {
		return err
	}
	if r.chance(retentionMoved) {
		m := pick(r, r.managers)
		const why = "retention reviewed: kept until the care leaver turns 75"
		evs, err := k.agg.SetRetention(m, r.time(r.now+r.between(80*year, 90*year)), why, r.time(r.now))
		if err != nil {
			return refused("setting a retention date", err)
		}
		if _, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(m, why), k.agg.Apply, evs); err != nil {
			return err
		}
	}
	ready := r.now
	if k.agg.Worker() == "" {
		ready += r.between(10*minute, 2*hour)
		r.schedule(task{at: ready, kind: tAllocate, k: k, n: 1})
	}
	// The first placement: the existing caseload's began long ago (R4).
	first := ready + r.between(0, 2*day)
	if k.regAt < r.start+90*day {
		first = ready - r.between(day, 3*year)
	}
	r.schedule(task{at: max(ready, first) + r.between(5*minute, 3*hour), kind: tPlace, k: k, eff: first, n: plMain})
	r.schedule(task{at: r.office(r.now + r.exp(reallocationMean)), kind: tAllocate, k: k})
	if k.respite {
		r.schedule(task{at: r.office(r.now + r.between(14*day, 60*day)), kind: tRespite, k: k})
	}
	for _, a := range k.fam.members {
		g := &grant{k: k, a: a}
		k.grants = append(k.grants, g)
		r.schedule(task{at: r.office(max(r.now, a.inviteAt) + r.between(hour, 10*day)), kind: tGrant, g: g})
	}
	return nil
}

// allocate is a manager allocating a worker: the first one (initial, for a
// child a manager registered) or a new one.
func (r *region) allocate(k *kid, initial uint8) error {
	if k.left && initial == 0 {
		return nil
	}
	worker := r.worker()
	for worker == k.agg.Worker() {
		worker = r.worker()
	}
	by := pick(r, r.managers)
	evs, err := k.agg.AllocateWorker(by, worker, r.time(r.now))
	if err != nil {
		return refused("allocating a worker", err)
	}
	if _, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, ""), k.agg.Apply, evs); err != nil {
		return err
	}
	if initial == 0 {
		r.schedule(task{at: r.office(r.now + r.exp(reallocationMean)), kind: tAllocate, k: k})
	}
	return nil
}

// canPlace reports whether carer has no placement of k that is open or ends
// after startedAt (the domain's overlap rule).
func (r *region) canPlace(k *kid, carer *acct, startedAt int64) bool {
	if carer == nil || carer.closed || !carer.invited {
		return false
	}
	for _, f := range k.agg.PlacementFacts(carer.id) {
		if f.End.IsZero() || f.End.UnixMicro() > startedAt {
			return false
		}
	}
	return true
}

// pickCarer picks a carer for a new placement of k: not retiring, not k's
// current main or respite carer, free of k at startedAt.
func (r *region) pickCarer(k *kid, startedAt int64) *acct {
	if len(r.invited) == 0 {
		return nil
	}
	for range 30 {
		c := pick(r, r.invited)
		if c.retiring || c == k.respiteCarer || (k.main != nil && c == k.main.carer) {
			continue
		}
		if r.canPlace(k, c, startedAt) {
			return c
		}
	}
	return nil
}

func (r *region) place(t *task) error {
	k := t.k
	if k.left {
		return nil
	}
	if k.agg.Worker() == "" { // a manager has not allocated one yet
		t.at += hour
		r.schedule(*t)
		return nil
	}
	var carer *acct
	if t.n == plAgain && r.canPlace(k, t.a, t.eff) {
		carer = t.a
	} else if carer = r.pickCarer(k, t.eff); carer == nil {
		t.at, t.eff, t.n = t.at+3*day, t.eff+3*day, plMain
		r.schedule(*t)
		return nil
	}
	return r.startPlacement(k, carer, t.eff, plMain)
}

// startPlacement places k with carer from startedAt and plans how the
// placement ends and, for a main placement, what follows it.
func (r *region) startPlacement(k *kid, carer *acct, startedAt int64, kind uint8) error {
	by := r.actor(k.agg.Worker())
	id := r.newID()
	evs, err := k.agg.StartPlacement(by, id, carer.agg, r.time(startedAt), r.time(r.now))
	if err != nil {
		return refused("starting a placement", err)
	}
	c := r.cause(by, "")
	data, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs)
	if err != nil {
		return err
	}
	carer.open++
	k.relate(carer)
	p := &placement{id: id, carer: carer, start: startedAt, respite: kind == plRespite, startID: data[0].ID, startCorr: c.CorrelationID}
	if startedAt > r.now { // planned ahead: the process manager marks the start when it comes
		r.schedule(task{at: startedAt + r.pmDelay(), kind: tMarkStart, k: k, p: p})
	}

	var end int64
	flavour := endOnTime
	x := r.rng.IntN(100)
	if p.respite {
		end = startedAt + r.between(2*day, 4*day)
		switch {
		case x < 5:
			flavour = endLate
		case x < 15:
			flavour = endEarly
		}
	} else {
		k.main = p
		switch y := r.rng.IntN(100); {
		case y < 25: // emergency or short-term
			end = startedAt + r.between(3*day, 45*day)
		case y < 75:
			end = startedAt + r.between(45*day, 400*day)
		default:
			end = startedAt + r.between(400*day, 1500*day)
		}
		if end < r.now+day { // a backdated placement still running
			end = r.now + r.between(day, 600*day)
		}
		switch {
		case x < 5:
			flavour = endLate
		case x < 12:
			flavour = endAhead
		case x < 24:
			flavour = endEarly
		case x < 32:
			flavour = endAgain
		}
	}
	recorded := end + r.between(10*minute, 6*hour)
	switch flavour {
	case endLate:
		recorded = end + r.grace + r.between(day, 13*day)
	case endAhead:
		if ahead := end - r.between(5*day, 20*day); ahead > r.now+hour {
			recorded = ahead
		} else {
			flavour = endOnTime
		}
	}
	r.schedule(task{at: recorded, kind: tEnd, k: k, p: p, eff: end, n: flavour})
	if p.respite {
		return nil
	}
	switch {
	case flavour == endAgain:
		again := end + r.between(day, 6*day)
		r.schedule(task{at: again + r.between(5*minute, 3*hour), kind: tPlace, k: k, a: carer, eff: again, n: plAgain})
	case r.chance(leaveCare):
		r.schedule(task{at: r.office(end + r.between(0, 30*day)), kind: tLeave, k: k})
	default:
		next := end + r.between(0, 2*day)
		r.schedule(task{at: next + r.between(5*minute, 3*hour), kind: tPlace, k: k, eff: next, n: plMain})
	}
	return nil
}

func (r *region) endPlacement(k *kid, p *placement, endedAt int64, flavour uint8) error {
	by := r.actor(k.agg.Worker())
	reason := ""
	switch {
	case p.respite:
		reason = "short break ended"
	case r.chance(0.4):
		reason = pick(r, reasonsEndPlacement)
	}
	evs, err := k.agg.EndPlacement(by, p.id, r.time(endedAt), r.time(r.now), r.policy)
	if err != nil {
		return refused("ending a placement", err)
	}
	c := r.cause(by, reason)
	data, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs)
	if err != nil {
		return err
	}
	p.endID, p.endCorr, p.graceUntil = data[0].ID, c.CorrelationID, endedAt+r.grace
	p.carer.open--
	if endedAt > r.now { // recorded ahead: the process manager marks the end when it comes
		r.schedule(task{at: endedAt + r.pmDelay(), kind: tMarkEnd, k: k, p: p})
	}
	p.carer.busyUntil = max(p.carer.busyUntil, p.graceUntil)
	if len(evs) == 1 { // the deadline is ahead: the process manager's
		r.schedule(task{at: p.graceUntil + r.pmDelay(), kind: tExpireGrace, k: k, p: p})
	}
	if flavour == endEarly {
		if at := r.office(max(r.now, endedAt) + r.between(day, 5*day)); at < p.graceUntil {
			r.schedule(task{at: at, kind: tEndGrace, k: k, p: p})
		}
	}
	return nil
}

func (r *region) endGrace(k *kid, p *placement) error {
	by := r.actor(k.agg.Worker())
	reason := pick(r, reasonsEndGrace)
	evs, err := k.agg.EndGraceEarly(by, p.id, reason, r.time(r.now))
	if errors.Is(err, domain.ErrGraceExpired) {
		// The carer was placed with the child again within the grace (a
		// short break, R5): the engine refuses the worker's command, and
		// nothing is appended.
		return nil
	}
	if err != nil {
		return refused("ending a grace period early", err)
	}
	_, err = r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, reason), k.agg.Apply, evs)
	return err
}

// markStart and markEnd are the process manager's time marks of a start
// and an end recorded ahead of them (commands.Service.MarkPlacementStart,
// MarkPlacementEnd); a cancelled placement's record nothing.
func (r *region) markStart(k *kid, p *placement) error {
	evs, err := k.agg.MarkStartReached(p.id, r.time(r.now))
	if err != nil {
		return refused("a start's time mark", err)
	}
	c := domain.Cause{Actor: domain.System, Reason: reasonStartReached, RecordedAt: r.time(r.now),
		CorrelationID: p.startCorr, CausationID: p.startID}
	_, err = r.emitIDs(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs, deadlineIDs(p.id, p.start))
	return err
}

func (r *region) markEnd(k *kid, p *placement) error {
	evs, err := k.agg.MarkEndReached(p.id, r.time(r.now))
	if err != nil {
		return refused("an end's time mark", err)
	}
	c := domain.Cause{Actor: domain.System, Reason: reasonEndReached, RecordedAt: r.time(r.now),
		CorrelationID: p.endCorr, CausationID: p.endID}
	end := p.graceUntil - r.grace
	_, err = r.emitIDs(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs, deadlineIDs(p.endID, end))
	return err
}

// expireGrace is the process manager's command at a grace deadline. It may
// decide nothing (R5, R6), and then appends nothing.
func (r *region) expireGrace(k *kid, p *placement) error {
	evs, err := k.agg.ExpireCarerAccess(p.id, r.time(r.now))
	if err != nil {
		return refused("a grace expiry", err)
	}
	c := domain.Cause{Actor: domain.System, Reason: reasonGraceRanOut, RecordedAt: r.time(r.now),
		CorrelationID: p.endCorr, CausationID: p.endID}
	_, err = r.emitIDs(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs, deadlineIDs(p.id, p.graceUntil))
	return err
}

// respite is a child's regular short break, with a respite carer kept for
// months.
func (r *region) respite(k *kid) error {
	if k.left {
		return nil
	}
	r.schedule(task{at: r.office(r.now + r.between(respiteMinGap, respiteMaxGap)), kind: tRespite, k: k})
	if k.main == nil || k.agg.Worker() == "" {
		return nil
	}
	startedAt := r.now - r.between(0, 2*hour)
	c := k.respiteCarer
	if c == nil || r.now >= k.respiteUntil || c.retiring || c == k.main.carer {
		k.respiteCarer = nil
		c = r.pickCarer(k, startedAt)
		k.respiteCarer, k.respiteUntil = c, r.now+r.between(respiteCarerMin, respiteCarerMax)
	}
	if !r.canPlace(k, c, startedAt) { // the last short break's end is not recorded yet
		return nil
	}
	if r.chance(breakCancelled) {
		return r.planCancelled(k, c)
	}
	if r.chance(breakPlanned) { // booked a few days ahead
		if ahead := r.office(r.now + r.between(day, 5*day)); ahead < r.end && r.canPlace(k, c, ahead) {
			return r.startPlacement(k, c, ahead, plRespite)
		}
	}
	return r.startPlacement(k, c, startedAt, plRespite)
}

// leave is a child leaving care: most of its grants are revoked in the
// following weeks, and nothing more is planned for it.
func (r *region) leave(k *kid) error {
	k.left = true
	for _, g := range k.grants {
		if g.active && r.chance(leaveRevoke) {
			r.schedule(task{at: r.office(r.now + r.between(day, 30*day)), kind: tRevoke, g: g})
		}
	}
	return nil
}

// ---- grants ----

func (r *region) grant(g *grant) error {
	k, a := g.k, g.a
	switch {
	case k.left || a.closed:
		return nil
	case !a.invited || k.agg.Worker() == "": // not yet: try again in a week
		r.schedule(task{at: r.office(r.now + 7*day), kind: tGrant, g: g})
		return nil
	}
	if err := r.doGrant(g, r.chance(0.3), pick(r, reasonsGrant)); err != nil {
		return err
	}
	r.schedule(task{at: r.office(r.now + r.between(reviewMin, reviewMax)), kind: tReview, g: g})
	return nil
}

func (r *region) doGrant(g *grant, record bool, reason string) error {
	k := g.k
	perms := permsView
	if record {
		perms = permsViewRecord
	}
	var until int64
	if r.chance(timeLimited) {
		until = r.now + r.between(30*day, 180*day)
	}
	by := r.actor(k.agg.Worker())
	terms := domain.GrantTerms{Relationship: string(g.a.rel), Permissions: perms, Reason: reason}
	if until != 0 {
		terms.ExpiresAt = r.time(until)
	}
	evs, err := k.agg.GrantWith(by, g.a.agg, terms, r.time(r.now), r.policy)
	if err != nil {
		return refused("a grant", err)
	}
	c := r.cause(by, reason)
	data, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs)
	if err != nil {
		return err
	}
	g.active, g.record = true, record
	g.until, g.grantedAt, g.grantID, g.grantCorr = until, r.now, data[0].ID, c.CorrelationID
	if until != 0 {
		r.schedule(task{at: until + r.pmDelay(), kind: tExpireGrant, g: g, eff: r.now})
	}
	k.relate(g.a)
	return nil
}

// expireGrant is the process manager's expiry of the time-limited grant
// made at grantedAt (R19): nothing when it was revoked or replaced.
func (r *region) expireGrant(g *grant, grantedAt int64) error {
	k := g.k
	evs, err := k.agg.ExpireGrant(g.a.id, r.time(grantedAt), r.time(r.now))
	if err != nil {
		return refused("a grant expiry", err)
	}
	if len(evs) == 0 {
		return nil
	}
	if g.grantedAt == grantedAt {
		g.active = false
	}
	c := domain.Cause{Actor: domain.System, Reason: reasonGrantRanOut, RecordedAt: r.time(r.now),
		CorrelationID: g.grantCorr, CausationID: g.grantID}
	_, err = r.emitIDs(domain.ChildStream(k.id), k.agg.Version(), c, k.agg.Apply, evs, deadlineIDs(g.grantID, g.until))
	return err
}

// review is a contact review of one grant: revoked, widened or narrowed,
// given again, or (mostly) left as it is.
func (r *region) review(g *grant) error {
	if g.k.left || g.a.closed {
		return nil
	}
	r.schedule(task{at: r.office(r.now + r.between(reviewMin, reviewMax)), kind: tReview, g: g})
	if g.ended(r.now) {
		g.active = false
	}
	x := r.rng.Float64()
	switch {
	case g.active && x < reviewRevoke:
		return r.revoke(g, pick(r, reasonsRevoke))
	case g.active && x < reviewRevoke+reviewChange:
		return r.doGrant(g, !g.record, pick(r, reasonsGrantChange))
	case !g.active && x < reviewRegrant:
		return r.doGrant(g, r.chance(0.3), pick(r, reasonsGrant))
	case g.active && g.until == 0 && r.dueSoon(g) && r.chance(reviewConfirm):
		return r.confirm(g, pick(r, reasonsConfirm))
	}
	return nil
}

// dueSoon reports whether the open-ended grant g is due for review
// (R19) before the next contact review.
func (r *region) dueSoon(g *grant) bool {
	by, ok := g.k.agg.ReviewOf(g.a.id, r.time(g.grantedAt))
	return ok && by.Before(r.time(r.now+reviewMax))
}

// confirm is the worker confirming an open-ended grant at its review
// (R19).
func (r *region) confirm(g *grant, reason string) error {
	k := g.k
	by := r.actor(k.agg.Worker())
	evs, err := k.agg.ReviewGrant(by, g.a.id, reason, r.time(r.now), r.policy)
	if err != nil {
		return refused("a grant review", err)
	}
	_, err = r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, reason), k.agg.Apply, evs)
	return err
}

func (r *region) revoke(g *grant, reason string) error {
	if g.ended(r.now) {
		g.active = false
	}
	if !g.active {
		return nil
	}
	k := g.k
	by := r.actor(k.agg.Worker())
	evs, err := k.agg.Revoke(by, g.a.id, reason, r.time(r.now))
	if err != nil {
		return refused("a revocation", err)
	}
	if _, err := r.emit(domain.ChildStream(k.id), k.agg.Version(), r.cause(by, reason), k.agg.Apply, evs); err != nil {
		return err
	}
	g.active = false
	return nil
}

// ---- words ----

// The reasons the engine writes to the events it decides on its own (as
// commands.ExpireCarerAccess and commands.ExpireInvitation do).
const (
	reasonGraceRanOut      = "grace period ran out"
	reasonStartReached     = "the placement's start came"
	reasonEndReached       = "the placement's end came: the grace period begins"
	reasonInvitationRanOut = "invitation ran out unaccepted"
	reasonGrantRanOut      = "time-limited grant ran out"
)

var (
	permsView       = []string{domain.PermView}
	permsViewRecord = []string{domain.PermView, domain.PermRecord}

	reasonsEndPlacement = []string{"planned move", "placement breakdown", "returned home", "moved to a long-term placement",
		"carer's circumstances changed", "end of emergency placement"}
	reasonsEndGrace = []string{"safeguarding concern", "carer asked to stop", "no outstanding work",
		"child's wishes", "agreed at placement review"}
	reasonsGrant = []string{"contact agreed at review", "parental responsibility", "family network meeting",
		"court order", "agreed with the child's mother", "agreed with the child"}
	reasonsGrantChange = []string{"contact reviewed", "permissions changed at review", "court order varied"}
	reasonsConfirm     = []string{"contact still agreed", "reviewed with the family", "confirmed at review"}
	reasonsRevoke      = []string{"contact suspended", "court order varied", "no longer involved",
		"safeguarding concern", "requested by the family"}
	reasonsLeaveCare   = []string{"case closed", "child returned home", "child adopted", "left care at 18"}
	reasonsPhoneReset  = []string{"lost phone", "new phone number", "phone stolen", "cannot receive codes"}
	reasonsCloseCarer  = []string{"carer deregistered", "carer retired", "moved to another authority"}
	reasonsCloseMember = []string{"requested by the account holder", "no longer involved", "duplicate account",
		"safeguarding concern"}
)
