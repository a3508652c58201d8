package httpapi

import (
	"fmt"
	"strings"
)

// AccessLogMode says which successful requests of the hot read routes the
// access log keeps (see AccessLog).
type AccessLogMode string

// The access log's modes.
const (
	// AccessLogAll logs every request.
	AccessLogAll AccessLogMode = "all"
	// AccessLogSampled logs one in AccessLog.SampleEvery successful
	// requests of each hot read route, and every other request.
	AccessLogSampled AccessLogMode = "sampled"
	// AccessLogErrors logs no successful request of the hot read routes,
	// and every other request.
	AccessLogErrors AccessLogMode = "errors"
)

// DefaultAccessLogSampleEvery is AccessLog.SampleEvery unless configured:
// one line for a hundred successful hot reads.
const DefaultAccessLogSampleEvery = 100

// MaxAccessLogSampleEvery bounds AccessLog.SampleEvery.
const MaxAccessLogSampleEvery = 1_000_000

// AccessLogModes lists the modes, for flags' help and errors.
var AccessLogModes = []AccessLogMode{AccessLogAll, AccessLogSampled, AccessLogErrors}

// ParseAccessLogMode returns the mode named s ("all", "sampled" or
// "errors"), or an error naming the modes.
func ParseAccessLogMode(s string) (AccessLogMode, error) {
	for _, m := range AccessLogModes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(AccessLogModes))
	for i, m := range AccessLogModes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown access log mode %q: want %s", s, strings.Join(names, ", "))
}

// AccessLog configures the access log: one line ("http request") per
// request, at level info (warn for 503, error for other 5xx, debug for the
// probes /healthz, /readyz and /metrics), with the request id, method,
// path, route, status, bytes, duration, the caller's actor and role, and a
// problem's code.
//
// Whatever the mode, these are always logged: commands (whatever their
// answer), every answer of 400 or more (refusals: 401, 403, 404, 409, …;
// errors: 5xx), and every request of a route that is not a hot read. The
// hot reads are the queries a portal backend asks on every page:
// GET /v1/check, POST /v1/checks, GET /v1/accounts/{id}/children,
// GET /v1/children/{id}/viewers, POST /v1/views and GET /v1/policy (route
// table: route.HotRead). Their successful answers (status below 400) are
// logged as Mode says. A sampled line carries "sampled_1_in": N, the number
// of requests it stands for.
//
// The zero value is AccessLogSampled with DefaultAccessLogSampleEvery.
type AccessLog struct {
	// Mode: which successful hot reads are logged. Default
	// AccessLogSampled.
	Mode AccessLogMode
	// SampleEvery: in AccessLogSampled, the first and then every
	// SampleEvery-th successful request of each hot read route is logged
	// (a counter per route, so that no route's lines are crowded out by
	// another's). 1 logs every one. Default DefaultAccessLogSampleEvery;
	// at most MaxAccessLogSampleEvery.
	SampleEvery int
}

// validate reports the problems of a, each naming its field.
func (a AccessLog) validate() []error {
	var errs []error
	if a.Mode != "" {
		if _, err := ParseAccessLogMode(string(a.Mode)); err != nil {
			errs = append(errs, fmt.Errorf("AccessLog.Mode: %w", err))
		}
	}
	if a.SampleEvery < 0 || a.SampleEvery > MaxAccessLogSampleEvery {
		errs = append(errs, fmt.Errorf("AccessLog.SampleEvery %d: want 1 to %d (0: the default)", a.SampleEvery, MaxAccessLogSampleEvery))
	}
	return errs
}

func (a AccessLog) withDefaults() AccessLog {
	if a.Mode == "" {
		a.Mode = AccessLogSampled
	}
	if a.SampleEvery == 0 {
		a.SampleEvery = DefaultAccessLogSampleEvery
	}
	return a
}
