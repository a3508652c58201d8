package esdbtest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestAppendExpectedRevision(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())

	tests := []struct {
		name     string
		existing int  // events already in the stream
		withMeta bool // the stream's metadata stream $$name exists
		expected esdb.ExpectedRevision
		// wantNext is the revision of the last event after a success; when
		// wantWrong is set the append must fail with these details instead.
		wantNext  uint64
		wantWrong []string // expected, current as the client formats them
	}{
		{name: "any on a new stream", expected: esdb.Any{}, wantNext: 0},
		{name: "any on an existing stream", existing: 2, expected: esdb.Any{}, wantNext: 2},
		{name: "no stream on a new stream", expected: esdb.NoStream{}, wantNext: 0},
		{name: "no stream on an existing stream", existing: 1, expected: esdb.NoStream{}, wantWrong: []string{"no_stream", "0"}},
		{name: "stream exists on an existing stream", existing: 3, expected: esdb.StreamExists{}, wantNext: 3},
		{name: "stream exists on a new stream", expected: esdb.StreamExists{}, wantWrong: []string{"stream_exists", "no_stream"}},
		{name: "stream exists when only its metadata exists", withMeta: true, expected: esdb.StreamExists{}, wantNext: 0},
		{name: "exact revision matching", existing: 2, expected: esdb.Revision(1), wantNext: 2},
		{name: "exact revision behind", existing: 3, expected: esdb.Revision(0), wantWrong: []string{"0", "2"}},
		{name: "exact revision ahead", existing: 1, expected: esdb.Revision(5), wantWrong: []string{"5", "0"}},
		{name: "exact revision on a new stream", expected: esdb.Revision(0), wantWrong: []string{"0", "no_stream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := "acc-" + uuid.NewString()
			for i := 0; i < tt.existing; i++ {
				appendOK(t, c, stream, esdb.Any{}, jsonEvent("Seeded", `{}`))
			}
			if tt.withMeta {
				_, err := c.SetStreamMetadata(ctxT(t), stream, esdb.AppendToStreamOptions{}, esdb.StreamMetadata{})
				require.NoError(t, err)
			}
			before := srv.Events()

			res, err := c.AppendToStream(ctxT(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: tt.expected},
				jsonEvent("Tested", `{"n":1}`))

			if tt.wantWrong != nil {
				wrongVersion(t, err, tt.wantWrong[0], tt.wantWrong[1])
				require.Equal(t, before, srv.Events(), "a refused append writes nothing")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantNext, res.NextExpectedVersion)
			require.NotZero(t, res.CommitPosition)
			require.Equal(t, res.CommitPosition, res.PreparePosition)
			require.Equal(t, before+1, srv.Events())

			last, err := readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
			require.NoError(t, err)
			require.Len(t, last, 1)
			require.Equal(t, tt.wantNext, last[0].OriginalEvent().EventNumber)
			require.Equal(t, res.CommitPosition, last[0].OriginalEvent().Position.Commit,
				"the append reports the position of its last event")
		})
	}
}

// TestWrongExpectedVersionWire checks the raw response: the server fills the
// current fields and the 20.6.0 ones, and answers in-band, not with a status.
func TestWrongExpectedVersionWire(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	appendOK(t, c, "acc-1", esdb.NoStream{}, jsonEvent("A", `{}`), jsonEvent("B", `{}`))

	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	raw := streams.NewStreamsClient(conn)

	tests := []struct {
		name  string
		opts  *streams.AppendReq_Options
		check func(t *testing.T, w *streams.AppendResp_WrongExpectedVersion)
	}{
		{
			name: "no stream",
			opts: &streams.AppendReq_Options{ExpectedStreamRevision: &streams.AppendReq_Options_NoStream{NoStream: &shared.Empty{}}},
			check: func(t *testing.T, w *streams.AppendResp_WrongExpectedVersion) {
				require.NotNil(t, w.GetExpectedNoStream())
				require.Equal(t, ^uint64(0), w.GetExpectedRevision_20_6_0())
				require.Equal(t, uint64(1), w.GetCurrentRevision())
				require.Equal(t, uint64(1), w.GetCurrentRevision_20_6_0())
			},
		},
		{
			name: "exact revision",
			opts: &streams.AppendReq_Options{ExpectedStreamRevision: &streams.AppendReq_Options_Revision{Revision: 7}},
			check: func(t *testing.T, w *streams.AppendResp_WrongExpectedVersion) {
				require.Equal(t, uint64(7), w.GetExpectedRevision())
				require.Equal(t, uint64(7), w.GetExpectedRevision_20_6_0())
				require.Equal(t, uint64(1), w.GetCurrentRevision())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call, err := raw.Append(ctxT(t))
			require.NoError(t, err)
			tt.opts.StreamIdentifier = &shared.StreamIdentifier{StreamName: []byte("acc-1")}
			require.NoError(t, call.Send(&streams.AppendReq{Content: &streams.AppendReq_Options_{Options: tt.opts}}))
			require.NoError(t, call.Send(&streams.AppendReq{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
				Id:       toProtoUUID(uuid.New(), false),
				Metadata: map[string]string{"type": "C", "content-type": "application/json"},
				Data:     []byte(`{}`),
			}}}))
			resp, err := call.CloseAndRecv()
			require.NoError(t, err)
			w := resp.GetWrongExpectedVersion()
			require.NotNil(t, w, "got %v", resp)
			tt.check(t, w)
		})
	}
}

