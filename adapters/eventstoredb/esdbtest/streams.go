package esdbtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf16"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Metadata keys and values of the protocol.
const (
	metaType        = "type"
	metaContentType = "content-type"
	metaCreated     = "created"
	contentTypeJSON = "application/json"
	contentTypeOcts = "application/octet-stream"
)

// readBatchSize is the server's page size for subscriptions (Enumerator.ReadBatchSize).
const readBatchSize = 32

// errHandler is what the server's ASP.NET gRPC host answers when a handler
// throws an unexpected exception (e.g. InvalidOperationException on a request
// shape it does not support).
var errHandler = status.Error(codes.Unknown, "Exception was thrown by handler.")

// errDroppedStatus ends a Read cut by DropSubscriptions.
var errDroppedStatus = status.Error(codes.Unavailable, "esdbtest: connection to the node dropped (subscriptions dropped)")

type streamsService struct {
	streams.UnimplementedStreamsServer
	s *Server
}

// Append implements Streams.Append: options first, then proposed messages.
func (h *streamsService) Append(srv streams.Streams_AppendServer) error {
	first, err := srv.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errHandler
		}
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return errHandler
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	var exp expectation
	switch v := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Any:
		exp.kind = expectAny
	case *streams.AppendReq_Options_NoStream:
		exp.kind = expectNoStream
	case *streams.AppendReq_Options_StreamExists:
		exp.kind = expectStreamExists
	case *streams.AppendReq_Options_Revision:
		exp = expectation{kind: expectRevision, revision: v.Revision}
	default:
		return status.Errorf(codes.InvalidArgument, "'%v' is not a valid EventStore.Client.Streams.AppendReq+Types+Options+ExpectedStreamRevisionOneofCase", "None")
	}

	var (
		events  []proposed
		size    int
		refusal error
	)
	for {
		msg, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if refusal != nil {
			// The server refuses as soon as the limit is passed; draining the
			// rest lets the client read the status instead of an EOF on Send.
			continue
		}
		pm := msg.GetProposedMessage()
		if pm == nil {
			return errHandler
		}
		e, err := h.toProposed(srv, pm)
		if err != nil {
			refusal = err
			continue
		}
		size += h.eventSize(e)
		if size > h.s.cfg.maxAppendSize {
			srv.SetTrailer(metadata.Pairs(
				"exception", "maximum-append-size-exceeded",
				"maximum-append-size", strconv.Itoa(h.s.cfg.maxAppendSize),
			))
			refusal = status.Errorf(codes.InvalidArgument, "Maximum Append Size of %d Exceeded.", h.s.cfg.maxAppendSize)
			continue
		}
		events = append(events, e)
	}
	if refusal != nil {
		return refusal
	}
	if name == "" {
		return errHandler
	}
	res := h.s.store.appendEvents(name, exp, events)
	return srv.SendAndClose(toAppendResp(exp, res))
}

func (h *streamsService) toProposed(srv streams.Streams_AppendServer, pm *streams.AppendReq_ProposedMessage) (proposed, error) {
	eventType, ok := pm.GetMetadata()[metaType]
	if !ok {
		return proposed{}, h.missingMetadata(srv, metaType)
	}
	contentType, ok := pm.GetMetadata()[metaContentType]
	if !ok {
		return proposed{}, h.missingMetadata(srv, metaContentType)
	}
	id, err := fromProtoUUID(pm.GetId())
	if err != nil || id == uuid.Nil || eventType == "" {
		// new Event(...) throws ArgumentException for an empty id or type.
		return proposed{}, errHandler
	}
	data := pm.GetData()
	if data == nil {
		data = []byte{}
	}
	meta := pm.GetCustomMetadata()
	if meta == nil {
		meta = []byte{}
	}
	return proposed{
		id:        id,
		eventType: eventType,
		isJSON:    contentType == contentTypeJSON,
		data:      data,
		metadata:  meta,
	}, nil
}

// eventSize is the size counted against MaxAppendSize.
func (h *streamsService) eventSize(e proposed) int {
	if !h.s.cfg.sizeCountsMetadata {
		return len(e.data)
	}
	return len(e.data) + len(e.metadata) + 2*len(utf16.Encode([]rune(e.eventType)))
}

