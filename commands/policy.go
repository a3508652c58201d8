package commands

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// The policy as events (R25). The policy stream (domain.PolicyStream) holds
// every policy recorded; the decisions read it from the store, so that every
// replica decides with the same policy and a change made on one replica
// holds on the others from the next command on. Config.Policy is only the
// initial policy: what RecordInitialPolicy records when the stream is
// empty, and what decisions use until a policy is recorded.

// CommandSetPolicy is the security log's name of SetPolicy (and of the
// initial policy's recording).
const CommandSetPolicy = "set_policy"

// InitialPolicyReason is the reason of the initial policy's event.
const InitialPolicyReason = "initial policy from start-up flags"

// policyTarget is the security log's target of the policy commands.
const policyTarget = "policy"

// SetPolicy is PUT /v1/policy: some of the policy's settings, and an
// optional reason.
type SetPolicy struct {
	Change domain.PolicyChange
	Reason string
}

// policyCache is the fold of the policy stream as last read. The history
// it holds is never changed once published: a refresh publishes a new one.
type policyCache struct {
	mu sync.Mutex
	h  *domain.PolicyHistory
}

// policies returns the policy stream's fold, brought up to date with the
// store: every call reads the stream from the cached version on (one small
// read when nothing changed), so a decision never uses a policy older than
// the newest one recorded when it asked. The answer is shared: read only.
func (s *Service) policies(ctx context.Context) (*domain.PolicyHistory, error) {
	s.pol.mu.Lock()
	h := s.pol.h
	s.pol.mu.Unlock()
	var next *domain.PolicyHistory
	for {
		from := h.Version() + 1
		if next != nil {
			from = next.Version() + 1
		}
		recs, err := s.store.ReadStream(ctx, domain.PolicyStream, from, readPage)
		if err != nil {
			return nil, fmt.Errorf("read the policy: %w", err)
		}
		for _, r := range recs {
			if next == nil {
				next = h.Clone()
			}
			if r.Version != next.Version()+1 {
				return nil, fmt.Errorf("%w: stream %q: version %d after %d", errCorruptStream, domain.PolicyStream, r.Version, next.Version())
			}
			env, err := domain.DecodeRecord(r)
			if err != nil {
				return nil, fmt.Errorf("%w: stream %q: %v", errCorruptStream, domain.PolicyStream, err)
			}
			if err := next.Apply(env); err != nil {
				return nil, fmt.Errorf("%w: stream %q: %v", errCorruptStream, domain.PolicyStream, err)
			}
		}
		if len(recs) < readPage {
			break
		}
	}
	if next == nil {
		return h, nil
	}
	s.pol.mu.Lock()
	if s.pol.h.Version() < next.Version() {
		s.pol.h = next
	}
	s.pol.mu.Unlock()
	return next, nil
}

// PolicyAt returns the policy in force at t, as recorded now (R25), with
// the event that set it; the initial policy, unrecorded, while none is.
func (s *Service) PolicyAt(ctx context.Context, t time.Time) (domain.PolicyRecord, error) {
	h, err := s.policies(ctx)
	if err != nil {
		return domain.PolicyRecord{}, err
	}
	return h.PolicyAt(t), nil
}

// CurrentPolicy returns the newest recorded policy, with the event that
// set it; the initial policy, unrecorded, while none is.
func (s *Service) CurrentPolicy(ctx context.Context) (domain.PolicyRecord, error) {
	h, err := s.policies(ctx)
	if err != nil {
		return domain.PolicyRecord{}, err
	}
	return h.Current(), nil
}

// SetPolicy changes the policy (a manager only, R25): the current policy
// with cmd's settings, in force from now. Bad values are refused
// (domain.ErrInvalid) and append nothing; a change that changes nothing
// appends nothing and answers the position of the policy in force.
func (s *Service) SetPolicy(ctx context.Context, meta Meta, cmd SetPolicy) (Result, error) {
	res, _, err := s.setPolicy(ctx, meta, cmd)
	return res, err
}

