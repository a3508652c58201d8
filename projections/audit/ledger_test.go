package audit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/adapters/sqldb"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
	"github.com/accessledger/accessledger/projections/ledger"
)

// physical is the trail's table of the runner's first generation.
var physical = Table + "_g1"

// migrateRunner applies the runner's and the ledger's migrations to db.
func migrateRunner(t *testing.T, db *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	pg, lite := projections.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, projections.Component, pg, lite))
	pg, lite = ledger.Migrations()
	require.NoError(t, sqldb.Migrate(ctx, db, ledger.Component, pg, lite))
}

// runProjections runs ps under a projections runner until they have caught
// up with the log, as the engine does.
func runProjections(t *testing.T, db *sqldb.DB, store eventlog.Store, ps ...projections.Projection) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := projections.NewRunner(db.DB, store, ps, projections.WithRetryBackoff(time.Millisecond, 10*time.Millisecond))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.NoError(t, r.WaitCaughtUp(ctx))
	cancel()
	require.NoError(t, <-done)
}

// withLedger returns a log on db with a history, projected into the audit
// trail and the ledger by one runner.
func withLedger(t *testing.T, db *sqldb.DB) []eventlog.Record {
	t.Helper()
	store := newStore(t, db)
	migrateRunner(t, db)
	recs := history(t, store, 2)
	runProjections(t, db, store, New(), ledger.New())
	return recs
}

// appendRecords appends recs (records made elsewhere) to store, each
// event to its stream.
func appendRecords(t *testing.T, store eventlog.Store, recs []eventlog.Record) {
	t.Helper()
	for _, r := range recs {
		_, err := store.Append(context.Background(), r.Stream, eventlog.Any,
			[]eventlog.EventData{{ID: r.ID, Type: r.Type, Data: r.Data, Meta: r.Meta}})
		require.NoError(t, err)
	}
}

// TestEntriesNameTheirLeaf: each entry's leaf_index is seq-1 and its
// leaf_hash is the leaf hash of its event, the one the ledger stores at that
// leaf; List shows both; Verify compares the whole trail with the ledger.
func TestEntriesNameTheirLeaf(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := withLedger(t, db)
		n := int64(len(recs))
		rows := readRows(t, db, physical)
		require.Len(t, rows, len(recs))
		tree := ledger.NewTree(db)
		size, err := tree.Size(ctx)
		require.NoError(t, err)
		require.Equal(t, n, size)

		entries, next, err := List(ctx, db, Filter{Limit: MaxLimit})
		require.NoError(t, err)
		require.Zero(t, next)
		require.Len(t, entries, len(recs))
		for i, r := range rows {
			rec := recs[i]
			want := ledger.LeafHash(rec)
			leaf, err := tree.Leaf(ctx, int64(i))
			require.NoError(t, err)
			require.Equal(t, want, leaf.Hash, "the ledger's leaf %d is of event %d", i, i)
			require.Equal(t, rec.ID, leaf.EventID)

			require.Equal(t, r.Seq-1, r.LeafIndex)
			require.Equal(t, int64(i), r.LeafIndex)
			require.Equal(t, hex.EncodeToString(want[:]), r.LeafHash)
			require.True(t, isHash(r.LeafHash))
			got, _ := r.computeHash(nil)
			require.Equal(t, got, r.Hash, "leaf_index and leaf_hash are in the hash")

			require.Equal(t, r.LeafIndex, entries[i].LeafIndex)
			require.Equal(t, r.LeafHash, entries[i].LeafHash)
		}

		head := rows[n-1].Hash
		want := Result{OK: true, Entries: n, HeadHash: head,
			Ledger: &LedgerComparison{Checkpoint: recs[n-1].Position.String(), Leaves: n, Size: n, Matched: n}}
		for _, opts := range []VerifyOptions{
			{}, {PageSize: 1}, {PageSize: 4}, {PageSize: int(n)}, {PageSize: int(n) + 1},
			{Ledger: tree}, {Anchor: &Anchor{Seq: n, Hash: head}},
		} {
			res, err := Verify(ctx, db, opts)
			require.NoError(t, err)
			require.Equal(t, want, res, "%+v", opts)
		}
		res, err := Verify(ctx, db, VerifyOptions{})
		require.NoError(t, err)
		require.Equal(t, "ledger: "+itoa(n)+" of its "+itoa(n)+" leaves matched by entries; "+itoa(n)+
			" leaves up to the audit checkpoint "+recs[n-1].Position.String()+"\naudit trail OK: "+itoa(n)+" entries, head "+head,
			VerifyReport(res))
	})
}

