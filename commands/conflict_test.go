package commands_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
)

// TestConflictRetries: injected concurrency conflicts are retried, each
// time reloading and re-deciding, up to MaxRetries; one more fails with
// ErrConflictRetries (and eventlog.ErrConflict), code conflict, nothing
// appended and no refusal recorded.
func TestConflictRetries(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int // 0: the default
		conflicts  int64
		wantErr    bool
	}{
		{"no conflict", 0, 0, false},
		{"three conflicts, default five retries", 0, 3, false},
		{"exactly the default", 0, commands.DefaultMaxRetries, false},
		{"one more than the default", 0, commands.DefaultMaxRetries + 1, true},
		{"one retry allowed, one conflict", 1, 1, false},
		{"one retry allowed, two conflicts", 1, 2, true},
		{"many", 2, 50, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cs *conflictStore
			e := newEnv(t, memory, withMaxRetries(tt.maxRetries), withStore(func(s commands.Store) commands.Store {
				cs = &conflictStore{Store: s}
				return cs
			}))
			w := e.worker()
			child, parent := e.child(t, w), e.active(t, domain.KindParent)
			before, appends := e.head(t), cs.appends.Load()
			cs.conflicts.Store(tt.conflicts)

			r, err := e.svc.Grant(context.Background(), as(w), commands.Grant{ChildID: child, AccountID: parent.id,
				Relationship: "parent", Permissions: []string{"view"}, Reason: "review"})
			retries := tt.maxRetries
			if retries == 0 {
				retries = commands.DefaultMaxRetries
			}
			if tt.wantErr {
				require.ErrorIs(t, err, commands.ErrConflictRetries)
				require.ErrorIs(t, err, eventlog.ErrConflict)
				require.Equal(t, "conflict", commands.Code(err))
				require.Equal(t, fmt.Sprintf("grant on child/%s/grant/%s: the record kept changing (%d attempts); try again", child, parent.id, retries+1), err.Error(),
					"the message shown to callers names no store details")
				require.Equal(t, domain.KindInternal, domain.KindOf(err), "not a domain refusal")
				require.Equal(t, int64(retries+1), cs.appends.Load()-appends, "1 attempt + MaxRetries retries")
				require.Equal(t, before, e.head(t))
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.conflicts+1, cs.appends.Load()-appends)
				got := e.since(t, before)
				require.Equal(t, []string{domain.TypeAccessGranted}, types(got), "one grant, whatever the retries")
				require.Equal(t, got[0].Position, r.Position)
			}
			require.Empty(t, e.refusals.All())
		})
	}
}

// streamConflicts injects conflicts into the appends to streams with a
// prefix only.
type streamConflicts struct {
	commands.Store
	prefix string
	left   int
	mu     sync.Mutex
}

func (s *streamConflicts) Append(ctx context.Context, stream string, expected eventlog.ExpectedVersion, events []eventlog.EventData) (eventlog.AppendResult, error) {
	s.mu.Lock()
	inject := strings.HasPrefix(stream, s.prefix) && s.left > 0
	if inject {
		s.left--
	}
	s.mu.Unlock()
	if inject {
		return eventlog.AppendResult{}, &eventlog.ConflictError{Stream: stream, Expected: expected}
	}
	return s.Store.Append(ctx, stream, expected, events)
}

// TestActivateConflictAfterLink: when the activation conflicts after the
// identity was linked, the retry finds the link made and completes: one
// link, one activation.
func TestActivateConflictAfterLink(t *testing.T) {
	var sc *streamConflicts
	e := newEnv(t, memory, withStore(func(s commands.Store) commands.Store {
		sc = &streamConflicts{Store: s, prefix: domain.AccountStreamPrefix}
		return sc
	}))
	a := e.invited(t, domain.KindParent)
	sc.mu.Lock()
	sc.left = 2
	sc.mu.Unlock()
	before := e.head(t)
	r, err := e.svc.Activate(context.Background(), as(e.actor(domain.RoleService)),
		commands.Activate{AccountID: a.id, IdentitySubject: a.subject, Email: a.email})
	require.NoError(t, err)
	require.Equal(t, []string{domain.TypeIdentityLinked, domain.TypeAccountActivated}, types(e.since(t, before)))
	require.Equal(t, e.head(t), r.Position)
}