func TestAppendIdempotency(t *testing.T) {
	type setup struct {
		stream string
		a, b   esdb.EventData // written together with "no stream": revisions 0, 1
		c      esdb.EventData // written alone with "any": revision 2
	}
	tests := []struct {
		name     string
		expected esdb.ExpectedRevision
		events   func(s setup) []esdb.EventData
		// wantRev is the revision reported for a success; wantWrite the
		// number of events the append adds to the log.
		wantRev   uint64
		wantWrite int
		wantWrong []string
	}{
		{
			name: "same ids at the same expected revision (no stream)", expected: esdb.NoStream{},
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{s.a, s.b} },
			wantRev: 1,
		},
		{
			name: "same id at the same exact revision", expected: esdb.Revision(1),
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{s.c} },
			wantRev: 2,
		},
		{
			name: "ids sitting right after the expected revision", expected: esdb.Revision(0),
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{s.b, s.c} },
			wantRev: 2,
		},
		{
			name: "prefix of the written batch", expected: esdb.NoStream{},
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{s.a} },
			wantRev: 0,
		},
		{
			name: "same ids with any", expected: esdb.Any{},
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{s.a, s.b} },
			wantRev: 1,
		},
		{
			name: "same ids with stream exists", expected: esdb.StreamExists{},
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{s.b, s.c} },
			wantRev: 2,
		},
		{
			name: "partial match at the expected revision", expected: esdb.NoStream{},
			events:    func(s setup) []esdb.EventData { return []esdb.EventData{s.a, jsonEvent("New", `{}`)} },
			wantWrong: []string{"no_stream", "2"},
		},
		{
			name: "partial match with any", expected: esdb.Any{},
			events:    func(s setup) []esdb.EventData { return []esdb.EventData{s.b, jsonEvent("New", `{}`)} },
			wantWrong: []string{"any", "2"},
		},
		{
			name: "batch longer than the stream", expected: esdb.Revision(1),
			events:    func(s setup) []esdb.EventData { return []esdb.EventData{s.c, jsonEvent("New", `{}`)} },
			wantWrong: []string{"1", "2"},
		},
		{
			name: "known id at another revision", expected: esdb.Revision(1),
			events:    func(s setup) []esdb.EventData { return []esdb.EventData{s.a} },
			wantWrong: []string{"1", "2"},
		},
		{
			name: "known ids with a revision ahead", expected: esdb.Revision(9),
			events:    func(s setup) []esdb.EventData { return []esdb.EventData{s.a, s.b} },
			wantWrong: []string{"9", "2"},
		},
		{
			name: "any: only the first id decides, a new first id writes all", expected: esdb.Any{},
			events:  func(s setup) []esdb.EventData { return []esdb.EventData{jsonEvent("New", `{}`), s.a} },
			wantRev: 4, wantWrite: 2,
		},
	}
	srv := Start(t)
	c := newClient(t, srv.URL())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := setup{stream: "acc-" + uuid.NewString(), a: jsonEvent("A", `{"a":1}`), b: jsonEvent("B", `{"b":2}`), c: jsonEvent("C", `{"c":3}`)}
			appendOK(t, c, s.stream, esdb.NoStream{}, s.a, s.b)
			appendOK(t, c, s.stream, esdb.Any{}, s.c)
			before := srv.Events()

			res, err := c.AppendToStream(ctxT(t), s.stream, esdb.AppendToStreamOptions{ExpectedRevision: tt.expected}, tt.events(s)...)

			if tt.wantWrong != nil {
				wrongVersion(t, err, tt.wantWrong[0], tt.wantWrong[1])
				require.Equal(t, before, srv.Events())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantRev, res.NextExpectedVersion)
			require.Equal(t, before+tt.wantWrite, srv.Events())
			evs, err := readStream(t, c, s.stream, esdb.ReadStreamOptions{From: esdb.Revision(tt.wantRev)}, 1)
			require.NoError(t, err)
			require.Equal(t, evs[0].OriginalEvent().Position.Commit, res.CommitPosition,
				"the position reported is that of the event at the reported revision")
			require.Equal(t, res.CommitPosition, res.PreparePosition)
		})
	}

	t.Run("an id reused in another stream is written", func(t *testing.T) {
		shared := jsonEvent("Shared", `{}`)
		appendOK(t, c, "acc-"+uuid.NewString(), esdb.NoStream{}, shared)
		for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}} {
			before := srv.Events()
			res := appendOK(t, c, "acc-"+uuid.NewString(), exp, shared)
			require.Equal(t, uint64(0), res.NextExpectedVersion)
			require.Equal(t, before+1, srv.Events())
		}
	})
}