// RecordInitialPolicy records Config.Policy as the first policy when the
// policy stream is empty (the engine, domain.System, with
// InitialPolicyReason), and returns the policy in force with whether this
// call recorded it. When another replica records its own first (the
// append conflicts), the retry finds it and records nothing.
func (s *Service) RecordInitialPolicy(ctx context.Context) (domain.PolicyRecord, bool, error) {
	_, recorded, err := s.setPolicy(ctx, Meta{Actor: domain.System}, SetPolicy{Reason: InitialPolicyReason})
	if err != nil {
		return domain.PolicyRecord{}, false, err
	}
	cur, err := s.CurrentPolicy(ctx)
	return cur, recorded, err
}

// setPolicy runs SetPolicy as meta.Actor and reports whether it appended.
// The engine (System) only records the initial policy: once one is
// recorded it appends nothing.
func (s *Service) setPolicy(ctx context.Context, meta Meta, cmd SetPolicy) (Result, bool, error) {
	d := s.ids(meta, CommandSetPolicy, policyTarget)
	var (
		pos      eventlog.Position
		appended bool
	)
	err := s.execute(ctx, &meta, CommandSetPolicy, policyTarget, func(ctx context.Context, now time.Time) error {
		appended = false
		// The load finds a retried request's events; the fold (which
		// needs the envelopes' positions and actors) is the cache's, read
		// after it, so never older.
		l, err := s.load(ctx, domain.PolicyStream, func(domain.Event) error { return nil }, d.watch(mainEvents))
		if err != nil {
			return err
		}
		if envs, ok := l.replay(d, mainEvents); ok {
			pos = lastPosition(envs)
			return nil
		}
		h, events, err := s.decidePolicy(ctx, meta, cmd, l, d, now)
		if err != nil {
			return err
		}
		l.version, l.last = h.Version(), h.Current().Position
		var res eventlog.AppendResult
		if res, appended, err = s.appendTo(ctx, l, cause(meta, cmd.Reason, now), d, mainEvents, events); err != nil {
			return err
		}
		pos = l.last
		if appended {
			pos = res.Position
		}
		return nil
	})
	if err != nil {
		return Result{}, false, err
	}
	return Result{Position: pos}, appended, nil
}

// decidePolicy decides cmd on the policy stream as loaded (l) at now and
// returns the fold it decided on. A manager's change on a stream with no
// policy recorded first records the initial policy (the engine's, as
// RecordInitialPolicy would), so that the times before the change keep it.
func (s *Service) decidePolicy(ctx context.Context, meta Meta, cmd SetPolicy, l loaded, d *ids, now time.Time) (*domain.PolicyHistory, []domain.Event, error) {
	for {
		h, err := s.policies(ctx)
		if err != nil {
			return nil, nil, err
		}
		if h.Version() < l.version {
			return nil, nil, fmt.Errorf("policy stream at version %d, read %d: %w", l.version, h.Version(), eventlog.ErrConflict)
		}
		if meta.Actor.Role == domain.RoleSystem && h.Version() > 0 {
			return h, nil, nil // the initial policy is recorded already
		}
		events, err := h.SetPolicy(meta.Actor, cmd.Change, cmd.Reason, now)
		if err != nil || len(events) == 0 || meta.Actor.Role == domain.RoleSystem || h.Version() > 0 {
			return h, events, err
		}
		initial, err := h.SetPolicy(domain.System, domain.PolicyChange{}, InitialPolicyReason, now)
		if err != nil {
			return nil, nil, err
		}
		l.version = h.Version()
		sys := Meta{Actor: domain.System, CorrelationID: meta.CorrelationID, CausationID: meta.CausationID}
		if _, _, err := s.appendTo(ctx, l, cause(sys, InitialPolicyReason, now), d, "initial", initial); err != nil {
			return nil, nil, err
		}
		l.version++ // and decide again on the recorded initial policy
	}
}
