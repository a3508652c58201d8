package esdbtest

import (
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// DefaultMaxAppendSize is the server's default MaxAppendSize (1 MiB).
const DefaultMaxAppendSize = 1_048_576

// DefaultIdempotencyCacheSize is how many recently committed event ids the
// emulated server remembers for idempotent appends with "any"/"stream exists".
// The real server bounds the same cache by memory (8 MiB), which holds a few
// hundred thousand ids.
const DefaultIdempotencyCacheSize = 100_000

// DefaultServerVersion is the version reported by ServerFeatures.
const DefaultServerVersion = "24.10.0"

// maxRecvMsgSize lets a single proposed event larger than gRPC's default 4 MiB
// reach the MaxAppendSize check, as with the real server.
const maxRecvMsgSize = 17 * 1024 * 1024

type config struct {
	maxAppendSize      int
	sizeCountsMetadata bool
	idCacheSize        int
	version            string
}

// Option configures a Server.
type Option func(*config)

// WithMaxAppendSize sets the server's MaxAppendSize in bytes (default
// DefaultMaxAppendSize).
func WithMaxAppendSize(bytes int) Option {
	return func(c *config) { c.maxAppendSize = bytes }
}

// WithAppendSizeCountingMetadata makes the MaxAppendSize check count each
// event's data + custom metadata + 2*len(type), as KurrentDB 25.0+ does.
// By default only the data is counted, which is what v23.10 and v24.x
// effectively do (an operator-precedence slip in Event.SizeOnDisk, fixed in
// KurrentDB PR #4882).
func WithAppendSizeCountingMetadata() Option {
	return func(c *config) { c.sizeCountsMetadata = true }
}

// WithIdempotencyCacheSize bounds how many committed event ids are remembered
// for idempotency of appends expecting "any" or "stream exists" (default
// DefaultIdempotencyCacheSize; 0 disables that check, as an evicted cache
// would). Appends expecting an exact revision or "no stream" check the stream
// itself and do not depend on it.
func WithIdempotencyCacheSize(n int) Option {
	return func(c *config) { c.idCacheSize = n }
}

// WithServerVersion sets the version that ServerFeatures reports.
func WithServerVersion(v string) Option {
	return func(c *config) { c.version = v }
}

// Server is an in-process single-node EventStoreDB gRPC server whose log is
// kept in memory. Its data survives Stop and Restart.
type Server struct {
	cfg   config
	store *store

	mu      sync.Mutex
	addr    string
	grpc    *grpc.Server
	serving chan struct{} // closed when the current Serve returns
	drop    chan struct{} // closed by DropSubscriptions
	closed  bool

	subs atomic.Int64
	id   uuid.UUID
}

// Start serves a new server on 127.0.0.1 on a free port. The server is
// stopped when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	cfg := config{
		maxAppendSize: DefaultMaxAppendSize,
		idCacheSize:   DefaultIdempotencyCacheSize,
		version:       DefaultServerVersion,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		cfg:   cfg,
		store: newStore(cfg.idCacheSize),
		drop:  make(chan struct{}),
		id:    uuid.New(),
	}
	s.writeStartupEvents()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("esdbtest: listen: %v", err)
	}
	s.mu.Lock()
	s.addr = lis.Addr().String()
	s.serveLocked(lis)
	s.mu.Unlock()
	tb.Cleanup(func() {
		s.Stop()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	})
	return s
}

// writeStartupEvents writes the system events a fresh node writes to $all.
func (s *Server) writeStartupEvents() {
	info, _ := json.Marshal(map[string]any{
		"epochId":          uuid.New().String(),
		"epochNumber":      0,
		"epochPosition":    0,
		"leaderInstanceId": s.id.String(),
	})
	s.AppendSystemEvent("$epoch-information", "$epoch-information", info)
	s.AppendSystemEvent("$$$scavenges", "$metadata", []byte(`{"$maxAge":2592000}`))
}

func (s *Server) serveLocked(lis net.Listener) {
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// The client pings every 10s even without active calls; grpc-go's
		// default policy would answer that with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             time.Second,
			PermitWithoutStream: true,
		}),
	)
	streams.RegisterStreamsServer(g, &streamsService{s: s})
	serverfeatures.RegisterServerFeaturesServer(g, &featuresService{s: s})
	gossip.RegisterGossipServer(g, &gossipService{s: s})
	done := make(chan struct{})
	s.grpc = g
	s.serving = done
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
}

// URL is the connection string of the server, e.g.
// "esdb://127.0.0.1:40123?tls=false".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("esdb://%s?tls=false", s.addr)
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop stops serving: the listener and every connection are closed and all
// calls in flight end (clients see codes.Unavailable). The data is kept. Stop
// is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	g, done := s.grpc, s.serving
	s.grpc, s.serving = nil, nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	g.Stop()
	<-done
}

// Restart serves the same data again, on the same port if it can be bound
// again within a few seconds (otherwise on a new port, see URL). A running
// server is stopped first.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		tb.Fatalf("esdbtest: Restart after the test that started the server ended")
	}
	var lis net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err = net.Listen("tcp", s.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Logf("esdbtest: port of %s not available again (%v); serving on a new port", s.addr, err)
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("esdbtest: listen: %v", err)
		}
		s.addr = lis.Addr().String()
	}
	s.serveLocked(lis)
}

// DropSubscriptions ends every Read call in progress (subscriptions and
// reads) with codes.Unavailable, as a node restart or a leader change would.
// Calls started afterwards are not affected.
func (s *Server) DropSubscriptions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.drop)
	s.drop = make(chan struct{})
}

func (s *Server) dropChannel() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drop
}

// Subscriptions is the number of subscriptions currently live: confirmed and
// not yet ended.
func (s *Server) Subscriptions() int {
	return int(s.subs.Load())
}

// Events is the number of records in $all, user and system events alike.
func (s *Server) Events() int {
	return s.store.count()
}

// AppendSystemEvent appends an event to stream (which should start with "$")
// whatever its current revision, as the server itself does for its own
// bookkeeping. Live subscriptions see it like any other event.
func (s *Server) AppendSystemEvent(stream, eventType string, data []byte) {
	if data == nil {
		data = []byte{}
	}
	s.store.appendEvents(stream, expectation{kind: expectAny}, []proposed{{
		id:        uuid.New(),
		eventType: eventType,
		isJSON:    json.Valid(data),
		data:      data,
		metadata:  []byte{},
	}})
}

// ReplaceData replaces the data of the stored event id, in place, as
// someone with write access to a real server's files could: readers see
// the new bytes at the same position. It reports whether the event was
// found. For the ledger's tamper tests.
func (s *Server) ReplaceData(id uuid.UUID, data []byte) bool {
	return s.store.replace(id, func(r *record) *record {
		c := *r
		c.data = append([]byte(nil), data...)
		return &c
	}, false)
}

// RemoveEvent removes the stored event id from $all (its stream keeps it),
// as a deleted record of a real server's files would read. It reports
// whether the event was found. For the ledger's tamper tests.
func (s *Server) RemoveEvent(id uuid.UUID) bool {
	return s.store.replace(id, nil, true)
}
