package datagen_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/internal/datagen"
)

var discard = datagen.SinkFunc(func(context.Context, []datagen.Append) error { return nil })

// hashSink hashes every append it is given, field by field, and counts
// the appends and events.
type hashSink struct {
	h       hash.Hash
	appends int
	events  int
}

func newHashSink() *hashSink { return &hashSink{h: sha256.New()} }

func (s *hashSink) Write(_ context.Context, batch []datagen.Append) error {
	str := func(v string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		s.h.Write(n[:])
		s.h.Write([]byte(v))
	}
	for _, a := range batch {
		str(a.Stream)
		str(a.Expected.String())
		for _, e := range a.Events {
			s.h.Write(e.ID[:])
			str(e.Type)
			str(string(e.Data))
			m := e.Meta
			str(m.ActorID)
			str(m.ActorRole)
			str(m.Reason)
			str(m.EffectiveAt.Format(time.RFC3339Nano))
			str(m.RecordedAt.Format(time.RFC3339Nano))
			s.h.Write(m.CorrelationID[:])
			s.h.Write(m.CausationID[:])
			s.events++
		}
		s.appends++
	}
	return nil
}

func (s *hashSink) sum() string { return fmt.Sprintf("%x", s.h.Sum(nil)) }

func generate(t testing.TB, sc datagen.Scale, sink datagen.Sink, opt datagen.Options) datagen.Summary {
	t.Helper()
	sum, err := datagen.Generate(context.Background(), sc, sink, opt)
	require.NoError(t, err)
	return sum
}

func TestScaleByName(t *testing.T) {
	for _, want := range []datagen.Scale{datagen.County, datagen.Nation, datagen.Small} {
		got, err := datagen.ScaleByName(want.Name)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.NoError(t, got.Validate())
	}
	_, err := datagen.ScaleByName("planet")
	require.ErrorIs(t, err, datagen.ErrUnknownScale)

	bad := datagen.Small
	bad.Regions, bad.Carers, bad.Years = 3, 2, 0
	err = bad.Validate()
	require.ErrorContains(t, err, "carers 2")
	require.ErrorContains(t, err, "years 0")
	_, err = datagen.Generate(t.Context(), bad, discard, datagen.Options{})
	require.Error(t, err)
}

// TestNationIsFiftyCounties: the nation's totals split into regions of
// exactly a county's size, so per-region figures carry over.
func TestNationIsFiftyCounties(t *testing.T) {
	n, c := datagen.Nation, datagen.County
	require.Equal(t, n.Regions*c.Children, n.Children)
	require.Equal(t, n.Regions*c.Carers, n.Carers)
	require.Equal(t, n.Regions*c.Members, n.Members)
	require.Equal(t, c.Years, n.Years)
}

// TestDeterministic: a scale and seed give the same stream of appends,
// byte for byte, whatever the batch size; another seed gives another.
func TestDeterministic(t *testing.T) {
	sc := datagen.Small
	sc.Regions, sc.Children, sc.Carers, sc.Members = 2, 120, 36, 240

	a, b, c := newHashSink(), newHashSink(), newHashSink()
	sumA := generate(t, sc, a, datagen.Options{Seed: 42})
	sumB := generate(t, sc, b, datagen.Options{Seed: 42, BatchAppends: 37})
	sumC := generate(t, sc, c, datagen.Options{Seed: 43})

	require.Equal(t, a.sum(), b.sum(), "same scale and seed, same stream")
	require.Equal(t, sumA, sumB, "and the same summary")
	require.NotEqual(t, a.sum(), c.sum(), "another seed, another stream")
	require.NotEqual(t, sumA.Samples, sumC.Samples)

	require.Equal(t, int64(a.events), sumA.Events)
	require.Equal(t, int64(a.appends), sumA.Appends)
	require.Equal(t, sc.Children, sumA.Children)
	require.Equal(t, sc.Carers+sc.Members, sumA.Accounts)
}

