// Package audit is the audit trail read model (rule R14, architecture
// decision 10): one entry per event of the log, in global order, each
// chained to the one before it by SHA-256, so that editing, deleting,
// inserting or reordering entries is detected by Verify (accessd audit
// verify, GET /v1/audit/verify). List answers GET /v1/audit.
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
//	prev_hash        TEXT    the previous entry's hash; Genesis for entry 1
//	hash             TEXT    lower-case hex SHA-256 of the canonical encoding below
//
// child_id and account_id come from the event's payload (for example a
// placement names the child and the carer's account); they are indexed, as
// are actor and recorded_at, for List's filters. event_id is unique.
//
// # Canonical encoding and hash
//
// An entry's hash is the lower-case hexadecimal SHA-256 of the following
// byte string, the concatenation of these 17 fields in this order:
//
//	field  column            encoding
//	 1     (version tag)     text "accessledger.audit.v1"
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
//	17     (terminator)      text "end"
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
// Worked example, for an auditor's reimplementation: the entry with seq 1,
// prev_hash Genesis, event_id "00000000-0000-4000-8000-000000000001",
// position 1/1, type "child.registered.v1", stream "child-1", child_id
// "00000000-0000-4000-8000-000000000002", account_id NULL, actor
// "worker-ann", actor_role "worker", reason "", effective_at and
// recorded_at 1772442000000000 (2026-03-02T09:00:00Z) and data
// {"k":"v"} has the hash
//
//	99eb801b0ab45aca879b7e9708b8452b3f0ec7562df7381835d1bc204020927a
//
// (TestExampleHash pins it; this Python computes it too:
//
//	import hashlib, struct
//	def text(s): s = s.encode(); return struct.pack(">Q", len(s)) + s
//	def integer(v): return struct.pack(">q", v)
//	m = (text("accessledger.audit.v1") + integer(1) + text("0" * 64)
//	     + text("00000000-0000-4000-8000-000000000001") + integer(1) + integer(1)
//	     + text("child.registered.v1") + text("child-1")
//	     + b"\x01" + text("00000000-0000-4000-8000-000000000002") + b"\x00"
//	     + text("worker-ann") + text("worker") + text("")
//	     + integer(1772442000000000) + integer(1772442000000000)
//	     + text('{"k":"v"}') + text("end"))
//	print(hashlib.sha256(m).hexdigest())
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