// TestVerifyAgainstTheLedger tampers with a trail that a runner keeps next
// to the ledger, and checks that Verify names the first broken entry, its
// position and the check that failed, with small and default page sizes.
func TestVerifyAgainstTheLedger(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := withLedger(t, db)
		intact := readRows(t, db, physical)
		n := int64(len(intact))
		mid := n / 2
		require.Greater(t, n, int64(20))
		last := recs[n-1].Position

		// relink sets every leaf_index to seq-1 and recomputes the chain
		// from seq on, as a forger who knows the encoding would.
		relink := func(m *tamperer, seq int64) {
			m.exec("UPDATE TABLE SET leaf_index = seq - 1")
			m.rechain(seq)
		}
		tests := []struct {
			name   string
			tamper func(m *tamperer)
			anchor bool
			seq    int64
			check  string
			reason string // a prefix of the reported reason
			// entries reported intact: seq-1 when zero.
			entries int64
			// the position named: that of event seq when empty.
			pos string
		}{
			{name: "intact", tamper: func(*tamperer) {}},
			{name: "delete the newest entry", seq: n, check: CheckLedger, reason: "entry missing (deleted): the ledger holds",
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq = ?", n) }},
			{name: "delete the three newest entries", seq: n - 2, check: CheckLedger, reason: "entry missing (deleted): the ledger holds",
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq > ?", n-3) }},
			{name: "delete the newest entry, anchored", seq: n, check: CheckAnchor, reason: "entry missing: the trail ends at entry", anchor: true,
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq = ?", n) }},
			{name: "delete an entry in the middle", seq: mid, check: CheckChain, reason: "entry missing (deleted)",
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq = ?", mid) }},
			{name: "delete an entry in the middle, renumber and rechain", seq: mid, check: CheckLedger, reason: "event_id",
				tamper: func(m *tamperer) {
					m.exec("DELETE FROM TABLE WHERE seq = ?", mid)
					m.renumber(mid+1, -1)
					relink(m, mid)
				}},
			{name: "edit leaf_hash", seq: mid, check: CheckChain, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET leaf_hash = ? WHERE seq = ?", strings.Repeat("0", 64), mid)
				}},
			{name: "edit leaf_hash and rechain", seq: mid, check: CheckLedger, reason: "leaf_hash differs from the hash of ledger leaf",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET leaf_hash = ? WHERE seq = ?", m.row(mid+1).LeafHash, mid)
					m.rechain(mid)
				}},
			{name: "edit leaf_index and rechain", seq: mid, check: CheckLedger, reason: "leaf_index",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET leaf_index = leaf_index + 1 WHERE seq = ?", mid)
					m.rechain(mid)
				}},
			{name: "replace an entry by a forged event and rechain", seq: mid, check: CheckLedger, reason: "event_id",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET event_id = ?, data = ? WHERE seq = ?", uuid.NewString(), `{"forged":true}`, mid)
					m.rechain(mid)
				}},
			{name: "insert a forged entry, renumber and rechain", seq: mid, check: CheckLedger, reason: "event_id",
				tamper: func(m *tamperer) {
					f := m.forged(mid)
					m.shift(mid)
					m.insert(f)
					relink(m, mid)
				}},
			{name: "append a forged entry with a correct link", seq: n + 1, check: CheckCheckpoint, reason: "entry after the audit checkpoint",
				pos: eventlog.Position{Commit: last.Commit + 10, Prepare: last.Prepare + 10}.String(),
				tamper: func(m *tamperer) {
					f := m.forged(n)
					f.Seq, f.LeafIndex, f.PrevHash = n+1, n, m.row(n).Hash
					f.PositionCommit, f.PositionPrepare = int64(last.Commit+10), int64(last.Prepare+10)
					f.Hash, _ = f.computeHash(nil)
					m.insert(f)
				}},
			{name: "edit the ledger's leaf", seq: mid, check: CheckLedger, reason: "leaf_hash differs from the hash of ledger leaf",
				tamper: func(m *tamperer) {
					_, err := m.tx.ExecContext(ctx, "UPDATE "+ledger.LeavesTable+"_g1 SET hash = ? WHERE leaf_index = ?",
						make([]byte, 32), mid-1)
					require.NoError(t, err)
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tx, err := db.BeginTx(ctx, &sql.TxOptions{})
				require.NoError(t, err)
				defer func() { _ = tx.Rollback() }()
				tt.tamper(&tamperer{t: t, tx: tx, table: physical, rows: intact})

				opts := VerifyOptions{}
				if tt.anchor {
					opts.Anchor = &Anchor{Seq: n, Hash: intact[n-1].Hash}
				}
				rows := readRows(t, tx, physical)
				for _, size := range []int{0, 4} {
					opts.PageSize = size
					res, err := Verify(ctx, tx, opts)
					require.NoError(t, err)
					require.NotNil(t, res.Ledger, "compared with the ledger")
					require.Equal(t, last.String(), res.Ledger.Checkpoint)
					require.Equal(t, n, res.Ledger.Leaves)
					require.Equal(t, n, res.Ledger.Size)
					require.Equal(t, tt.seq == 0, res.OK, "page size %d: %+v", size, res.FirstBroken)
					report := VerifyReport(res)
					lines := strings.Split(report, "\n")
					if tt.seq == 0 {
						require.Nil(t, res.FirstBroken)
						require.Equal(t, n, res.Entries)
						require.Equal(t, n, res.Ledger.Matched)
						require.Equal(t, "audit trail OK: "+itoa(n)+" entries, head "+intact[n-1].Hash, lines[len(lines)-1])
						continue
					}
					require.NotNil(t, res.FirstBroken)
					b := res.FirstBroken
					require.Equal(t, tt.seq, b.Seq, "page size %d: %s", size, b.Reason)
					require.Equal(t, tt.check, b.Check, "page size %d: %s", size, b.Reason)
					require.True(t, strings.HasPrefix(b.Reason, tt.reason), "page size %d: %s", size, b.Reason)
					pos := tt.pos
					if pos == "" {
						pos = recs[tt.seq-1].Position.String()
					}
					require.Equal(t, pos, b.Position, "the entry's event is named by its position")
					entries := tt.entries
					if entries == 0 {
						entries = tt.seq - 1
					}
					require.Equal(t, entries, res.Entries)
					wantHead := Genesis
					for _, r := range rows {
						if r.Seq == entries {
							wantHead = r.Hash
						}
					}
					require.Equal(t, wantHead, res.HeadHash)
					if tt.check == CheckLedger {
						require.Equal(t, entries, res.Ledger.Matched)
					}
					require.Equal(t, "audit trail BROKEN at entry "+itoa(tt.seq)+" (position "+pos+", "+tt.check+" check): "+b.Reason,
						lines[len(lines)-1], "the report ends in the verdict")
				}
			})
		}
	})
}