// TestBatches: batches hold BatchAppends appends (the last one fewer),
// Progress counts the events the sink took.
func TestBatches(t *testing.T) {
	var sizes []int
	var progress []int64
	sum := generate(t, datagen.Small, datagen.SinkFunc(func(_ context.Context, b []datagen.Append) error {
		sizes = append(sizes, len(b))
		return nil
	}), datagen.Options{Seed: 1, BatchAppends: 64, Progress: func(n int64) { progress = append(progress, n) }})
	require.NotEmpty(t, sizes)
	for _, n := range sizes[:len(sizes)-1] {
		require.Equal(t, 64, n)
	}
	require.LessOrEqual(t, sizes[len(sizes)-1], 64)
	require.Len(t, progress, len(sizes))
	require.Equal(t, sum.Events, progress[len(progress)-1])
}

func TestSinkErrorStopsGeneration(t *testing.T) {
	boom := errors.New("disk full")
	calls := 0
	_, err := datagen.Generate(t.Context(), datagen.Small, datagen.SinkFunc(func(context.Context, []datagen.Append) error {
		calls++
		if calls == 3 {
			return boom
		}
		return nil
	}), datagen.Options{Seed: 1, BatchAppends: 10})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 3, calls, "no batch after the failing one")
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	_, err := datagen.Generate(ctx, datagen.Small, datagen.SinkFunc(func(context.Context, []datagen.Append) error {
		if calls++; calls == 2 {
			cancel()
		}
		return nil
	}), datagen.Options{Seed: 1, BatchAppends: 10})
	require.ErrorIs(t, err, context.Canceled)
}

// collect keeps every append of a generation.
func collect(t testing.TB, sc datagen.Scale, seed uint64) ([]datagen.Append, datagen.Summary) {
	t.Helper()
	var all []datagen.Append
	sum := generate(t, sc, datagen.SinkFunc(func(_ context.Context, b []datagen.Append) error {
		all = append(all, b...)
		return nil
	}), datagen.Options{Seed: seed})
	return all, sum
}

