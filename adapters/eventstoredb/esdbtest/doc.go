// Package esdbtest serves an in-process stand-in for a single-node
// EventStoreDB / KurrentDB server (v23.10 / v24.x semantics) over real gRPC on
// 127.0.0.1, for tests that use the real client
// (github.com/EventStore/EventStore-Client-Go/v4/esdb), the way
// net/http/httptest serves HTTP. It is built on the client module's own
// generated stubs (protos/streams, protos/shared, protos/serverfeatures,
// protos/gossip); only the storage is in memory.
//
//	srv := esdbtest.Start(t)                  // stopped by t.Cleanup
//	cfg, _ := esdb.ParseConnectionString(srv.URL())
//	cfg.Logger = esdb.NoopLogging()
//	client, _ := esdb.NewClient(cfg)
//
// # Emulated behaviour
//
// The rules below were taken from the server's source (EventStore/EventStore:
// Streams.Append.cs, IndexWriter.CheckCommit, RequestManagerBase, AllReader,
// Enumerators.*Subscription*.cs, SubscriptionsService, RpcExceptions.cs) and
// from the client's recorded test data of a real node.
//
// Append (Streams.Append, options then proposed messages):
//   - Expected revision any, no_stream, stream_exists, or an exact revision.
//     stream_exists also passes when only the metadata stream "$$name" exists.
//   - Success carries current_revision (the last event written) and
//     position with commit == prepare == the position of the last event of
//     the append.
//   - A conflict is an in-band WrongExpectedVersion response (not a gRPC
//     error) with the current revision (or current_no_stream) and the
//     expected option, both in the current and the 20.6.0 fields; the client
//     turns it into ErrorCodeWrongExpectedVersion "expecting 'X' but got 'Y'".
//   - Idempotency as in IndexWriter.CheckCommit. With an exact revision or
//     no_stream (-1) below the stream's current revision, the ids are compared
//     with the events right after the expected revision: all equal → success
//     without writing; the first differs → wrong expected version; a later one
//     differs (partial match, "corrupted idempotency") → wrong expected
//     version too. With any or stream_exists the ids are looked up in a
//     bounded cache of recently committed ids (WithIdempotencyCacheSize): if
//     the first id is unknown or belongs to another stream the events are
//     written (so an id reused in another stream is NOT refused, and only the
//     first id decides whether a batch is new); if all are known for this
//     stream → success without writing; if only a prefix is → wrong expected
//     version.
//   - An idempotent success reports the revision of the LAST MATCHED event
//     (not the stream's current revision) and that event's position
//     (commit == prepare), as the server's AlreadyCommitted path does.
//   - All or nothing: nothing is written unless every check passes.
//   - MaxAppendSize (default 1,048,576 bytes, WithMaxAppendSize): the sum of
//     the events' data lengths is counted — v23.10/v24's Event.SizeOnDisk
//     effectively counts the data only; WithAppendSizeCountingMetadata counts
//     data + metadata + 2*len(type) as KurrentDB 25+. Over the limit the call
//     fails with status InvalidArgument "Maximum Append Size of N Exceeded."
//     and trailers exception=maximum-append-size-exceeded,
//     maximum-append-size=N; nothing is written. The client has no mapping for
//     InvalidArgument: it returns *esdb.Error with ErrorCodeUnknown wrapping
//     the gRPC status error (status.Code(errors.Unwrap(err)) ==
//     codes.InvalidArgument).
//   - A proposed message without the "type" or "content-type" metadata fails
//     with InvalidArgument and exception=missing-required-metadata-property.
//   - Event id, type, data and custom metadata are kept byte-exact. As on the
//     server only "is JSON" is stored: content-type reads back as
//     "application/json" or "application/octet-stream" (the only two the Go
//     client sends). "created" is set by the server, in .NET ticks (100ns)
//     since the Unix epoch, one value per append.
//
// Positions: the log is a sequence of byte offsets; each record takes the
// approximate size of a v2 prepare record (88 bytes plus the stream name,
// type, data and metadata), after a 128-byte epoch record, so no event is at
// position 0 and positions grow with event size. Every event's position has
// commit == prepare == its log position, in $all reads, stream reads (as
// since 22.6) and subscriptions.
//
// Reads (Streams.Read with a count):
//   - A stream forwards or backwards from start, end or a revision
//     (inclusive), at most count events; backwards from a revision past the
//     end starts at the last event. A stream without events answers with the
//     StreamNotFound message, which the client reports as
//     ErrorCodeResourceNotFound on the first Recv.
//   - $all forwards from a position P returns the events at positions >= P
//     (INCLUSIVE); backwards from P returns the events that end at or before
//     P, i.e. positioned before an event at P (EXCLUSIVE) — as AllReader does
//     and as the client's recorded test data of a real node shows
//     (all-c1788-p1788.json starts at 1788, all-back-c3386-p3386.json at
//     3256). $all holds system events too: two are written at start
//     ("$epoch-information" and "$$$scavenges"/"$metadata") and
//     AppendSystemEvent adds more at any time.
//
// Subscriptions (Streams.Read with the subscription option): the
// confirmation is sent first, then the catch-up events, then CaughtUp when
// the subscription goes live (the v4 client understands CaughtUp and
// FellBehind; FellBehind is never sent since no live event is ever lost).
// Live delivery waits on a channel closed at each append (no polling).
//   - A stream from revision N delivers N+1 onwards (EXCLUSIVE), from start
//     revision 0 onwards, from end only later events; a stream that does not
//     exist yet is simply waited for.
//   - $all from position P delivers the events positioned strictly after P
//     (EXCLUSIVE, v24 semantics; v23.10 skips the first event at or after P,
//     which is the same when P is an event's position), from start every
//     record, from end only later records.
//   - Filters on $all by stream name or event type, with a prefix list or a
//     regular expression (regex wins when both are set; unanchored match;
//     Go RE2 syntax instead of .NET's). Catch-up reads pages of at most 32
//     matching events and at most maxSearchWindow considered events (32 when
//     the window option is "count"), counts every considered event, and sends
//     a Checkpoint each time checkpointIntervalMultiplier*maxSearchWindow
//     events were considered, at max(last event sent, start of the page);
//     on reaching the end of the log it sends one more checkpoint (again at
//     max(last event sent, page start), where a page start after the first is
//     (post-position of the previous record, prepare 0)), then CaughtUp. Live,
//     it sends a Checkpoint at the position of every interval-th appended
//     event, matching or not.
//
// Other calls: ServerFeatures.GetSupportedMethods answers like a 24.x node
// (version WithServerVersion, default 24.10.0) listing only the methods this
// server implements (streams read and append), so the client uses the gRPC
// API and never a feature this server lacks. Gossip.Read reports one alive
// leader, this server, so "esdb+discover://" also works; a plain
// "esdb://host:port" connection string makes the client call only
// GetSupportedMethods, never gossip. Keepalive pings every 10s are allowed.
//
// Server control: Stop closes the listener and all connections (calls in
// flight end with Unavailable), keeping the data; Restart serves the same data
// on the same port; DropSubscriptions ends every Read in progress with
// Unavailable, as a node restart or leader change does; Subscriptions counts
// live subscriptions; Events counts the records of $all.
//
// # Not emulated
//
//   - Streams.Delete, Tombstone and BatchAppend return Unimplemented; so do
//     persistent subscriptions, projections, users, operations and monitoring
//     (not listed in ServerFeatures either). Hence no deleted streams.
//   - Stream metadata ($$stream) is stored as an ordinary stream; $maxAge,
//     $maxCount, $tb and ACLs have no effect. No authentication or
//     authorization (an insecure node); credentials are ignored. Link events
//     ($>) are not resolved. The requires-leader header is ignored.
//   - An append with no events only checks the expected revision and returns
//     the current revision with no position (the real node writes an empty
//     record).
//   - Over MaxAppendSize the server reads the rest of the request before
//     answering, so the client always gets the status from CloseAndRecv. A
//     real node ends the call at once, and a client still sending may then see
//     io.EOF from Send (esdb.ErrorCodeUnknown "could not send append request")
//     instead of the InvalidArgument status.
//   - Positions are not validated: a $all read or subscription from a position
//     that is not a record boundary starts at the next record instead of
//     failing with InvalidPosition.
//   - Slow consumers are never dropped ("consumer too slow" / Aborted); a
//     subscriber that stops reading blocks its own stream by gRPC flow control
//     and is dropped by DropSubscriptions only once its send completes. The
//     live checkpoint counter starts when the subscription goes live (the node
//     starts counting at subscribe time).
//   - The idempotency cache survives Stop/Restart (a real restart empties the
//     in-memory cache; exact-revision idempotency is unaffected).
package esdbtest
