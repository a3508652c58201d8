package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// Eraser destroys a data subject's key, so that what the log holds of them
// reads as erased (R22). adapters/personaldata's Store is one.
type Eraser interface {
	EraseAccount(ctx context.Context, id uuid.UUID) error
	EraseChild(ctx context.Context, id uuid.UUID) error
}

// errNoEraser: the service was built without an Eraser.
var errNoEraser = errors.New("commands: erasure is not configured (no Eraser)")

// EraseAccount erases an account's personal data (dpo, or the engine when
// retention ends; R22): it records AccountErased, with the reason, and
// then destroys the account's key. Erasing an erased account appends
// nothing and succeeds. Access decisions and history do not change.
func (s *Service) EraseAccount(ctx context.Context, meta Meta, cmd EraseAccount) (Result, error) {
	if s.cfg.Eraser == nil {
		return Result{}, errNoEraser
	}
	res, err := s.accountCommand(ctx, meta, CommandEraseAccount, cmd.AccountID, cmd.Reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			return a.Erase(meta.Actor, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	s.forgetAccount(ctx, cmd.AccountID)
	// After the event: a stop in between is completed by whoever reads
	// the event next (adapters/personaldata).
	if err := s.cfg.Eraser.EraseAccount(ctx, cmd.AccountID); err != nil {
		return Result{}, fmt.Errorf("erase account %s: destroy its key: %w", cmd.AccountID, err)
	}
	return res, nil
}

// EraseChild erases a child's personal data (dpo, or the engine when the
// child's retention date has passed; R22), as EraseAccount does.
func (s *Service) EraseChild(ctx context.Context, meta Meta, cmd EraseChild) (Result, error) {
	if s.cfg.Eraser == nil {
		return Result{}, errNoEraser
	}
	pos, err := s.childCommand(ctx, meta, CommandEraseChild, cmd.ChildID, childTarget(cmd.ChildID), cmd.Reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.Erase(meta.Actor, cmd.Reason, now)
		})
	if err != nil {
		return Result{}, err
	}
	s.forgetChild(ctx, cmd.ChildID)
	if err := s.cfg.Eraser.EraseChild(ctx, cmd.ChildID); err != nil {
		return Result{}, fmt.Errorf("erase child %s: destroy its key: %w", cmd.ChildID, err)
	}
	return Result{Position: pos}, nil
}

// SetRetention sets or moves the date until which a child's record is
// kept (R22): the child's allocated worker, a manager or the dpo, with a
// reason. The process manager erases the child when the date comes.
func (s *Service) SetRetention(ctx context.Context, meta Meta, cmd SetRetention) (Result, error) {
	pos, err := s.childCommand(ctx, meta, CommandSetRetention, cmd.ChildID, childTarget(cmd.ChildID), cmd.Reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			return c.SetRetention(meta.Actor, cmd.RetainUntil, cmd.Reason, now)
		})
	return Result{Position: pos}, err
}

// RetentionReason is the reason recorded when the engine erases a subject
// whose retention ended: the policy that applied.
func RetentionReason(what string) string {
	return "retention ended: " + what + " (R22 retention schedule)"
}

// EraseAccountAtRetention erases a closed account whose retention period
// (the policy's ClosedAccountRetention) has passed: the engine only
// (domain.System), as the dpo would, with the policy as its reason. An
// account not closed or already erased appends nothing; before the period
// ends it fails with domain.ErrNotDue.
func (s *Service) EraseAccountAtRetention(ctx context.Context, meta Meta, cmd EraseAccountAtRetention) (Result, error) {
	if s.cfg.Eraser == nil {
		return Result{}, errNoEraser
	}
	// The retention in force when the account was closed (R25); the
	// account's closure is read first (a closure does not move, and an
	// account not closed appends nothing whatever the period).
	retention, err := s.closedAccountRetention(ctx, cmd.AccountID)
	if err != nil {
		return Result{}, err
	}
	reason := RetentionReason(fmt.Sprintf("closed accounts are kept %d days", int(retention/(24*time.Hour))))
	// erased: the account is erased once the command is done (a replayed
	// request leaves it false: its first run destroyed the key, or the
	// personal-data layer completes that when it reads the event).
	var erased bool
	res, err := s.accountCommand(ctx, meta, CommandRetainAccount, cmd.AccountID, reason,
		func(a *domain.Account, now time.Time) ([]domain.Event, error) {
			events, err := a.EraseAtRetention(meta.Actor, retention, now)
			erased = err == nil && (a.Erased() || len(events) > 0)
			return events, err
		})
	if err != nil || !erased {
		return res, err
	}
	s.forgetAccount(ctx, cmd.AccountID)
	if err := s.cfg.Eraser.EraseAccount(ctx, cmd.AccountID); err != nil {
		return Result{}, fmt.Errorf("erase account %s: destroy its key: %w", cmd.AccountID, err)
	}
	return res, nil
}

