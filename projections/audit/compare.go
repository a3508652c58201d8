package audit

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections/ledger"
)

// Log is what CompareWithLog reads of the event log (eventlog.Store
// provides it).
type Log interface {
	ReadAll(ctx context.Context, after eventlog.Position, limit int) ([]eventlog.Record, error)
}

// LogMismatch is the first entry whose copy of its event differs from the
// event in the log.
type LogMismatch struct {
	Seq      int64
	Position eventlog.Position
	Field    string
	Detail   string
}

func (m *LogMismatch) String() string {
	return fmt.Sprintf("entry %d (position %s): %s", m.Seq, m.Position, m.Detail)
}

// CompareWithLog compares every entry of the trail with the event of the
// log it copies, field by field (event id, type, stream, actor, role,
// reason, effective and recorded time to the microsecond, data byte for
// byte, leaf hash), in pages of pageSize (default 1000). A chain rewritten
// with consistent hashes passes Verify's chain check; this catches it,
// given a log that the ledger has verified. It returns the first mismatch
// (nil when none) and how many entries it compared; entries beyond the log
// (or the log beyond the trail) are not compared here: Verify's length
// check covers them.
func CompareWithLog(ctx context.Context, db bun.IDB, log Log, pageSize int) (*LogMismatch, int64, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	after := eventlog.Start
	var seq, compared int64
	for {
		recs, err := log.ReadAll(ctx, after, pageSize)
		if err != nil {
			return nil, compared, fmt.Errorf("audit: read the log after %s: %w", after, err)
		}
		if len(recs) == 0 {
			return nil, compared, nil
		}
		var rows []entryRow
		if err := db.NewSelect().Model(&rows).Where("seq > ?", seq).OrderExpr("seq ASC").
			Limit(int64(len(recs))).Scan(ctx); err != nil {
			return nil, compared, fmt.Errorf("audit: read entries after %d: %w", seq, err)
		}
		for i := range rows {
			if m := compareEntry(&rows[i], recs[i], seq+int64(i)+1); m != nil {
				return m, compared, nil
			}
			compared++
		}
		if len(rows) < len(recs) || len(recs) < pageSize {
			return nil, compared, nil
		}
		seq += int64(len(recs))
		after = recs[len(recs)-1].Position
	}
}

// compareEntry compares entry r, which should be entry seq, with rec.
func compareEntry(r *entryRow, rec eventlog.Record, seq int64) *LogMismatch {
	leaf := ledger.LeafHash(rec)
	checks := []struct {
		field     string
		got, want any
	}{
		{"seq", r.Seq, seq},
		{"event_id", r.EventID, rec.ID.String()},
		{"position", eventlog.Position{Commit: uint64(r.PositionCommit), Prepare: uint64(r.PositionPrepare)}, rec.Position},
		{"type", r.Type, rec.Type},
		{"stream", r.Stream, rec.Stream},
		{"actor", r.Actor, rec.Meta.ActorID},
		{"actor_role", r.ActorRole, rec.Meta.ActorRole},
		{"reason", r.Reason, rec.Meta.Reason},
		{"effective_at", r.EffectiveAt, rec.Meta.EffectiveAt.UnixMicro()},
		{"recorded_at", r.RecordedAt, rec.Meta.RecordedAt.UnixMicro()},
		{"data", r.Data, string(rec.Data)},
		{"leaf_hash", r.LeafHash, hex.EncodeToString(leaf[:])},
	}
	for _, c := range checks {
		if c.got != c.want {
			return &LogMismatch{Seq: seq, Position: rec.Position, Field: c.field,
				Detail: fmt.Sprintf("its %s differs from the event %s in the log", c.field, rec.ID)}
		}
	}
	return nil
}
