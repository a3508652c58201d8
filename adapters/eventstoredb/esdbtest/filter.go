package esdbtest

import (
	"regexp"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// eventFilter is a server-side filter of a $all read or subscription.
type eventFilter struct {
	byType     bool // filter on the event type, else on the stream name
	prefixes   []string
	re         *regexp.Regexp
	window     uint64 // maxSearchWindow: events considered per page
	multiplier uint64 // checkpointIntervalMultiplier
}

// toFilter decodes the filter option; nil means no filter. As on the server a
// non-empty regex wins over prefixes, a regex is matched anywhere in the
// subject (unanchored) and a prefix list matches subjects starting with any
// of the prefixes.
func toFilter(fo *streams.ReadReq_Options_FilterOptions) (*eventFilter, error) {
	if fo == nil {
		return nil, nil
	}
	f := &eventFilter{
		window:     readBatchSize,
		multiplier: uint64(fo.GetCheckpointIntervalMultiplier()),
	}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	switch v := fo.GetFilter().(type) {
	case *streams.ReadReq_Options_FilterOptions_EventType:
		f.byType, expr = true, v.EventType
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = v.StreamIdentifier
	default:
		return nil, errHandler
	}
	if w, ok := fo.GetWindow().(*streams.ReadReq_Options_FilterOptions_Max); ok {
		f.window = uint64(w.Max)
	}
	if f.window == 0 || f.multiplier == 0 {
		// ArgumentOutOfRangeException on the server.
		return nil, errHandler
	}
	if rx := expr.GetRegex(); rx != "" {
		re, err := regexp.Compile(rx)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid filter regex %q: %v", rx, err)
		}
		f.re = re
	} else {
		f.prefixes = expr.GetPrefix()
	}
	return f, nil
}

func (f *eventFilter) allows(r *record) bool {
	subject := r.stream
	if f.byType {
		subject = r.eventType
	}
	if f.re != nil {
		return f.re.MatchString(subject)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}

// interval is the number of considered events between two checkpoints.
func (f *eventFilter) interval() uint64 {
	return f.window * f.multiplier
}
