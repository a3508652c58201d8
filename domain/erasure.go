package domain

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Erasure of a data subject (R22). The data protection officer (or the
// engine, when a retention period ends) erases an account or a child: the
// erasure event carries no personal data, and the subject's key is
// destroyed with it (adapters/personaldata), so that every personal value
// recorded of the subject reads as ErasedText from then on. Ids and times
// stay: access decisions and history are unchanged by an erasure.
// Nothing personal can be recorded of an erased subject again: the
// commands that would are refused with ErrErased.

// AccountErased: the account's personal data was erased at ErasedAt.
type AccountErased struct {
	AccountID uuid.UUID `json:"account_id"`
	ErasedAt  time.Time `json:"erased_at"`
}

func (*AccountErased) EventType() string        { return TypeAccountErased }
func (e *AccountErased) EffectiveAt() time.Time { return e.ErasedAt }
func (e *AccountErased) validate() error {
	return firstErr(needID("account_id", e.AccountID), checkEventTime("erased_at", e.ErasedAt))
}

// ChildErased: the child's personal data was erased at ErasedAt.
type ChildErased struct {
	ChildID  uuid.UUID `json:"child_id"`
	ErasedAt time.Time `json:"erased_at"`
}

func (*ChildErased) EventType() string        { return TypeChildErased }
func (e *ChildErased) EffectiveAt() time.Time { return e.ErasedAt }
func (e *ChildErased) validate() error {
	return firstErr(needID("child_id", e.ChildID), checkEventTime("erased_at", e.ErasedAt))
}

// Erased reports whether the account's personal data was erased.
func (a *Account) Erased() bool { return !a.erasedAt.IsZero() }

// ErasedAt is when the account was erased (zero: not erased).
func (a *Account) ErasedAt() time.Time { return a.erasedAt }

// Erased reports whether the child's personal data was erased.
func (c *Child) Erased() bool { return !c.erasedAt.IsZero() }

// ErasedAt is when the child was erased (zero: not erased).
func (c *Child) ErasedAt() time.Time { return c.erasedAt }

// allowEraser admits the data protection officer, and the engine itself
// (retention).
func allowEraser(by Actor, what string) error {
	if by.Role == RoleSystem {
		return nil
	}
	if err := allowRoles(by, RoleDPO); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Erase erases the account's personal data (R22), with a reason. An
// account already erased is erased once: no event.
func (a *Account) Erase(by Actor, reason string, now time.Time) ([]Event, error) {
	const what = "erase account"
	if err := allowEraser(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if !a.exists {
		return nil, fmt.Errorf("%s: %w", what, ErrAccountNotFound)
	}
	if a.Erased() {
		return nil, nil
	}
	return []Event{&AccountErased{AccountID: a.id, ErasedAt: normTime(now)}}, nil
}

// Erase erases the child's personal data (R22), with a reason. A child
// already erased is erased once: no event.
func (c *Child) Erase(by Actor, reason string, now time.Time) ([]Event, error) {
	const what = "erase child"
	if err := allowEraser(by, what); err != nil {
		return nil, err
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if !c.registered {
		return nil, fmt.Errorf("%s %s: %w", what, c.id, ErrChildNotFound)
	}
	if c.Erased() {
		return nil, nil
	}
	return []Event{&ChildErased{ChildID: c.id, ErasedAt: normTime(now)}}, nil
}
