package domain_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
)

// generatedStreams returns the events of every child and account stream
// of datagen.Small (seed 1), in stream order, by stream.
func generatedStreams(t *testing.T) map[string][]domain.Event {
	t.Helper()
	streams := map[string][]domain.Event{}
	_, err := datagen.Generate(context.Background(), datagen.Small, datagen.SinkFunc(func(_ context.Context, batch []datagen.Append) error {
		for _, a := range batch {
			if !strings.HasPrefix(a.Stream, domain.ChildStreamPrefix) && !strings.HasPrefix(a.Stream, domain.AccountStreamPrefix) {
				continue
			}
			base, _ := a.Expected.Version()
			for i, e := range a.Events {
				env, err := domain.DecodeRecord(eventlog.Record{ID: e.ID, Stream: a.Stream, Version: base + uint64(i) + 1,
					Type: e.Type, Data: e.Data, Meta: e.Meta})
				if err != nil {
					return err
				}
				streams[a.Stream] = append(streams[a.Stream], env.Event)
			}
		}
		return nil
	}), datagen.Options{Seed: 1})
	require.NoError(t, err)
	return streams
}

// viaGob returns v after a round trip through encoding/gob, as the
// command side's snapshot file holds it.
func viaGob[T any](t *testing.T, v T) T {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, gob.NewEncoder(&buf).Encode(v))
	var out T
	require.NoError(t, gob.NewDecoder(&buf).Decode(&out))
	return out
}

// outcome is a decision's events and error, comparable.
func outcome(events []domain.Event, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%#v", eventsString(events))
}

func eventsString(events []domain.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = fmt.Sprintf("%s %+v", e.EventType(), e)
	}
	return out
}

// childDecisions runs a set of the child's decisions (every placement's
// and grant's, and the child's own) and returns their outcomes.
func childDecisions(c *domain.Child, carer *domain.Account, now time.Time) []string {
	worker := domain.Actor{ID: c.Worker(), Role: domain.RoleWorker}
	manager := domain.Actor{ID: "manager-1", Role: domain.RoleManager}
	pol := domain.DefaultPolicy
	out := []string{
		outcome(c.AllocateWorker(manager, "worker-new", now)),
		outcome(c.Register(manager, "C-REF", time.Time{}, now)),
		outcome(c.StartPlacement(worker, uuid.NewSHA1(uuid.Nil, []byte("p")), carer, now, now)),
		outcome(c.GrantWith(worker, carer, domain.GrantTerms{Relationship: string(domain.RelNetworkMember),
			Permissions: []string{"view"}, Reason: "r"}, now, pol)),
		outcome(c.Erase(manager, "r", now)),
		outcome(c.SetRetention(manager, now.AddDate(1, 0, 0), "r", now)),
		c.Reference(),
	}
	for _, p := range c.Placements() {
		out = append(out,
			outcome(c.EndPlacement(worker, p.ID, now, now, pol)),
			outcome(c.EndGraceEarly(worker, p.ID, "r", now)),
			outcome(c.ExpireCarerAccess(p.ID, now)),
			outcome(c.CancelPlacement(worker, p.ID, "r", now)),
			outcome(c.MarkStartReached(p.ID, now)),
			outcome(c.MarkEndReached(p.ID, now)))
	}
	for _, g := range c.Grants() {
		out = append(out,
			outcome(c.Revoke(worker, g.AccountID, "r", now)),
			outcome(c.ReviewGrant(worker, g.AccountID, "r", now, pol)))
		for _, iv := range g.Intervals {
			out = append(out, outcome(c.ExpireGrant(g.AccountID, iv.From, now)))
		}
	}
	return out
}

func accountDecisions(a *domain.Account, now time.Time) []string {
	self := domain.Actor{ID: a.ID().String(), Role: domain.RoleService}
	team := domain.Actor{ID: "portals-1", Role: domain.RolePortalsTeam}
	pol := domain.DefaultPolicy
	return []string{
		outcome(a.Invite(team, "new@example.org", string(domain.KindFosterCarer), now, pol)),
		outcome(a.ExpireInvitation(now)),
		outcome(a.CancelInvitation(team, "r", now)),
		outcome(a.Activate(self, "subject-x", a.Email(), now)),
		outcome(a.Close(team, "r", now)),
		outcome(a.RequestPhoneReset(team, "r", now)),
		outcome(a.ClearPhone(self, now)),
		outcome(a.EnrolPhone(self, "+447700900123", now)),
		outcome(a.Reopen(team, "r", now)),
		outcome(a.RequestEmailChange(team, "other@example.org", "r", now)),
		outcome(a.ChangeEmail(self, a.PendingEmail(), now)),
		outcome(a.Erase(team, "r", now)),
		outcome(a.EraseAtRetention(domain.System, time.Hour, now)),
		a.Email() + "|" + a.IdentitySubject() + "|" + a.PhoneHint() + "|" + a.PendingEmail(),
	}
}

// TestWholeStateRestoresExactly: for every child and account of a
// generated history (datagen.Small), the aggregate restored from its whole
// state (directly and through gob, as the command side's snapshot keeps
// it) is the original (deep equal, personal fields included), decides
// every command as the original does, and, restored halfway through its
// stream, folds the rest to the aggregate folded from the whole stream.
func TestWholeStateRestoresExactly(t *testing.T) {
	streams := generatedStreams(t)
	now := time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)
	carer := domain.NewAccount(uuid.New())
	var children, accounts int
	for stream, events := range streams {
		switch {
		case strings.HasPrefix(stream, domain.ChildStreamPrefix):
			children++
			id := uuid.MustParse(strings.TrimPrefix(stream, domain.ChildStreamPrefix))
			orig, half := domain.NewChild(id), domain.NewChild(id)
			for i, e := range events {
				require.NoError(t, orig.Apply(e))
				if i == len(events)/2 {
					half = domain.RestoreWholeChild(viaGob(t, orig.WholeState()))
				} else if i > len(events)/2 {
					require.NoError(t, half.Apply(e))
				}
			}
			for _, restored := range []*domain.Child{domain.RestoreWholeChild(orig.WholeState()),
				domain.RestoreWholeChild(viaGob(t, orig.WholeState())), half} {
				require.Equal(t, orig.Clone(), restored.Clone(), stream)
				require.Equal(t, childDecisions(orig, carer, now), childDecisions(restored, carer, now), stream)
			}
			require.NotEmpty(t, orig.WholeState().Reference, "the whole state holds the reference")
		case strings.HasPrefix(stream, domain.AccountStreamPrefix):
			accounts++
			id := uuid.MustParse(strings.TrimPrefix(stream, domain.AccountStreamPrefix))
			orig, half := domain.NewAccount(id), domain.NewAccount(id)
			for i, e := range events {
				require.NoError(t, orig.Apply(e))
				if i == len(events)/2 {
					half = domain.RestoreWholeAccount(viaGob(t, orig.WholeState()))
				} else if i > len(events)/2 {
					require.NoError(t, half.Apply(e))
				}
			}
			for _, restored := range []*domain.Account{domain.RestoreWholeAccount(orig.WholeState()),
				domain.RestoreWholeAccount(viaGob(t, orig.WholeState())), half} {
				require.Equal(t, orig.Clone(), restored.Clone(), stream)
				require.Equal(t, accountDecisions(orig, now), accountDecisions(restored, now), stream)
			}
		}
	}
	require.Greater(t, children, 50)
	require.Greater(t, accounts, 50)
}