// TestConcurrentGrantsAndRevokes races 8 goroutines granting and revoking
// on one child on the real store: every command ends in success or a clean
// conflict error (ErrConflictRetries), and the stream is consistent: dense
// versions, it loads, and it holds exactly the grants and revokes that
// succeeded.
func TestConcurrentGrantsAndRevokes(t *testing.T) {
	const goroutines, rounds = 8, 3
	ctx := context.Background()
	forEachBackend(t, func(t *testing.T, url string) {
		e := newEnv(t, url)
		w := e.worker()
		child := e.child(t, w)
		accts := make([]account, goroutines)
		for i := range accts {
			accts[i] = e.invited(t, domain.KindNetworkMember)
		}

		type outcome struct{ grants, revokes, conflicts int }
		outcomes := make([]outcome, goroutines)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				o := &outcomes[i]
				check := func(err error) bool {
					if err == nil {
						return true
					}
					if !errors.Is(err, commands.ErrConflictRetries) || !errors.Is(err, eventlog.ErrConflict) || commands.Code(err) != "conflict" {
						t.Errorf("goroutine %d: not a clean conflict: %v", i, err)
					}
					o.conflicts++
					return false
				}
				// Each grant differs from the last one that succeeded, so
				// that it replaces it even when its revoke gave up.
				withRecord := false
				for r := range rounds {
					perms := []string{"view"}
					if withRecord {
						perms = append(perms, "record")
					}
					_, err := e.svc.Grant(ctx, as(w), commands.Grant{ChildID: child, AccountID: accts[i].id,
						Relationship: "network_member", Permissions: perms, Reason: fmt.Sprintf("round %d", r)})
					if !check(err) {
						continue
					}
					o.grants++
					withRecord = !withRecord
					_, err = e.svc.Revoke(ctx, as(w), commands.Revoke{ChildID: child, AccountID: accts[i].id, Reason: "done"})
					if check(err) {
						o.revokes++
					}
				}
			}()
		}
		close(start)
		wg.Wait()

		require.Empty(t, e.refusals.All(), "no command was refused by the domain")
		recs, err := e.store.ReadStream(ctx, domain.ChildStream(child), 1, 0)
		require.NoError(t, err)
		c := domain.NewChild(child)
		granted, revoked := map[uuid.UUID]int{}, map[uuid.UUID]int{}
		for i, r := range recs {
			require.Equal(t, uint64(i+1), r.Version, "dense versions")
			env, err := domain.DecodeRecord(r)
			require.NoError(t, err)
			require.NoError(t, c.Apply(env.Event))
			switch ev := env.Event.(type) {
			case *domain.AccessGranted:
				granted[ev.AccountID]++
			case *domain.AccessRevoked:
				revoked[ev.AccountID]++
			}
		}
		total, conflicts := 0, 0
		for i, o := range outcomes {
			id := accts[i].id
			require.Equal(t, o.grants, granted[id], "goroutine %d: grants appended = grants answered", i)
			require.Equal(t, o.revokes, revoked[id], "goroutine %d: revokes appended = revokes answered", i)
			if o.grants == o.revokes {
				facts := c.GrantFacts(id)
				if len(facts) > 0 {
					require.False(t, facts[len(facts)-1].To.IsZero(), "goroutine %d: its last grant is revoked", i)
				}
			}
			total += o.grants + o.revokes
			conflicts += o.conflicts
		}
		require.Equal(t, 1+total, len(recs), "registration + every successful command, nothing else")
		require.Positive(t, total)
		t.Logf("%d commands succeeded, %d gave up after retries", total, conflicts)
	})
}