func (h *streamsService) missingMetadata(srv streams.Streams_AppendServer, key string) error {
	srv.SetTrailer(metadata.Pairs(
		"exception", "missing-required-metadata-property",
		"required-metadata-properties", metaType+","+metaContentType,
	))
	return status.Errorf(codes.InvalidArgument, "Required Metadata Property '%s' is missing", key)
}

func fromProtoUUID(u *shared.UUID) (uuid.UUID, error) {
	switch v := u.GetValue().(type) {
	case *shared.UUID_Structured_:
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], uint64(v.Structured.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(b[8:], uint64(v.Structured.GetLeastSignificantBits()))
		return uuid.UUID(b), nil
	case *shared.UUID_String_:
		return uuid.Parse(v.String_)
	}
	return uuid.Nil, fmt.Errorf("missing uuid")
}

func toProtoUUID(id uuid.UUID, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}}
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

// toAppendResp shapes the response as the v23.10+ server does, filling both
// the current and the 20.6.0 wrong-expected-version fields.
func toAppendResp(exp expectation, res appendResult) *streams.AppendResp {
	empty := &shared.Empty{}
	if !res.wrongExpectedVersion {
		ok := &streams.AppendResp_Success{}
		if res.current < 0 {
			ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: empty}
		} else {
			ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(res.current)}
		}
		if res.position < 0 {
			ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: empty}
		} else {
			p := uint64(res.position)
			ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
				CommitPosition: p, PreparePosition: p,
			}}
		}
		return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
	}
	w := &streams.AppendResp_WrongExpectedVersion{}
	switch exp.kind {
	case expectAny:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: empty}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: empty}
	case expectStreamExists:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: empty}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: empty}
	case expectNoStream:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: empty}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: math.MaxUint64}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.revision}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.revision}
	}
	if res.current < 0 {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: empty}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: empty}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(res.current)}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(res.current)}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// readState carries what every response of one Read call needs.
type readState struct {
	srv        streams.Streams_ReadServer
	drop       <-chan struct{}
	uuidString bool
}

// send writes one response unless the call was cancelled or dropped.
func (r *readState) send(resp *streams.ReadResp) error {
	if err := r.alive(); err != nil {
		return err
	}
	return r.srv.Send(resp)
}

func (r *readState) alive() error {
	select {
	case <-r.drop:
		return errDroppedStatus
	case <-r.srv.Context().Done():
		return status.FromContextError(r.srv.Context().Err()).Err()
	default:
		return nil
	}
}

// wait blocks until changed is closed, the call ends or it is dropped.
func (r *readState) wait(changed <-chan struct{}) error {
	select {
	case <-changed:
		return nil
	case <-r.drop:
		return errDroppedStatus
	case <-r.srv.Context().Done():
		return status.FromContextError(r.srv.Context().Err()).Err()
	}
}

func (r *readState) sendEvent(rec *record) error {
	return r.send(&streams.ReadResp{Content: &streams.ReadResp_Event{Event: toReadEvent(rec, r.uuidString)}})
}

func (r *readState) sendCheckpoint(p tfPos) error {
	if p == headOfTf {
		return nil
	}
	return r.send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
		CommitPosition: uint64(p.commit), PreparePosition: uint64(p.prepare),
	}}})
}

func (r *readState) sendCaughtUp() error {
	return r.send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}})
}

func toReadEvent(r *record, uuidString bool) *streams.ReadResp_ReadEvent {
	contentType := contentTypeOcts
	if r.isJSON {
		contentType = contentTypeJSON
	}
	p := uint64(r.pos)
	return &streams.ReadResp_ReadEvent{
		Event: &streams.ReadResp_ReadEvent_RecordedEvent{
			Id:               toProtoUUID(r.id, uuidString),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision:   r.revision,
			PreparePosition:  p,
			CommitPosition:   p,
			Metadata: map[string]string{
				metaType:        r.eventType,
				metaCreated:     strconv.FormatInt(r.created, 10),
				metaContentType: contentType,
			},
			CustomMetadata: r.metadata,
			Data:           r.data,
		},
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: p},
	}
}