// EraseChildAtRetention erases a child whose retention date cmd.Due has
// come: the engine only, as EraseAccountAtRetention. A date that is no
// longer the child's (moved since) or a child already erased appends
// nothing.
func (s *Service) EraseChildAtRetention(ctx context.Context, meta Meta, cmd EraseChildAtRetention) (Result, error) {
	if s.cfg.Eraser == nil {
		return Result{}, errNoEraser
	}
	reason := RetentionReason("the child's record was kept until " + cmd.Due.UTC().Format(time.RFC3339))
	var erased bool // as in EraseAccountAtRetention
	pos, err := s.childCommand(ctx, meta, CommandRetainChild, cmd.ChildID, childTarget(cmd.ChildID), reason,
		func(c *domain.Child, now time.Time) ([]domain.Event, error) {
			events, err := c.EraseAtRetention(meta.Actor, cmd.Due, now)
			erased = err == nil && (c.Erased() || len(events) > 0)
			return events, err
		})
	if err != nil || !erased {
		return Result{Position: pos}, err
	}
	s.forgetChild(ctx, cmd.ChildID)
	if err := s.cfg.Eraser.EraseChild(ctx, cmd.ChildID); err != nil {
		return Result{}, fmt.Errorf("erase child %s: destroy its key: %w", cmd.ChildID, err)
	}
	return Result{Position: pos}, nil
}

// closedAccountRetention is the retention period of closed accounts in
// force when the account was closed (R25), or the current one when it is
// not closed.
func (s *Service) closedAccountRetention(ctx context.Context, id uuid.UUID) (time.Duration, error) {
	a, _, err := s.loadAccount(ctx, id, nil)
	if err != nil {
		return 0, fmt.Errorf("erase account %s at retention: %w", id, err)
	}
	at := a.ClosedAt()
	if at.IsZero() {
		at = s.cfg.Clock()
	}
	p, err := s.PolicyAt(ctx, at)
	if err != nil {
		return 0, err
	}
	return p.Policy.ClosedAccountRetention, nil
}

// ErasureFeed is the log as ForgetErased follows it.
type ErasureFeed interface {
	Head(ctx context.Context) (eventlog.Position, error)
	Subscribe(ctx context.Context, after eventlog.Position, handle func(context.Context, eventlog.Record) error) error
}

// forgetRetry is how long ForgetErased waits before it follows the log
// again after a failure.
const forgetRetry = time.Second

// ForgetErased follows log from its head until ctx ends and drops the
// kept state (children's and accounts', which holds personal data) of
// every child and account whose erasure it reads, appended by this
// replica or by any other: the erase commands drop only their own
// replica's, and a replica that kept an aggregate's state before another
// erased it would otherwise hold it until it loaded the aggregate again.
// Whenever it starts following (again, after a failure of the log, which
// it logs), it first forgets every kept state, so no erasure is missed
// between two subscriptions. It returns nil when ctx ends. Every replica
// that serves commands runs it (accessd serve). After a start from a
// kept-state snapshot (LoadKeptSnapshot) its first following starts where
// the snapshot may have missed an erasure and keeps the restored state.
func (s *Service) ForgetErased(ctx context.Context, log ErasureFeed) error {
	for {
		err := s.followErasures(ctx, log)
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Logger.WarnContext(ctx, "commands: following the log for erasures failed; the kept state is forgotten, following again",
			slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(forgetRetry):
		}
	}
}

func (s *Service) followErasures(ctx context.Context, log ErasureFeed) error {
	// After a start from a kept-state snapshot, the first following
	// starts where the snapshot may have missed an erasure, and keeps
	// the restored state; every other starts at the head, with nothing
	// kept.
	from, resume := s.follow.start()
	if !resume {
		head, err := log.Head(ctx)
		if err != nil {
			return err
		}
		s.children.clear()
		s.accounts.clear()
		from = head
	}
	s.follow.seen(from)
	return log.Subscribe(ctx, from, func(ctx context.Context, rec eventlog.Record) error {
		defer s.follow.seen(rec.Position)
		if rec.Type != domain.TypeAccountErased && rec.Type != domain.TypeChildErased {
			return nil
		}
		env, err := domain.DecodeRecord(rec)
		if err != nil {
			return fmt.Errorf("decode %s at %s: %w", rec.Type, rec.Position, err)
		}
		switch e := env.Event.(type) {
		case *domain.AccountErased:
			s.forgetAccount(ctx, e.AccountID)
		case *domain.ChildErased:
			s.forgetChild(ctx, e.ChildID)
		}
		return nil
	})
}

// erasureFollow is ForgetErased's progress: whether it has started, the
// position up to which every erasure it read was dropped, and where its
// first following resumes after a start from a kept-state snapshot.
type erasureFollow struct {
	mu        sync.Mutex
	started   bool
	followed  eventlog.Position
	resume    eventlog.Position
	hasResume bool
}

// start marks the following started and returns where it resumes, if
// it does (once).
func (f *erasureFollow) start() (eventlog.Position, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = true
	from, ok := f.resume, f.hasResume
	f.hasResume = false
	return from, ok
}

// seen records that every erasure up to p was dropped.
func (f *erasureFollow) seen(p eventlog.Position) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.followed = p
}

// followedErasures is the position up to which ForgetErased has dropped
// every erasure (Start when it does not run).
func (s *Service) followedErasures() eventlog.Position {
	s.follow.mu.Lock()
	defer s.follow.mu.Unlock()
	return s.follow.followed
}

// following reports whether ForgetErased has started.
func (s *Service) following() bool {
	s.follow.mu.Lock()
	defer s.follow.mu.Unlock()
	return s.follow.started
}

// resumeErasuresAt makes ForgetErased's first following start after p.
func (s *Service) resumeErasuresAt(p eventlog.Position) {
	s.follow.mu.Lock()
	defer s.follow.mu.Unlock()
	s.follow.resume, s.follow.hasResume = p, true
}
