package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/stretchr/testify/require"
)

// TestServeConfigCheck: every bad serve flag is a usage error naming the
// flag; the instance id defaults to the host name.
func TestServeConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		bad  string // "" when valid
	}{
		{"defaults", nil, ""},
		{"instance id", []string{"--instance-id", "api-2"}, ""},
		{"bad addr", []string{"--addr", "8080"}, "--addr"},
		{"no min position wait", []string{"--min-position-wait", "0s"}, "--min-position-wait"},
		{"min position wait too long", []string{"--min-position-wait", "2m"}, "--min-position-wait"},
		{"no shutdown timeout", []string{"--shutdown-timeout", "0s"}, "--shutdown-timeout"},
		{"instance id with a space", []string{"--instance-id", "api 2"}, "--instance-id"},
		{"instance id with a control character", []string{"--instance-id", "api\x002"}, "--instance-id"},
		{"instance id too long", []string{"--instance-id", strings.Repeat("a", 201)}, "--instance-id"},
		{"bad grace period", []string{"--grace-period", "-1h"}, "grace"},
		{"access log of every request", []string{"--access-log", "all"}, ""},
		{"access log of errors only", []string{"--access-log", "errors"}, ""},
		{"access log sampled 1 in 1000", []string{"--access-log", "sampled", "--access-log-sample", "1000"}, ""},
		{"unknown access log mode", []string{"--access-log", "none"}, "--access-log"},
		{"no access log sample", []string{"--access-log-sample", "0"}, "--access-log-sample"},
		{"access log sample too large", []string{"--access-log-sample", "1000001"}, "--access-log-sample"},
		{"no projection linger", []string{"--projection-linger", "0s"}, ""},
		{"negative projection linger", []string{"--projection-linger", "-1ms"}, "--projection-linger"},
		{"projection linger too long", []string{"--projection-linger", "2s"}, "--projection-linger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var c serveConfig
			c.register(fs)
			require.NoError(t, fs.Parse(tc.args))
			err := c.check()
			if tc.bad == "" {
				require.NoError(t, err)
				require.NotEmpty(t, c.instanceID)
				if len(tc.args) == 0 {
					require.Equal(t, engine.DefaultInstanceID(), c.instanceID)
					require.Equal(t, httpapi.AccessLog{Mode: httpapi.AccessLogSampled, SampleEvery: 100}, c.accessLogConfig())
					require.Equal(t, engine.DefaultProjectionLinger, c.projectionLinger)
				}
				return
			}
			require.ErrorIs(t, err, errUsage)
			require.ErrorContains(t, err, tc.bad)
		})
	}
}