// TestStreamIsWhatTheCommandPathWrites checks, over the whole stream of a
// few small histories, what the command path guarantees of every event:
// it decodes, its payload's effective time is its metadata's, it has an
// actor, a role allowed to decide it, a reason and a correlation id; every
// append expects its stream's version; the process manager's expiries
// name the event that set their deadline as causation, with its
// correlation; recorded times never go back; the summary counts it all.
func TestStreamIsWhatTheCommandPathWrites(t *testing.T) {
	roles := map[string][]domain.Role{
		domain.TypeChildRegistered:     {domain.RoleWorker, domain.RoleManager},
		domain.TypeWorkerAllocated:     {domain.RoleManager},
		domain.TypePlacementStarted:    {domain.RoleWorker},
		domain.TypePlacementEnded:      {domain.RoleWorker},
		domain.TypeGraceEndedEarly:     {domain.RoleWorker},
		domain.TypeGraceExpired:        {domain.RoleSystem, domain.RoleWorker},
		domain.TypeAccessGranted:       {domain.RoleWorker},
		domain.TypeAccessRevoked:       {domain.RoleWorker},
		domain.TypeAccountInvited:      {domain.RoleWorker},
		domain.TypeInvitationExpired:   {domain.RoleSystem},
		domain.TypeAccountActivated:    {domain.RoleService},
		domain.TypeAccountClosed:       {domain.RolePortalsTeam},
		domain.TypePhoneResetRequested: {domain.RoleWorker},
		domain.TypePhoneCleared:        {domain.RolePortalsTeam},
		domain.TypePhoneEnrolled:       {domain.RoleService},
		domain.TypeIdentityLinked:      {domain.RoleService},
		domain.TypeChildRetentionSet:   {domain.RoleManager},

		domain.TypePlacementCancelled:    {domain.RoleWorker},
		domain.TypeAccountReopened:       {domain.RolePortalsTeam},
		domain.TypeEmailChangeRequested:  {domain.RoleWorker},
		domain.TypeEmailChanged:          {domain.RolePortalsTeam},
		domain.TypeEmailClaimed:          {domain.RoleWorker, domain.RolePortalsTeam}, // with an invitation, with a change
		domain.TypeEmailReleased:         {domain.RolePortalsTeam},
		domain.TypePolicySet:             {domain.RoleSystem},
		domain.TypePlacementStartReached: {domain.RoleSystem},
		domain.TypePlacementEndReached:   {domain.RoleSystem},
		domain.TypeGrantReviewed:         {domain.RoleWorker},
		domain.TypeGrantExpired:          {domain.RoleSystem},
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			appends, sum := collect(t, datagen.Small, seed)
			versions := map[string]uint64{}
			byID := map[uuid.UUID]eventlog.EventData{}
			byType := map[string]int64{}
			var lastRecorded time.Time
			from, to := time.Time{}, time.Time{}
			for _, a := range appends {
				require.Equal(t, eventlog.Exactly(versions[a.Stream]), a.Expected, "append to %s", a.Stream)
				versions[a.Stream] += uint64(len(a.Events))
				for _, e := range a.Events {
					ev, err := domain.Decode(e.Type, e.Data)
					require.NoError(t, err)
					require.Equal(t, ev.EffectiveAt(), e.Meta.EffectiveAt)
					require.Contains(t, roles[e.Type], domain.Role(e.Meta.ActorRole), "%s by %s", e.Type, e.Meta.ActorRole)
					require.NotEmpty(t, e.Meta.ActorID)
					require.NotEmpty(t, e.Meta.Reason, "R14: every event has a reason")
					require.NotEqual(t, uuid.Nil, e.Meta.CorrelationID)
					require.False(t, e.Meta.RecordedAt.Before(lastRecorded), "recorded times never go back")
					lastRecorded = e.Meta.RecordedAt
					if e.Meta.ActorRole == string(domain.RoleSystem) && e.Type != domain.TypePolicySet { // the initial policy has no cause
						cause, ok := byID[e.Meta.CausationID]
						require.True(t, ok, "an expiry's causation is an earlier event")
						require.Contains(t, []string{domain.TypePlacementEnded, domain.TypeAccountInvited, domain.TypePlacementStarted, domain.TypeAccessGranted}, cause.Type)
						require.Equal(t, cause.Meta.CorrelationID, e.Meta.CorrelationID)
						require.False(t, e.Meta.RecordedAt.Before(e.Meta.EffectiveAt), "expiries at or after the deadline")
					} else {
						require.Equal(t, uuid.Nil, e.Meta.CausationID)
					}
					_, dup := byID[e.ID]
					require.False(t, dup, "event ids are unique")
					byID[e.ID] = e
					byType[e.Type]++
					if from.IsZero() || e.Meta.EffectiveAt.Before(from) {
						from = e.Meta.EffectiveAt
					}
					if e.Meta.EffectiveAt.After(to) {
						to = e.Meta.EffectiveAt
					}
				}
			}
			require.Equal(t, byType, sum.ByType)
			require.Equal(t, from, sum.From)
			require.Equal(t, to, sum.To)
			require.True(t, lastRecorded.Before(datagen.Epoch.AddDate(datagen.Small.Years, 0, 0)))
			require.True(t, from.Before(datagen.Epoch), "the existing caseload's placements are backdated")
		})
	}
}