// Read implements Streams.Read: reads of a stream or of $all, and
// subscriptions (count_option = subscription).
func (h *streamsService) Read(req *streams.ReadReq, srv streams.Streams_ReadServer) error {
	o := req.GetOptions()
	if o == nil {
		return errHandler
	}
	rs := &readState{
		srv:        srv,
		drop:       h.s.dropChannel(),
		uuidString: o.GetUuidOption().GetString_() != nil,
	}
	forward := o.GetReadDirection() == streams.ReadReq_Options_Forwards
	filter, err := toFilter(o.GetFilter())
	if err != nil {
		return err
	}

	switch c := o.GetCountOption().(type) {
	case *streams.ReadReq_Options_Count:
		if so := o.GetStream(); so != nil {
			if filter != nil {
				return errHandler
			}
			return h.readStream(rs, so, forward, c.Count)
		}
		if ao := o.GetAll(); ao != nil {
			return h.readAll(rs, ao, forward, c.Count, filter)
		}
		return errHandler
	case *streams.ReadReq_Options_Subscription:
		if !forward {
			return errHandler
		}
		if so := o.GetStream(); so != nil {
			if filter != nil {
				return errHandler
			}
			return h.subscribeStream(rs, so)
		}
		if ao := o.GetAll(); ao != nil {
			return h.subscribeAll(rs, ao, filter)
		}
	}
	return errHandler
}

func (h *streamsService) readStream(rs *readState, so *streams.ReadReq_Options_StreamOptions, forward bool, count uint64) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	kind, rev := fromStart, uint64(0)
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_End:
		kind = fromEnd
	case *streams.ReadReq_Options_StreamOptions_Revision:
		kind, rev = fromRevision, v.Revision
	}
	recs, ok := h.s.store.readStream(name, forward, kind, rev, count)
	if !ok {
		return rs.send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	for _, r := range recs {
		if err := rs.sendEvent(r); err != nil {
			return err
		}
	}
	return nil
}

// allStart decodes where a read or subscription of $all starts.
func allStart(ao *streams.ReadReq_Options_AllOptions) (startKind, tfPos) {
	switch v := ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_End:
		return fromEnd, tfPos{}
	case *streams.ReadReq_Options_AllOptions_Position:
		c, p := v.Position.GetCommitPosition(), v.Position.GetPreparePosition()
		if c > math.MaxInt64 || p > math.MaxInt64 {
			return fromEnd, tfPos{}
		}
		return fromRevision, tfPos{int64(c), int64(p)}
	}
	return fromStart, tfPos{}
}

func (h *streamsService) readAll(rs *readState, ao *streams.ReadReq_Options_AllOptions, forward bool, count uint64, filter *eventFilter) error {
	kind, from := allStart(ao)
	limit := count
	if filter != nil {
		limit = math.MaxUint64
	}
	sent := uint64(0)
	for _, r := range h.s.store.readAll(forward, kind, from, limit) {
		if sent >= count {
			break
		}
		if filter != nil && !filter.allows(r) {
			continue
		}
		if err := rs.sendEvent(r); err != nil {
			return err
		}
		sent++
	}
	return nil
}

// confirm sends the subscription confirmation and counts the subscription as
// live until the returned func is called.
func (h *streamsService) confirm(rs *readState) (func(), error) {
	if err := rs.send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}}); err != nil {
		return nil, err
	}
	h.s.subs.Add(1)
	return func() { h.s.subs.Add(-1) }, nil
}

// subscribeStream serves a catch-up subscription to one stream. From revision
// N it delivers N+1 onwards (exclusive), from Start revision 0 onwards, from
// End only events appended later. CaughtUp is sent when it goes live.
func (h *streamsService) subscribeStream(rs *readState, so *streams.ReadReq_Options_StreamOptions) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	var next uint64
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_End:
		next = h.s.store.streamLength(name)
	case *streams.ReadReq_Options_StreamOptions_Revision:
		next = v.Revision + 1
	}
	done, err := h.confirm(rs)
	if err != nil {
		return err
	}
	defer done()
	caughtUp := false
	for {
		recs, changed := h.s.store.streamSince(name, next)
		if len(recs) == 0 {
			if !caughtUp {
				if err := rs.sendCaughtUp(); err != nil {
					return err
				}
				caughtUp = true
			}
			if err := rs.wait(changed); err != nil {
				return err
			}
			continue
		}
		for _, r := range recs {
			if err := rs.sendEvent(r); err != nil {
				return err
			}
			next = r.revision + 1
		}
	}
}

