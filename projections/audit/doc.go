// Package audit is the audit trail read model (rule R14, architecture
// decision 10): one entry per event of the log, in global order, each
// chained to the one before it by SHA-256, and each naming its leaf in the
// ledger's Merkle tree over the log (projections/ledger, rule R23), so
// that editing, deleting, inserting or reordering entries is detected by
// Verify (accessd audit verify, GET /v1/audit/verify). List answers GET
// /v1/audit.
//
// # Table
//
// The projection (Name "audit") owns one table, logical name
// "audit_entries"; queries read it through the view of that name. Columns:
//
//	seq              BIGINT  1, 2, 3, ... with no gaps: the entry's own counter
//	position_commit  BIGINT  the event's global position (eventlog.Position)
//	position_prepare BIGINT
//	event_id         TEXT    canonical lower-case UUID
//	type             TEXT    event type, e.g. "placement.ended.v1"
//	stream           TEXT
//	child_id         TEXT    the child the event concerns, or NULL
//	account_id       TEXT    the account the event concerns, or NULL
//	actor            TEXT    the actor's id
//	actor_role       TEXT
//	reason           TEXT    "" when the event has none
//	effective_at     BIGINT  microseconds since the Unix epoch (UTC)
//	recorded_at      BIGINT  microseconds since the Unix epoch (UTC)
//	data             TEXT    the event's JSON payload, byte for byte as stored in the log
//	leaf_index       BIGINT  the index of the event's leaf in the ledger's tree: seq-1
//	leaf_hash        TEXT    lower-case hex of the event's RFC 6962 leaf hash (ledger.LeafHash)
//	prev_hash        TEXT    the previous entry's hash; Genesis for entry 1
//	hash             TEXT    lower-case hex SHA-256 of the canonical encoding below
//
// child_id and account_id come from the event's payload (for example a
// placement names the child and the carer's account); they are indexed, as
// are actor and recorded_at, for List's filters. event_id is unique.
//
// # Entries and the ledger
//
// Every event of the log makes exactly one entry, in the log's global
// order, as it makes exactly one leaf of the ledger's tree: entry seq is of
// the event of leaf seq-1, and leaf_index holds seq-1. leaf_hash is the
// event's leaf hash, computed by the projection from the event as the log
// holds it, the same hash the ledger stores at that leaf: an inclusion
// proof of the leaf and a signed checkpoint of the ledger vouch for the
// event an entry records. Both columns are in the entry's hash, so the
// chain is tied to the tree.
//
// When the database has the ledger's tables, Verify compares the trail
// with them: each entry's event_id, position and leaf_hash with the leaf at
// its leaf_index, and the trail's length with the number of leaves of
// events up to the audit projection's own checkpoint. Removing the newest
// entries, which leaves a whole chain, is detected there, as is an entry
// removed, inserted or replaced with every later hash recomputed. The
// ledger's own Verify checks its tree against the event log and the signed
// checkpoints; what the leaf hash does not let the trail check is the
// entry's copy of the event's fields (its data, actor, reason and times):
// editing those and recomputing every later hash is revealed by an Anchor,
// or by rebuilding the trail from the log.
//
// # Canonical encoding and hash
//
// An entry's hash is the lower-case hexadecimal SHA-256 of the following
// byte string, the concatenation of these 19 fields in this order:
//
//	field  column            encoding
//	 1     (version tag)     text "accessledger.audit.v2"
//	 2     seq               int
//	 3     prev_hash         text (the 64 hex digits as stored)
//	 4     event_id          text (the 36 characters as stored)
//	 5     position_commit   int
//	 6     position_prepare  int
//	 7     type              text
//	 8     stream            text
//	 9     child_id          optional text
//	10     account_id        optional text
//	11     actor             text
//	12     actor_role        text
//	13     reason            text
//	14     effective_at      int (microseconds)
//	15     recorded_at       int (microseconds)
//	16     data              text (the stored bytes, never re-serialised)
//	17     leaf_index        int
//	18     leaf_hash         text (the 64 hex digits as stored)
//	19     (terminator)      text "end"
//
// where
//
//   - int is 8 bytes, big-endian, two's complement (every stored value is
//     a BIGINT);
//   - text is its length in bytes as an 8-byte big-endian unsigned integer,
//     followed by its UTF-8 bytes;
//   - optional text is the single byte 0x00 for NULL, or the byte 0x01
//     followed by the text.
//
// Every field either has a fixed width or states its length first, so the
// encoding is injective: two entries that differ in any column have
// different encodings (the tests check this with a decoder and random
// entries). Every column of the table is covered, so editing any cell of
// an entry changes its hash.
//
// The first entry's prev_hash is Genesis, 64 "0" characters. Each later
// entry's prev_hash is the previous entry's hash, so changing, removing,
// inserting or moving an entry breaks the chain at that point, unless
// every later hash is recomputed as well; an auditor who keeps the head
// hash that Verify reports (an Anchor) detects that too.
//
// Worked example, for an auditor's reimplementation: the event with id
// "00000000-0000-4000-8000-000000000001", stream "child-1", version 1,
// position 1/1, type "child.registered.v1", data {"k":"v"}, actor
// "worker-ann", actor role "worker", reason "", effective and recorded at
// 2026-03-02T09:00:00Z, and nil correlation and causation ids, is the first
// event of the log. Its leaf hash (the ledger's leaf encoding: each field
// after a 4-byte big-endian length, but the version, 8 bytes big-endian;
// times in RFC 3339 UTC; SHA-256 of 0x00 and the encoding) is
//
//	f9a211e057e84e2b344d5152f5cea576c8e5fdfcfc7ce793c2148af395577314
//
// Its entry has seq 1, prev_hash Genesis, that event_id, position 1/1,
// that type and stream, child_id "00000000-0000-4000-8000-000000000002"
// (from a payload that names the child), account_id NULL, that actor, actor
// role and reason, effective_at and recorded_at 1772442000000000, that
// data, leaf_index 0 and that leaf_hash; its hash is
//
//	694ca57a830ebeb3ed5822b6a9bc2bf1f1bc8b472e1aabdaae331916c67edcdb
//
// (TestExampleHash pins both; this Python computes them too:
//
//	import hashlib, struct, uuid
//	def field(b): return struct.pack(">I", len(b)) + b
//	zero = bytes(16)
//	leaf = (field(b"accessledger.leaf.v1")
//	        + field(uuid.UUID("00000000-0000-4000-8000-000000000001").bytes)
//	        + field(b"child-1") + struct.pack(">Q", 1) + field(b"child.registered.v1")
//	        + field(b'{"k":"v"}') + field(b"worker-ann") + field(b"worker") + field(b"")
//	        + field(b"2026-03-02T09:00:00Z") + field(b"2026-03-02T09:00:00Z")
//	        + field(zero) + field(zero))
//	leaf_hash = hashlib.sha256(b"\x00" + leaf).hexdigest()
//	def text(s): s = s.encode(); return struct.pack(">Q", len(s)) + s
//	def integer(v): return struct.pack(">q", v)
//	m = (text("accessledger.audit.v2") + integer(1) + text("0" * 64)
//	     + text("00000000-0000-4000-8000-000000000001") + integer(1) + integer(1)
//	     + text("child.registered.v1") + text("child-1")
//	     + b"\x01" + text("00000000-0000-4000-8000-000000000002") + b"\x00"
//	     + text("worker-ann") + text("worker") + text("")
//	     + integer(1772442000000000) + integer(1772442000000000)
//	     + text('{"k":"v"}') + integer(0) + text(leaf_hash) + text("end"))
//	print(leaf_hash, hashlib.sha256(m).hexdigest())
//
// ).
//
// # Privacy (R11)
//
// The trail stores each event's payload as the log holds it. Apply accepts
// only events the domain's catalogue decodes, whose data is a JSON object
// in valid UTF-8: the catalogue keeps only a masked phone hint ("***" and
// three digits) and has no field for a password, token or secret, so none
// can reach the trail. An event that does not decode stops the projection
// with an error wrapping ErrRejected rather than being recorded.
package audit
