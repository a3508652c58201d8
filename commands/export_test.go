package commands

import (
	"github.com/google/uuid"

	"github.com/accessledger/accessledger/domain"
)

// KeptAccount returns a copy of the account state s keeps between
// commands (for tests), or false when it keeps none.
func (s *Service) KeptAccount(id uuid.UUID) (*domain.Account, bool) {
	a, _, ok := s.accounts.get(id, nil)
	return a, ok
}

// KeptChild returns a copy of the child state s keeps between commands
// (for tests), or false when it keeps none.
func (s *Service) KeptChild(id uuid.UUID) (*domain.Child, bool) {
	c, _, ok := s.children.get(id, nil)
	return c, ok
}