// TestVerifyLedgerElsewhere runs the ledger and the trail to different
// places of the log: Verify compares the trail with the leaves up to the
// audit checkpoint, without a false alarm either way, and still finds the
// newest entries deleted.
func TestVerifyLedgerElsewhere(t *testing.T) {
	recs := syntheticRecords(t, 30)
	const m = 20
	tests := []struct {
		name          string
		first, second func() projections.Projection // run after m records, then after all of them
		leaves, size  int64
		entries       int64
	}{
		{"ledger behind the trail", newLedger, newAudit, m, m, 30},
		{"ledger ahead of the trail", newAudit, newLedger, m, 30, m},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
				ctx := context.Background()
				store := newStore(t, db)
				migrateRunner(t, db)
				appendRecords(t, store, recs[:m])
				runProjections(t, db, store, tt.first())
				appendRecords(t, store, recs[m:])
				runProjections(t, db, store, tt.second())
				stored, err := store.ReadAll(ctx, eventlog.Start, 0)
				require.NoError(t, err)
				cp := stored[tt.entries-1].Position

				rows := readRows(t, db, physical)
				require.Len(t, rows, int(tt.entries))
				res, err := Verify(ctx, db, VerifyOptions{PageSize: 7})
				require.NoError(t, err)
				require.Equal(t, Result{OK: true, Entries: tt.entries, HeadHash: rows[tt.entries-1].Hash,
					Ledger: &LedgerComparison{Checkpoint: cp.String(), Leaves: tt.leaves, Size: tt.size, Matched: m}}, res)

				// The ledger's leaves up to the checkpoint all need their
				// entry: deleting entries from m on is found.
				tx, err := db.BeginTx(ctx, &sql.TxOptions{})
				require.NoError(t, err)
				defer func() { _ = tx.Rollback() }()
				_, err = tx.ExecContext(ctx, "DELETE FROM "+physical+" WHERE seq >= ?", m)
				require.NoError(t, err)
				res, err = Verify(ctx, tx, VerifyOptions{PageSize: 7})
				require.NoError(t, err)
				require.False(t, res.OK)
				require.Equal(t, &Broken{Seq: m, Position: stored[m-1].Position.String(), Check: CheckLedger,
					Reason: "entry missing (deleted): the ledger holds " + itoa(m) + " events up to the audit checkpoint " + cp.String() +
						", the trail ends at entry " + itoa(m-1)}, res.FirstBroken)
			})
		})
	}
}

func newAudit() projections.Projection  { return New() }
func newLedger() projections.Projection { return ledger.New() }

// TestVerifyRefusesAnOldVersion: tables built by another version of the
// projection are an error, not a verdict.
func TestVerifyRefusesAnOldVersion(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		withLedger(t, db)
		_, err := db.ExecContext(ctx, "UPDATE projection_checkpoints SET version = 1 WHERE name = ?", Name)
		require.NoError(t, err)
		_, err = Verify(ctx, db, VerifyOptions{})
		require.ErrorIs(t, err, ErrVersion)
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