// TestEventMix: the mix of a history has every event type of the
// catalogue but the erasures, in proportions within the model's bounds.
func TestEventMix(t *testing.T) {
	sc := datagen.Small
	sc.Children, sc.Carers, sc.Members = 300, 90, 600 // enough for the rare types
	sum := generate(t, sc, discard, datagen.Options{Seed: 7})
	share := func(typ string) float64 { return float64(sum.ByType[typ]) / float64(sum.Events) }
	for _, typ := range domain.EventTypes() {
		if typ == domain.TypeAccountErased || typ == domain.TypeChildErased {
			// Not generated: the generator writes unsealed (synthetic)
			// values, which an erasure cannot erase (R22: erasure destroys
			// the key values were sealed with).
			require.Zero(t, sum.ByType[typ], typ)
			continue
		}
		require.Positive(t, sum.ByType[typ], "%s generated", typ)
	}
	bounds := []struct {
		typ    string
		lo, hi float64
	}{
		{domain.TypePlacementStarted, 0.15, 0.30},
		{domain.TypePlacementEnded, 0.15, 0.30},
		{domain.TypeGraceExpired, 0.12, 0.26},
		{domain.TypeGraceEndedEarly, 0.005, 0.05},
		{domain.TypeAccessGranted, 0.04, 0.15},
		{domain.TypeAccessRevoked, 0.015, 0.07},
		{domain.TypeAccountInvited, 0.015, 0.05},
		{domain.TypeAccountActivated, 0.01, 0.04},
		{domain.TypeIdentityLinked, 0.01, 0.04},
		{domain.TypePhoneResetRequested, 0.01, 0.06},
		{domain.TypeWorkerAllocated, 0.01, 0.05},
		{domain.TypeChildRegistered, 0.005, 0.02},
		{domain.TypeAccountClosed, 0.0002, 0.005},
	}
	for _, b := range bounds {
		require.True(t, share(b.typ) >= b.lo && share(b.typ) <= b.hi, "%s: %.4f of the events, want %.3f to %.3f", b.typ, share(b.typ), b.lo, b.hi)
	}
	// The command path's pairings.
	require.Equal(t, sum.ByType[domain.TypeAccountActivated], sum.ByType[domain.TypeIdentityLinked])
	require.GreaterOrEqual(t, sum.ByType[domain.TypePlacementStarted], sum.ByType[domain.TypePlacementEnded])
	require.GreaterOrEqual(t, sum.ByType[domain.TypePlacementEnded], sum.ByType[domain.TypeGraceExpired]+sum.ByType[domain.TypeGraceEndedEarly])
	require.GreaterOrEqual(t, sum.ByType[domain.TypePhoneResetRequested], sum.ByType[domain.TypePhoneCleared])
}

// TestCountyCalibration: a county comes to 1,000,000 events within 10%.
// It takes seconds (a minute under the race detector, where it is skipped).
func TestCountyCalibration(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("generates a million events")
	}
	sum := generate(t, datagen.County, discard, datagen.Options{Seed: 1})
	t.Logf("county: %d events, %d appends, effective %s to %s", sum.Events, sum.Appends, sum.From, sum.To)
	for _, typ := range []string{domain.TypePlacementStarted, domain.TypePlacementCancelled, domain.TypeAccountClosed,
		domain.TypeAccountReopened, domain.TypeAccountActivated, domain.TypeEmailChanged, domain.TypeEmailClaimed} {
		t.Logf("  %s: %d", typ, sum.ByType[typ])
	}
	require.InDelta(t, 1_000_000, sum.Events, 100_000)
	require.Len(t, sum.Samples.Children, datagen.SampleSize)
	require.Len(t, sum.Samples.Accounts, datagen.SampleSize)
	require.Len(t, sum.Samples.CanSee, datagen.SampleSize)
	require.Len(t, sum.Samples.CannotSee, datagen.SampleSize)
}

