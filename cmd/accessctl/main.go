// Command accessctl is the command line of workers, managers, the portals
// team and auditors over the accessledger HTTP API.
//
//	accessctl VERB [flags]
//
// Run "accessctl help" for the verbs, the global flags, their environment
// variables and the exit codes; "accessctl VERB -h" for a verb's flags.
// The verbs live in internal/accessctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/accessledger/accessledger/internal/accessctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := accessctl.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
