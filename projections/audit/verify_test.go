package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/accessledger/accessledger/adapters/sqldb"
)

// tamperer edits the trail's physical table inside a transaction that the
// test rolls back afterwards.
type tamperer struct {
	t     *testing.T
	tx    bun.Tx
	table string
	rows  []entryRow // the intact trail, rows[i].Seq == i+1
}

func (m *tamperer) exec(query string, args ...any) {
	m.t.Helper()
	_, err := m.tx.ExecContext(context.Background(), strings.ReplaceAll(query, "TABLE", `"`+m.table+`"`), args...)
	require.NoError(m.t, err, query)
}

// row returns a copy of the intact entry seq.
func (m *tamperer) row(seq int64) entryRow { return m.rows[seq-1] }

func (m *tamperer) insert(rows ...entryRow) {
	m.t.Helper()
	_, err := m.tx.NewInsert().Model(&rows).ModelTableExpr("?", bun.Ident(m.table)).Exec(context.Background())
	require.NoError(m.t, err)
}

// renumber adds delta to the seq of the entries from seq on. It goes
// through a range no entry uses, since both engines check the primary key
// row by row.
func (m *tamperer) renumber(seq, delta int64) {
	m.exec("UPDATE TABLE SET seq = seq + 1000000 WHERE seq >= ?", seq)
	m.exec("UPDATE TABLE SET seq = seq - 1000000 + ? WHERE seq >= 1000000", delta)
}

// shift moves the entries from seq on one place up, leaving seq free.
func (m *tamperer) shift(seq int64) { m.renumber(seq, 1) }

// rechain recomputes prev_hash and hash of every entry from seq on, as a
// forger who knows the encoding would (there is no secret in it).
func (m *tamperer) rechain(seq int64) {
	m.t.Helper()
	rows := readRows(m.t, m.tx, m.table)
	prev := Genesis
	for i := range rows {
		r := &rows[i]
		if r.Seq >= seq {
			r.PrevHash = prev
			r.Hash, _ = r.computeHash(nil)
			m.exec("UPDATE TABLE SET prev_hash = ?, hash = ? WHERE seq = ?", r.PrevHash, r.Hash, r.Seq)
		}
		prev = r.Hash
	}
}

// forged returns an entry for an event that never happened, placed after
// entry seq-1 with a correct link and hash.
func (m *tamperer) forged(seq int64) entryRow {
	r := m.row(seq)
	r.Seq = seq
	r.EventID = uuid.NewString()
	r.Actor, r.Reason = "worker-eve", "forged"
	r.Data = `{"forged":true}`
	r.PrevHash = Genesis
	if seq > 1 {
		r.PrevHash = m.row(seq - 1).Hash
	}
	r.Hash, _ = r.computeHash(nil)
	return r
}