// subscribeAll serves a catch-up subscription to $all, filtered or not.
//
// From a position P it delivers the events positioned strictly after P
// (exclusive); from Start every record; from End only records appended later.
// A filtered subscription reads the log in pages of at most 32 matching
// events and maxSearchWindow considered events, like the server, and sends a
// Checkpoint each time checkpointIntervalMultiplier*maxSearchWindow events
// have been considered, plus one when it reaches the end of the log, just
// before CaughtUp; while live it sends a Checkpoint at the position of every
// interval-th appended event (matching or not).
func (h *streamsService) subscribeAll(rs *readState, ao *streams.ReadReq_Options_AllOptions, filter *eventFilter) error {
	kind, from := allStart(ao)
	n, lastPos := h.s.store.tail()

	done, err := h.confirm(rs)
	if err != nil {
		return err
	}
	defer done()

	// checkpoint is the position of the last event or checkpoint sent on:
	// events are sent only after it.
	var checkpoint, pageStart tfPos
	idx := 0
	goLive := false
	switch kind {
	case fromStart:
		checkpoint, pageStart = headOfTf, tfPos{0, 0}
	case fromEnd:
		checkpoint, idx, goLive = lastPos, n, true
	default:
		checkpoint, pageStart = from, from
		idx = h.s.store.indexAtOrAfter(from)
		goLive = from.cmp(lastPos) >= 0
	}

	if !goLive {
		var err error
		if filter == nil {
			idx, checkpoint, err = h.catchUpAll(rs, idx, checkpoint)
		} else {
			idx, checkpoint, err = h.catchUpFiltered(rs, idx, checkpoint, pageStart, filter)
		}
		if err != nil {
			return err
		}
	}
	if err := rs.sendCaughtUp(); err != nil {
		return err
	}

	counter := uint64(0)
	for {
		recs, changed := h.s.store.allSince(idx)
		if len(recs) == 0 {
			if err := rs.wait(changed); err != nil {
				return err
			}
			continue
		}
		for _, r := range recs {
			idx++
			if r.tf().cmp(checkpoint) <= 0 {
				continue
			}
			if filter == nil || filter.allows(r) {
				if err := rs.sendEvent(r); err != nil {
					return err
				}
				checkpoint = r.tf()
			}
			if filter == nil {
				continue
			}
			counter++
			if counter >= filter.interval() {
				counter = 0
				if err := rs.sendCheckpoint(r.tf()); err != nil {
					return err
				}
				checkpoint = r.tf()
			}
		}
	}
}

// catchUpAll sends every record from index idx after checkpoint until the end
// of the log; it returns the next index and the last position sent.
func (h *streamsService) catchUpAll(rs *readState, idx int, checkpoint tfPos) (int, tfPos, error) {
	for {
		recs, _ := h.s.store.allSince(idx)
		if len(recs) == 0 {
			return idx, checkpoint, nil
		}
		for _, r := range recs {
			idx++
			if r.tf().cmp(checkpoint) <= 0 {
				continue
			}
			if err := rs.sendEvent(r); err != nil {
				return 0, tfPos{}, err
			}
			checkpoint = r.tf()
		}
	}
}

// catchUpFiltered emulates the server's filtered catch-up page by page
// (Enumerator.AllSubscriptionFiltered.CatchUp).
func (h *streamsService) catchUpFiltered(rs *readState, idx int, checkpoint, pageStart tfPos, f *eventFilter) (int, tfPos, error) {
	interval := f.interval()
	var counter uint64
	for {
		recs, _ := h.s.store.allSince(idx)
		matched, considered := 0, uint64(0)
		endOfStream := false
		next := pageStart
		for matched < readBatchSize && considered < f.window {
			if int(considered) >= len(recs) {
				endOfStream = true
				break
			}
			r := recs[considered]
			considered++
			next = tfPos{r.post, 0}
			if !f.allows(r) {
				continue
			}
			matched++
			if r.tf().cmp(checkpoint) <= 0 {
				continue
			}
			if err := rs.sendEvent(r); err != nil {
				return 0, tfPos{}, err
			}
			checkpoint = r.tf()
		}
		idx += int(considered)
		counter += considered
		if endOfStream {
			checkpoint = maxPos(checkpoint, pageStart)
			if err := rs.sendCheckpoint(checkpoint); err != nil {
				return 0, tfPos{}, err
			}
			return idx, checkpoint, nil
		}
		if counter >= interval {
			counter %= interval
			checkpoint = maxPos(checkpoint, pageStart)
			if err := rs.sendCheckpoint(checkpoint); err != nil {
				return 0, tfPos{}, err
			}
		}
		pageStart = next
	}
}