// TestMemoryDoesNotGrowWithRegions: the generator's live heap holds one
// region at a time. Four regions peak at about what one does; a generator
// that kept every region's aggregates (or events) would hold four times
// the region's share.
func TestMemoryDoesNotGrowWithRegions(t *testing.T) {
	region := datagen.Small
	region.Children, region.Carers, region.Members = 200, 60, 400
	peak := func(regions int) uint64 {
		sc := region
		sc.Regions = regions
		sc.Children, sc.Carers, sc.Members = regions*region.Children, regions*region.Carers, regions*region.Members
		var max uint64
		batches := 0
		measure := func() {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			max = maxOf(max, ms.HeapInuse)
		}
		generate(t, sc, datagen.SinkFunc(func(context.Context, []datagen.Append) error {
			if batches++; batches%8 == 0 {
				measure()
			}
			return nil
		}), datagen.Options{Seed: 5, BatchAppends: 100})
		return max
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	one := peak(1)
	four := peak(4)
	t.Logf("heap in use: %d KiB before, %d KiB peak with one region, %d KiB with four", base>>10, one>>10, four>>10)
	require.Greater(t, one, base, "a region takes memory")
	// Keeping every region would grow the peak by three regions' worth;
	// allow one (the noise of sampling a longer run).
	region1 := int64(one - base)
	require.Less(t, int64(four)-int64(one), region1+256<<10,
		"four regions (%d KiB) hold about what one does (%d KiB, %d KiB over the base)", four>>10, one>>10, region1>>10)
}

func maxOf(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// BenchmarkGenerate measures generation alone, into a sink that drops
// everything: a tenth of a county (about 100,000 events) per op.
func BenchmarkGenerate(b *testing.B) {
	sc := datagen.County
	sc.Name, sc.Children, sc.Carers, sc.Members = "tenth", 1_000, 300, 2_000
	b.ReportAllocs()
	var events int64
	for b.Loop() {
		sum, err := datagen.Generate(context.Background(), sc, discard, datagen.Options{Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		events += sum.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// TestCorrectionsAsTheCommandPath checks the appends of R18 against the
// handlers that write them: the first invitation of an email is preceded
// by the email's claim, on domain.EmailStream(email), with the
// invitation's cause (a renewal claims nothing); an email change is the
// claim of the new email, the change, and the release of the old email,
// one append each and one cause, after a worker's request; a placement is
// cancelled before it starts; an account is reopened after its closure,
// and its access is given anew after that.
func TestCorrectionsAsTheCommandPath(t *testing.T) {
	sc := datagen.Small
	sc.Children, sc.Carers, sc.Members = 300, 90, 600
	appends, sum := collect(t, sc, 7)

	decode := func(e eventlog.EventData) domain.Event {
		ev, err := domain.Decode(e.Type, e.Data)
		require.NoError(t, err)
		return ev
	}
	accountOf := func(stream string) uuid.UUID {
		return uuid.MustParse(strings.TrimPrefix(stream, domain.AccountStreamPrefix))
	}
	one := func(a datagen.Append, typ string) eventlog.EventData {
		require.Len(t, a.Events, 1, "%s: one event", typ)
		require.Equal(t, typ, a.Events[0].Type)
		return a.Events[0]
	}
	sameCause := func(a, b eventlog.EventData) {
		require.Equal(t, a.Meta.CorrelationID, b.Meta.CorrelationID)
		require.Equal(t, a.Meta.ActorID, b.Meta.ActorID)
		require.Equal(t, a.Meta.ActorRole, b.Meta.ActorRole)
		require.Equal(t, a.Meta.RecordedAt, b.Meta.RecordedAt)
	}
	email := map[uuid.UUID]string{}     // the account's email
	requested := map[uuid.UUID]string{} // the open change request
	claimed := map[string]int{}         // email streams: claim appends
	closedAt := map[uuid.UUID]time.Time{}
	reopenedAt := map[uuid.UUID]time.Time{}
	anew := 0 // placements and grants of reopened accounts after the reopening
	for i, a := range appends {
		for _, e := range a.Events {
			switch ev := decode(e).(type) {
			case *domain.AccountInvited:
				id := accountOf(a.Stream)
				if _, renewal := email[id]; renewal {
					require.Equal(t, email[id], ev.Email)
					require.False(t, i > 0 && strings.HasPrefix(appends[i-1].Stream, domain.EmailStreamPrefix) &&
						appends[i-1].Events[0].Meta.CorrelationID == e.Meta.CorrelationID, "a renewal claims nothing")
					continue
				}
				require.Positive(t, i)
				prev := appends[i-1]
				require.Equal(t, domain.EmailStream(ev.Email), prev.Stream, "the claim precedes the invitation")
				require.Equal(t, eventlog.Exactly(0), prev.Expected, "a new claim stream")
				c := one(prev, domain.TypeEmailClaimed)
				require.Equal(t, id, decode(c).(*domain.EmailClaimed).AccountID)
				require.Equal(t, commands.DefaultReason(domain.TypeEmailClaimed), c.Meta.Reason)
				sameCause(c, e)
				email[id] = ev.Email
			case *domain.EmailChangeRequested:
				require.Equal(t, string(domain.RoleWorker), e.Meta.ActorRole)
				requested[ev.AccountID] = ev.Email
			case *domain.EmailChanged:
				require.Equal(t, requested[ev.AccountID], ev.Email, "the change applies the request")
				require.True(t, i > 0 && i+1 < len(appends))
				claim, release := one(appends[i-1], domain.TypeEmailClaimed), one(appends[i+1], domain.TypeEmailReleased)
				require.Equal(t, domain.EmailStream(ev.Email), appends[i-1].Stream, "the new email is claimed first")
				require.Equal(t, domain.EmailStream(email[ev.AccountID]), appends[i+1].Stream, "then the old one released")
				require.Equal(t, ev.AccountID, decode(claim).(*domain.EmailClaimed).AccountID)
				require.Equal(t, ev.AccountID, decode(release).(*domain.EmailReleased).AccountID)
				for _, d := range []eventlog.EventData{claim, release} {
					sameCause(d, e)
					require.Equal(t, commands.DefaultReason(d.Type), d.Meta.Reason)
				}
				require.Equal(t, commands.DefaultReason(domain.TypeEmailChanged), e.Meta.Reason)
				email[ev.AccountID] = ev.Email
				delete(requested, ev.AccountID)
			case *domain.EmailClaimed:
				claimed[a.Stream]++
				require.Equal(t, 1, claimed[a.Stream], "each email is claimed once: no email is reused")
			case *domain.PlacementCancelled:
				require.Equal(t, string(domain.RoleWorker), e.Meta.ActorRole)
				require.NotEqual(t, commands.DefaultReason(e.Type), e.Meta.Reason, "the worker's reason")
			case *domain.AccountClosed:
				closedAt[ev.AccountID] = ev.ClosedAt
			case *domain.AccountReopened:
				require.True(t, ev.ReopenedAt.After(closedAt[ev.AccountID]), "reopened after a closure")
				reopenedAt[ev.AccountID] = ev.ReopenedAt
			case *domain.PlacementStarted:
				if r, ok := reopenedAt[ev.CarerAccountID]; ok && !ev.StartedAt.Before(r) {
					anew++
				}
			case *domain.AccessGranted:
				if r, ok := reopenedAt[ev.AccountID]; ok && !ev.GrantedAt.Before(r) {
					anew++
				}
			}
		}
	}
	for _, typ := range []string{domain.TypePlacementCancelled, domain.TypeAccountReopened, domain.TypeEmailChanged} {
		t.Logf("%s: %d", typ, sum.ByType[typ])
	}
	require.Equal(t, int64(len(claimed)), sum.ByType[domain.TypeEmailClaimed])
	require.Positive(t, anew, "access is given anew after a reopening")
}

// TestFirstRegions: the nation's first region is a county, all fifty the
// nation, and ten a fifth of it.
func TestFirstRegions(t *testing.T) {
	tests := []struct {
		n                               int
		children, carers, members, regs int
	}{
		{1, datagen.County.Children, datagen.County.Carers, datagen.County.Members, 1},
		{10, 100_000, 30_000, 200_000, 10},
		{50, datagen.Nation.Children, datagen.Nation.Carers, datagen.Nation.Members, 50},
	}
	for _, tt := range tests {
		got := datagen.Nation.FirstRegions(tt.n)
		require.Equal(t, [4]int{tt.children, tt.carers, tt.members, tt.regs},
			[4]int{got.Children, got.Carers, got.Members, got.Regions}, "first %d regions", tt.n)
		require.NoError(t, got.Validate())
	}
}