func TestAppendIdempotencyCacheIsBounded(t *testing.T) {
	srv := Start(t, WithIdempotencyCacheSize(1))
	c := newClient(t, srv.URL())
	a, b := jsonEvent("A", `{}`), jsonEvent("B", `{}`)
	appendOK(t, c, "acc-1", esdb.Any{}, a)
	appendOK(t, c, "acc-1", esdb.Any{}, b)

	res := appendOK(t, c, "acc-1", esdb.Any{}, b)
	require.Equal(t, uint64(1), res.NextExpectedVersion, "the most recent id is still known")

	res = appendOK(t, c, "acc-1", esdb.Any{}, a)
	require.Equal(t, uint64(2), res.NextExpectedVersion, "an evicted id is written again with any")

	_, err := c.AppendToStream(ctxT(t), "acc-1", esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, b)
	require.NoError(t, err, "exact revisions check the stream itself, not the cache")
}

func TestAppendMaxSize(t *testing.T) {
	big := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	tests := []struct {
		name   string
		opts   []Option
		events []esdb.EventData
		refuse bool
	}{
		{name: "one event at the limit", events: []esdb.EventData{{EventType: "T", Data: big(1000)}}},
		{name: "one event over the limit", events: []esdb.EventData{{EventType: "T", Data: big(1001)}}, refuse: true},
		{name: "the limit applies to the whole append", events: []esdb.EventData{{EventType: "T", Data: big(600)}, {EventType: "T", Data: big(600)}}, refuse: true},
		{name: "custom metadata is not counted (v23.10/v24)", events: []esdb.EventData{{EventType: "T", Data: big(900), Metadata: big(500)}}},
		{
			name: "custom metadata and type counted (KurrentDB 25)", opts: []Option{WithAppendSizeCountingMetadata()},
			events: []esdb.EventData{{EventType: "T", Data: big(900), Metadata: big(99)}}, refuse: true,
		},
		{
			name: "KurrentDB 25 accounting at the limit", opts: []Option{WithAppendSizeCountingMetadata()},
			events: []esdb.EventData{{EventType: "T", Data: big(900), Metadata: big(98)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := Start(t, append([]Option{WithMaxAppendSize(1000)}, tt.opts...)...)
			c := newClient(t, srv.URL())
			before := srv.Events()

			_, err := c.AppendToStream(ctxT(t), "acc-1", esdb.AppendToStreamOptions{}, tt.events...)

			if !tt.refuse {
				require.NoError(t, err)
				require.Equal(t, before+len(tt.events), srv.Events())
				return
			}
			var esErr *esdb.Error
			require.ErrorAs(t, err, &esErr)
			require.Equal(t, esdb.ErrorCodeUnknown, esErr.Code(), "the client does not map InvalidArgument")
			st, ok := status.FromError(esErr.Unwrap())
			require.True(t, ok, "the client keeps the gRPC status: %v", err)
			require.Equal(t, codes.InvalidArgument, st.Code())
			require.Equal(t, "Maximum Append Size of 1000 Exceeded.", st.Message())
			require.Equal(t, before, srv.Events(), "nothing is written")
			_, err = readStream(t, c, "acc-1", esdb.ReadStreamOptions{}, 10)
			require.True(t, isNotFound(err), "stream must not exist: %v", err)
		})
	}
}

func isNotFound(err error) bool {
	var esErr *esdb.Error
	return errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound
}

// TestAppendMaxSizeTrailers checks the status and trailers on the wire.
func TestAppendMaxSizeTrailers(t *testing.T) {
	srv := Start(t, WithMaxAppendSize(10))
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	var trailer metadata.MD
	call, err := streams.NewStreamsClient(conn).Append(ctxT(t), grpc.Trailer(&trailer))
	require.NoError(t, err)
	require.NoError(t, call.Send(&streams.AppendReq{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("acc-1")},
		ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
	}}}))
	for i := 0; i < 3; i++ {
		require.NoError(t, call.Send(&streams.AppendReq{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
			Id:       toProtoUUID(uuid.New(), false),
			Metadata: map[string]string{"type": "T", "content-type": "application/octet-stream"},
			Data:     []byte("123456"),
		}}}))
	}
	_, err = call.CloseAndRecv()
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Equal(t, []string{"maximum-append-size-exceeded"}, trailer.Get("exception"))
	require.Equal(t, []string{"10"}, trailer.Get("maximum-append-size"))
	require.Equal(t, 2, srv.Events(), "only the startup system events")
}

