package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestWrapClassifiesClientErrors: the client's errors as it returns them
// (an *esdb.Error around the cause, itself wrapped with the client's
// message) become the port's errors.
func TestWrapClassifiesClientErrors(t *testing.T) {
	esErr := func(err error) error {
		e, _ := esdb.FromError(err)
		return fmt.Errorf("could not send append request header. Reason: %w", e)
	}
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
		invalid     bool
	}{
		// The server went away under a call just started on its connection
		// (seen in CI: Stop, then an append on the dying connection).
		{name: "EOF sending the header", err: esErr(io.EOF), unavailable: true},
		{name: "unexpected EOF", err: esErr(io.ErrUnexpectedEOF), unavailable: true},
		{name: "gRPC unavailable", err: status.Error(codes.Unavailable, "connection refused"), unavailable: true},
		{name: "gRPC deadline", err: status.Error(codes.DeadlineExceeded, "deadline"), unavailable: true},
		{name: "too large", err: esErr(errors.New("Maximum-Append-Size-Exceeded")), invalid: true},
		{name: "something else", err: esErr(errors.New("access denied"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := (&Store{}).wrap(context.Background(), "append to \"child-1\"", tc.err)
			require.Equal(t, tc.unavailable, errors.Is(got, eventlog.ErrUnavailable), "%v", got)
			require.Equal(t, tc.invalid, errors.Is(got, eventlog.ErrInvalidAppend), "%v", got)
			require.Contains(t, got.Error(), "append to \"child-1\"")
		})
	}
}