// TestVerifyDetectsTampering edits the trail in every way the design names
// and checks that Verify reports the right first broken entry, with small
// and default page sizes (so that breaks fall on and off page boundaries).
func TestVerifyDetectsTampering(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		recs := history(t, newStore(t, db), 2)
		tables := createGeneration(t, db, 1)
		pointView(t, db, tables)
		project(t, db, tables, recs, 9, false)
		intact := readRows(t, db, tables.Name(Table))
		n := int64(len(intact))
		head := intact[n-1].Hash
		mid := n / 2
		require.Greater(t, n, int64(20))
		// A middle entry that names a child, for the child_id edit.
		withChild := mid
		for !intact[withChild-1].ChildID.Valid {
			withChild++
		}
		// And one that names none, for NULL turned into ''.
		withoutChild := mid
		for intact[withoutChild-1].ChildID.Valid {
			withoutChild++
		}

		tests := []struct {
			name    string
			tamper  func(m *tamperer)
			anchor  bool // verify against the intact head as an anchor
			seq     int64
			reason  string // a prefix of the reported reason
			entries int64  // entries reported intact; seq-1 when zero
		}{
			{name: "edit data", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET data = ? WHERE seq = ?", strings.Replace(m.row(mid).Data, `"`, ` "`, 1), mid)
				}},
			{name: "edit actor", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET actor = ? WHERE seq = ?", "worker-eve", mid) }},
			{name: "edit actor role", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET actor_role = ? WHERE seq = ?", "manager", mid) }},
			{name: "edit reason", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET reason = reason || ? WHERE seq = ?", ".", mid) }},
			{name: "edit recorded_at by a microsecond", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET recorded_at = recorded_at + 1 WHERE seq = ?", mid) }},
			{name: "edit effective_at", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET effective_at = effective_at - 3600000000 WHERE seq = ?", mid)
				}},
			{name: "edit position", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET position_prepare = position_prepare + 1 WHERE seq = ?", mid)
				}},
			{name: "clear child_id", seq: withChild, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET child_id = NULL WHERE seq = ?", withChild) }},
			{name: "set a NULL child_id to ''", seq: withoutChild, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET child_id = '' WHERE seq = ?", withoutChild) }},
			{name: "edit prev_hash", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET prev_hash = ? WHERE seq = ?", Genesis, mid) }},
			{name: "edit the first entry", seq: 1, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET stream = ? WHERE seq = 1", "child-x") }},
			{name: "edit the last entry", seq: n, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) { m.exec("UPDATE TABLE SET reason = ? WHERE seq = ?", "nothing to see", n) }},
			{name: "edit an entry and recompute its hash", seq: mid + 1, reason: "prev_hash does not match the hash of entry",
				tamper: func(m *tamperer) {
					r := m.row(mid)
					r.Actor = "worker-eve"
					r.Hash, _ = r.computeHash(nil)
					m.exec("UPDATE TABLE SET actor = ?, hash = ? WHERE seq = ?", r.Actor, r.Hash, mid)
				}},
			{name: "delete an entry in the middle", seq: mid, reason: "entry missing (deleted)",
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq = ?", mid) }},
			{name: "delete the first entry", seq: 1, reason: "entry missing (deleted)",
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq = 1") }},
			{name: "delete entries and renumber the rest", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					m.exec("DELETE FROM TABLE WHERE seq IN (?, ?)", mid, mid+1)
					m.renumber(mid+2, -2)
				}},
			{name: "delete an entry, renumber and rechain, anchored", seq: n, reason: "entry missing: the trail ends at entry", anchor: true,
				tamper: func(m *tamperer) {
					// The chain is whole again (positions still increase):
					// only the anchor reveals the rewrite.
					m.exec("DELETE FROM TABLE WHERE seq = ?", mid)
					m.renumber(mid+1, -1)
					m.rechain(mid)
				}},
			{name: "swap two entries' contents", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					a, b := m.row(mid), m.row(mid+3)
					a.Seq, b.Seq = b.Seq, a.Seq
					m.exec("DELETE FROM TABLE WHERE seq IN (?, ?)", mid, mid+3)
					m.insert(a, b)
				}},
			{name: "swap two entries and recompute the chain", seq: mid + 1, reason: "position",
				tamper: func(m *tamperer) {
					a, b := m.row(mid), m.row(mid+3)
					a.Seq, b.Seq = b.Seq, a.Seq
					m.exec("DELETE FROM TABLE WHERE seq IN (?, ?)", mid, mid+3)
					m.insert(a, b)
					m.rechain(mid)
				}},
			{name: "insert a forged entry", seq: mid, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					f := m.forged(mid)
					f.Hash = strings.Repeat("f", 64)
					m.shift(mid)
					m.insert(f)
				}},
			{name: "insert a forged entry with a correct link and hash", seq: mid + 1, reason: "hash mismatch (entry edited)",
				tamper: func(m *tamperer) {
					f := m.forged(mid)
					m.shift(mid)
					m.insert(f)
				}},
			{name: "insert a forged entry and renumber the rest with their hashes", seq: mid + 1, reason: "prev_hash does not match the hash of entry",
				tamper: func(m *tamperer) {
					f := m.forged(mid)
					m.shift(mid)
					m.insert(f)
					for seq := mid + 1; seq <= n+1; seq++ {
						r := m.row(seq - 1)
						r.Seq = seq
						r.Hash, _ = r.computeHash(nil)
						m.exec("UPDATE TABLE SET hash = ? WHERE seq = ?", r.Hash, seq)
					}
				}},
			{name: "append a forged entry with a bad link", seq: n + 1, reason: "prev_hash does not match the hash of entry",
				tamper: func(m *tamperer) {
					f := m.forged(n)
					f.Seq, f.PositionCommit, f.PositionPrepare = n+1, f.PositionCommit+10, f.PositionPrepare+10
					f.Hash, _ = f.computeHash(nil) // linked to entry n-1, not n
					m.insert(f)
				}},
			{name: "insert an entry before the first", seq: 0, reason: "unexpected seq 0 where entry 1 was due (entry inserted)", entries: -1,
				tamper: func(m *tamperer) {
					f := m.forged(1)
					f.Seq = 0
					m.insert(f)
				}},
			{name: "delete the last entry, anchored", seq: n, reason: "entry missing: the trail ends at entry", anchor: true,
				tamper: func(m *tamperer) { m.exec("DELETE FROM TABLE WHERE seq = ?", n) }},
			{name: "rewrite the history, anchored", seq: n, reason: "hash differs from the anchor", anchor: true,
				tamper: func(m *tamperer) {
					m.exec("UPDATE TABLE SET reason = ? WHERE seq = 3", "rewritten")
					m.rechain(3)
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tx, err := db.BeginTx(ctx, &sql.TxOptions{})
				require.NoError(t, err)
				defer func() { _ = tx.Rollback() }()
				tt.tamper(&tamperer{t: t, tx: tx, table: tables.Name(Table), rows: intact})

				opts := VerifyOptions{}
				if tt.anchor {
					opts.Anchor = &Anchor{Seq: n, Hash: head}
				}
				entries := tt.entries
				if entries == 0 {
					entries = tt.seq - 1
				}
				if entries < 0 {
					entries = 0
				}
				// The head reported is the hash of the last entry that
				// checked out, as the tampered table holds it.
				wantHead := Genesis
				for _, r := range readRows(t, tx, tables.Name(Table)) {
					if entries > 0 && r.Seq == entries {
						wantHead = r.Hash
					}
				}
				for _, size := range []int{0, 4} {
					opts.PageSize = size
					res, err := Verify(ctx, tx, opts)
					require.NoError(t, err)
					require.False(t, res.OK, "page size %d", size)
					require.NotNil(t, res.FirstBroken)
					require.Equal(t, tt.seq, res.FirstBroken.Seq, "page size %d: %s", size, res.FirstBroken.Reason)
					require.True(t, strings.HasPrefix(res.FirstBroken.Reason, tt.reason), "page size %d: %s", size, res.FirstBroken.Reason)
					require.Equal(t, entries, res.Entries)
					require.Equal(t, wantHead, res.HeadHash)
				}
			})
		}

		// Without an anchor, removing the newest entries leaves a chain
		// that is whole: Verify can only say how long it is. This is what
		// the anchor is for.
		tx, err := db.BeginTx(ctx, &sql.TxOptions{})
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		_, err = tx.ExecContext(ctx, "DELETE FROM "+tables.Name(Table)+" WHERE seq = ?", n)
		require.NoError(t, err)
		res, err := Verify(ctx, tx, VerifyOptions{})
		require.NoError(t, err)
		require.Equal(t, Result{OK: true, Entries: n - 1, HeadHash: intact[n-2].Hash}, res)
	})
}

func TestVerifyOptions(t *testing.T) {
	db := openMemory(t)
	ctx := context.Background()
	pointView(t, db, createGeneration(t, db, 1))
	for _, opts := range []VerifyOptions{
		{PageSize: -1},
		{Anchor: &Anchor{Seq: 0, Hash: Genesis}},
		{Anchor: &Anchor{Seq: 1, Hash: "abc"}},
		{Anchor: &Anchor{Seq: 1, Hash: strings.Repeat("A", 64)}},
	} {
		_, err := Verify(ctx, db, opts)
		require.ErrorIs(t, err, ErrInvalidOptions)
	}
	_, err := Verify(ctx, openMemory(t), VerifyOptions{})
	require.Error(t, err, "no view: the database cannot be read")
	require.NotErrorIs(t, err, ErrInvalidOptions)
}

func TestResultJSON(t *testing.T) {
	b, err := json.Marshal(Result{Entries: 56, HeadHash: Genesis, FirstBroken: &Broken{Seq: 57, Check: CheckChain, Reason: "r"}})
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":false,"entries":56,"head_hash":"`+Genesis+`","first_broken":{"seq":57,"check":"chain","reason":"r"},"ledger":null}`, string(b))
	b, err = json.Marshal(Result{OK: true, HeadHash: Genesis})
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":true,"entries":0,"head_hash":"`+Genesis+`","first_broken":null,"ledger":null}`, string(b))
	b, err = json.Marshal(Result{Entries: 41, HeadHash: Genesis,
		FirstBroken: &Broken{Seq: 42, Position: "42", Check: CheckLedger, Reason: "r"},
		Ledger:      &LedgerComparison{Checkpoint: "42", Leaves: 42, Size: 44, Matched: 41}})
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":false,"entries":41,"head_hash":"`+Genesis+`",
		"first_broken":{"seq":42,"position":"42","check":"ledger","reason":"r"},
		"ledger":{"checkpoint":"42","leaves":42,"size":44,"matched":41}}`, string(b))
}

func TestVerifyReport(t *testing.T) {
	h := strings.Repeat("ab", 32)
	noLedger := "ledger: not compared (no ledger tables)\n"
	withLedger := &LedgerComparison{Checkpoint: "1300", Leaves: 1234, Size: 1240, Matched: 1234}
	tests := []struct {
		name string
		res  Result
		want string
	}{
		{"OK", Result{OK: true, Entries: 1234, HeadHash: h}, noLedger + "audit trail OK: 1234 entries, head " + h},
		{"OK, one entry", Result{OK: true, Entries: 1, HeadHash: h}, noLedger + "audit trail OK: 1 entry, head " + h},
		{"broken", Result{Entries: 56, HeadHash: h, FirstBroken: &Broken{Seq: 57, Reason: "hash mismatch (entry edited)"}},
			noLedger + "audit trail BROKEN at entry 57: hash mismatch (entry edited)"},
		{"broken, position and check", Result{Entries: 56, HeadHash: h,
			FirstBroken: &Broken{Seq: 57, Position: "60", Check: CheckChain, Reason: "hash mismatch (entry edited)"}},
			noLedger + "audit trail BROKEN at entry 57 (position 60, chain check): hash mismatch (entry edited)"},
		{"OK with the ledger", Result{OK: true, Entries: 1234, HeadHash: h, Ledger: withLedger},
			"ledger: 1234 of its 1240 leaves matched by entries; 1234 leaves up to the audit checkpoint 1300\n" +
				"audit trail OK: 1234 entries, head " + h},
		{"tail deleted", Result{Entries: 1233, HeadHash: h, Ledger: &LedgerComparison{Checkpoint: "1300", Leaves: 1234, Size: 1240, Matched: 1233},
			FirstBroken: &Broken{Seq: 1234, Position: "1300", Check: CheckLedger, Reason: "entry missing (deleted): ..."}},
			"ledger: 1233 of its 1240 leaves matched by entries; 1234 leaves up to the audit checkpoint 1300\n" +
				"audit trail BROKEN at entry 1234 (position 1300, ledger check): entry missing (deleted): ..."},
		{"no audit checkpoint", Result{OK: true, Entries: 3, HeadHash: h, Ledger: &LedgerComparison{Size: 3, Matched: 3}},
			"ledger: 3 of its 3 leaves matched by entries; no audit checkpoint, so the trail's length was not compared\n" +
				"audit trail OK: 3 entries, head " + h},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VerifyReport(tt.res)
			require.Equal(t, tt.want, got)
			lines := strings.Split(got, "\n")
			require.Regexp(t, `^audit trail (OK:|BROKEN at entry) `, lines[len(lines)-1], "the verdict is the last line")
		})
	}
}