func TestAppendMissingRequiredMetadata(t *testing.T) {
	srv := Start(t)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	var trailer metadata.MD
	call, err := streams.NewStreamsClient(conn).Append(ctxT(t), grpc.Trailer(&trailer))
	require.NoError(t, err)
	require.NoError(t, call.Send(&streams.AppendReq{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("acc-1")},
		ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
	}}}))
	require.NoError(t, call.Send(&streams.AppendReq{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
		Id:       toProtoUUID(uuid.New(), false),
		Metadata: map[string]string{"type": "T"},
	}}}))
	_, err = call.CloseAndRecv()
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Equal(t, []string{"missing-required-metadata-property"}, trailer.Get("exception"))
	require.Equal(t, 2, srv.Events())
}

func TestAppendKeepsEventExactly(t *testing.T) {
	srv := Start(t)
	c := newClient(t, srv.URL())
	events := []esdb.EventData{
		{EventID: uuid.New(), EventType: "ChildRegistered", ContentType: esdb.ContentTypeJson, Data: []byte(`{"name":"Zoë"}`), Metadata: []byte(`{"corr":"42"}`)},
		{EventID: uuid.New(), EventType: "Blob", ContentType: esdb.ContentTypeBinary, Data: []byte{0, 1, 2, 255}, Metadata: []byte{9, 0}},
		{EventID: uuid.New(), EventType: "Empty", ContentType: esdb.ContentTypeBinary},
	}
	before := time.Now().Add(-time.Second)
	res := appendOK(t, c, "child-1", esdb.NoStream{}, events...)
	after := time.Now().Add(time.Second)

	got, err := readStream(t, c, "child-1", esdb.ReadStreamOptions{}, 10)
	require.NoError(t, err)
	require.Len(t, got, len(events))
	for i, want := range events {
		e := got[i].OriginalEvent()
		require.Equal(t, want.EventID, e.EventID)
		require.Equal(t, want.EventType, e.EventType)
		wantContentType := "application/octet-stream"
		if want.ContentType == esdb.ContentTypeJson {
			wantContentType = "application/json"
		}
		require.Equal(t, wantContentType, e.ContentType)
		require.Equal(t, string(want.Data), string(e.Data))
		require.Equal(t, string(want.Metadata), string(e.UserMetadata))
		require.Equal(t, "child-1", e.StreamID)
		require.Equal(t, uint64(i), e.EventNumber)
		require.True(t, e.CreatedDate.After(before) && e.CreatedDate.Before(after), "created %v", e.CreatedDate)
		require.NotZero(t, e.Position.Commit)
		require.Equal(t, e.Position.Commit, e.Position.Prepare)
		if i > 0 {
			require.Greater(t, e.Position.Commit, got[i-1].OriginalEvent().Position.Commit)
		}
	}
	require.Equal(t, got[len(got)-1].OriginalEvent().Position.Commit, res.CommitPosition)
}

// TestCreatedIsTicks checks the raw "created" value: .NET ticks (100ns) since
// the Unix epoch.
func TestCreatedIsTicks(t *testing.T) {
	srv := Start(t)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	call, err := streams.NewStreamsClient(conn).Read(context.Background(), &streams.ReadReq{Options: &streams.ReadReq_Options{
		StreamOption: &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{
			AllOption: &streams.ReadReq_Options_AllOptions_Start{Start: &shared.Empty{}},
		}},
		CountOption:  &streams.ReadReq_Options_Count{Count: 1},
		FilterOption: &streams.ReadReq_Options_NoFilter{NoFilter: &shared.Empty{}},
		UuidOption:   &streams.ReadReq_Options_UUIDOption{Content: &streams.ReadReq_Options_UUIDOption_String_{String_: &shared.Empty{}}},
	}})
	require.NoError(t, err)
	resp, err := call.Recv()
	require.NoError(t, err)
	ev := resp.GetEvent().GetEvent()
	require.NotNil(t, ev)
	ticks, err := strconv.ParseInt(ev.GetMetadata()["created"], 10, 64)
	require.NoError(t, err)
	nowTicks := time.Now().UnixNano() / 100
	require.InDelta(t, nowTicks, ticks, float64(time.Minute/100), "created is in 100ns ticks since the Unix epoch")
	_, err = uuid.Parse(ev.GetId().GetString_())
	require.NoError(t, err, "uuid_option string is honoured")
}
