package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/adapters/auth"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// requestIDHeader carries the request id, in and out.
const requestIDHeader = "X-Request-Id"

// maxRequestID bounds an accepted X-Request-Id.
const maxRequestID = 128

type ctxKey int

// reqInfoKey carries the request's *reqInfo in its context.
const reqInfoKey ctxKey = 0

// reqInfo is what the outer handler knows of a request, for the access log
// and the handlers' own log lines: its id, and what the route handler and
// writeProblem fill in.
type reqInfo struct {
	id    string
	actor domain.Actor // set by the route handler once authenticated
	code  string       // the problem's code, set by writeProblem
}

// info returns the request's reqInfo, or nil outside the outer handler.
func info(ctx context.Context) *reqInfo {
	i, _ := ctx.Value(reqInfoKey).(*reqInfo)
	return i
}

// logger returns def with the request's id, for a handler's own log lines
// (errors, the watch stream's end). It is made when asked for, so that a
// request that logs nothing pays nothing for it.
func logger(ctx context.Context, def *slog.Logger) *slog.Logger {
	if i := info(ctx); i != nil {
		return def.With("request_id", i.id)
	}
	return def
}

func requestID(ctx context.Context) string {
	if i := info(ctx); i != nil {
		return i.id
	}
	return ""
}

// saneRequestID accepts 1 to maxRequestID characters of letters, digits and
// "-_.:".
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// recorder records what a handler answered, for the access log and the
// metrics. It unwraps for http.ResponseController (flushing and write
// deadlines of the watch stream).
type recorder struct {
	http.ResponseWriter
	status  int
	written int64
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.written += int64(n)
	return n, err
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// routeState is what the outer handler keeps per route.
type routeState struct {
	probe   bool          // /healthz, /readyz, /metrics: logged at debug
	hotRead bool          // route.HotRead: successful answers per AccessLog.Mode
	seen    atomic.Uint64 // successful answers, for AccessLogSampled
}

// serveHTTP is the outer handler: request id, panic recovery, 404 and 405,
// the access log and the request metrics, around the mux.
func (s *server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get(requestIDHeader)
	if !saneRequestID(id) {
		id = uuid.NewString()
	}
	w.Header().Set(requestIDHeader, id)
	r.Header.Set(requestIDHeader, id)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	ri := &reqInfo{id: id}
	ctx := context.WithValue(r.Context(), reqInfoKey, ri)
	r = r.WithContext(ctx)
	rec := &recorder{ResponseWriter: w}

	_, pattern := s.mux.Handler(r)
	rs := s.routes[pattern]
	label := pattern
	if rs == nil {
		// Not a route: a 404, a 405, or a redirect to a cleaned path. The
		// label never holds the caller's path (metric cardinality).
		label = "unmatched"
	}
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.log.ErrorContext(ctx, "panic serving request", "request_id", id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rec.status == 0 {
				s.writeProblem(rec, r, errors.New("panic"))
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		elapsed := time.Since(start)
		s.metrics.observeRequest(label, status, elapsed)
		s.accessLog(ctx, r, ri, rs, label, status, rec.written, elapsed)
	}()

	if pattern == "" {
		if allow := s.allowedMethods(r); allow != "" {
			s.writeProblem(rec, r, errMethodNotAllowed{allow: allow})
			return
		}
		s.writeProblem(rec, r, errNotFound)
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// accessLog writes the request's access-log line, unless its level is not
// enabled or cfg.AccessLog leaves it out (AccessLog: only the successful
// answers of hot reads may be left out). rs is nil when no route matched.
func (s *server) accessLog(ctx context.Context, r *http.Request, ri *reqInfo, rs *routeState, label string,
	status int, written int64, elapsed time.Duration) {
	level := slog.LevelInfo
	switch {
	case rs != nil && rs.probe:
		level = slog.LevelDebug // probes: not ready (503) while catching up is expected
	case status == http.StatusServiceUnavailable:
		level = slog.LevelWarn // stale: the index is behind min_position
	case status >= 500:
		level = slog.LevelError
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	sampled := 0
	if rs != nil && rs.hotRead && status < 400 {
		switch s.cfg.AccessLog.Mode {
		case AccessLogErrors:
			return
		case AccessLogSampled:
			if n := s.cfg.AccessLog.SampleEvery; n > 1 {
				if (rs.seen.Add(1)-1)%uint64(n) != 0 {
					return
				}
				sampled = n
			}
		}
	}
	var buf [12]slog.Attr
	attrs := append(buf[:0],
		slog.String("request_id", ri.id),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", label),
		slog.Int("status", status), slog.Int64("bytes", written),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000))
	if ri.actor.ID != "" {
		attrs = append(attrs, slog.String("actor", ri.actor.ID), slog.String("role", string(ri.actor.Role)))
	}
	if ri.code != "" {
		attrs = append(attrs, slog.String("code", ri.code))
	}
	if sampled > 0 {
		attrs = append(attrs, slog.Int("sampled_1_in", sampled))
	}
	s.log.LogAttrs(ctx, level, "http request", attrs...)
}

// allowedMethods lists the methods the mux serves for r's path, or "".
func (s *server) allowedMethods(r *http.Request) string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, p := s.mux.Handler(r2); p != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return strings.Join(allow, ", ")
}

// routeHandler wraps a route's handler with authentication, for queries
// the role check, and the ledger's guard (a log found tampered with stops
// every route but those marked OnMismatch). A handler's error is answered
// by writeProblem.
func (s *server) routeHandler(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var actor domain.Actor
		if rt.Access != public {
			a, err := s.authenticate(r)
			if err != nil {
				s.writeProblem(w, r, err)
				return
			}
			actor = a
			if ri := info(r.Context()); ri != nil {
				ri.actor = a
			}
		}
		caller := queries.Caller{Actor: actor, RequestID: requestID(r.Context()), Target: r.URL.Path,
			Label: rt.Method + " " + rt.Pattern}
		if rt.Access == asks {
			if err := s.cfg.Queries.Authorize(r.Context(), queries.Name(rt.Name), caller); err != nil {
				s.writeProblem(w, r, err)
				return
			}
		}
		if rt.Access != public && !rt.OnMismatch {
			if err := s.ledgerFault(); err != nil {
				s.writeProblem(w, r, err)
				return
			}
		}
		q, err := parseQuery(r, rt.Params)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if err := rt.handle(s, w, r, call{actor: actor, caller: caller, q: q}); err != nil {
			s.writeProblem(w, r, err)
		}
	})
}

// authenticate reads "Authorization: Bearer <token>" and verifies it.
func (s *server) authenticate(r *http.Request) (domain.Actor, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return domain.Actor{}, fmt.Errorf("%w: no bearer token (send Authorization: Bearer <token>)", auth.ErrUnauthenticated)
	}
	if len(h) > 1 {
		return domain.Actor{}, fmt.Errorf("%w: more than one Authorization header", auth.ErrUnauthenticated)
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return domain.Actor{}, fmt.Errorf("%w: the Authorization header must be Bearer <token>", auth.ErrUnauthenticated)
	}
	actor, err := s.cfg.Auth.Verify(strings.TrimSpace(token))
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			err = fmt.Errorf("%w: %v", auth.ErrUnauthenticated, err)
		}
		return domain.Actor{}, err
	}
	return actor, nil
}
