// Package accessctl is the command line of workers, managers, the portals
// team and auditors over the accessledger HTTP API: one small function per
// verb on the client package. cmd/accessctl runs it.
//
//	accessctl VERB [flags]
//
// Run "accessctl help" for the verbs, the global flags, their environment
// variables and the exit codes; "accessctl VERB -h" for a verb's flags.
package accessctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/client"
)

// Exit codes.
const (
	exitOK     = 0 // done; for check: allowed
	exitError  = 1 // the server refused or failed, no answer, verify found the trail broken, or a ledger check failed
	exitUsage  = 2 // the command line or environment is wrong; nothing was sent
	exitDenied = 3 // check: the access is denied
)

// Environment variables.
const (
	envServer    = "ACCESSLEDGER_SERVER"
	envToken     = "ACCESSLEDGER_TOKEN"
	envTokenFile = "ACCESSLEDGER_TOKEN_FILE"
	envOutput    = "ACCESSLEDGER_OUTPUT"
	envTimeout   = "ACCESSLEDGER_TIMEOUT"
)

// retryWait is the CLI's pause before its first retry (tests shorten it).
var retryWait = 250 * time.Millisecond

const (
	defaultServer  = "http://127.0.0.1:8080"
	defaultTimeout = 10 * time.Second
	maxTokenFile   = 64 << 10
)

// Main runs accessctl with args (without the program name), reading the
// environment through lookup, and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	return run(ctx, args, stdout, stderr, lookup)
}

// usageError is a mistake on the command line or in the environment,
// found before anything was sent: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// exitCodeError ends the run with code, printing msg (when not empty) to
// stderr.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

// globals are the flags every verb accepts, before or after the verb.
type globals struct {
	server, token, tokenFile, output string
	timeout                          time.Duration
	idempotencyKey, minPosition      string
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "the server's `URL` (env "+envServer+")")
	fs.StringVar(&g.token, "token", g.token, "the bearer `TOKEN` (env "+envToken+"; prefer --token-file: other users can see a command line)")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "read the bearer token from `FILE`, trimming whitespace (env "+envTokenFile+")")
	fs.StringVar(&g.output, "output", g.output, "the output format, `table|json` (env "+envOutput+")")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "how long to wait for each answer, retries included; 0 waits forever (env "+envTimeout+")")
	fs.StringVar(&g.idempotencyKey, "idempotency-key", g.idempotencyKey, "commands: the Idempotency-Key to send (default: a new random `KEY` per invocation; see Idempotency)")
	fs.StringVar(&g.minPosition, "min-position", g.minPosition, "queries: answer only once the server has caught up with `POSITION` (from an earlier answer)")
}

// defaults fills the globals from the environment, then the built-in
// defaults; flags parsed afterwards override them.
func (g *globals) defaults(lookup func(string) (string, bool)) error {
	g.server, g.output, g.timeout = defaultServer, outputTable, defaultTimeout
	if v, ok := lookup(envServer); ok && v != "" {
		g.server = v
	}
	if v, ok := lookup(envOutput); ok && v != "" {
		g.output = v
	}
	if v, ok := lookup(envTimeout); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return usagef("%s=%q is not a duration (e.g. 30s)", envTimeout, v)
		}
		g.timeout = d
	}
	return nil
}

// run executes accessctl with args (without the program name) and returns
// the exit code. lookup reads the environment (os.LookupEnv).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	var g globals
	if err := g.defaults(lookup); err != nil {
		fmt.Fprintf(stderr, "accessctl: %v\n", err)
		return exitUsage
	}
	// Global flags may come before the verb.
	pre := newFlagSet("accessctl")
	g.register(pre)
	if err := pre.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "accessctl: %v\nRun 'accessctl help' for usage.\n", err)
		return exitUsage
	}
	given := map[string]bool{}
	pre.Visit(func(f *flag.Flag) { given[f.Name] = true })
	rest := pre.Args()
	if len(rest) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, verbArgs := rest[0], rest[1:]
	if name == "help" {
		return help(rest[1:], stdout, stderr)
	}
	if isGroup(name) {
		// A verb of two words, e.g. "ledger verify".
		if len(verbArgs) == 0 || strings.HasPrefix(verbArgs[0], "-") {
			if len(verbArgs) > 0 && (verbArgs[0] == "-h" || verbArgs[0] == "--help" || verbArgs[0] == "-help") {
				groupUsage(stdout, name)
				return exitOK
			}
			groupUsage(stderr, name)
			return exitUsage
		}
		name, verbArgs = name+" "+verbArgs[0], verbArgs[1:]
	}
	v, ok := findVerb(name)
	if !ok {
		fmt.Fprintf(stderr, "accessctl: unknown command %q\nRun 'accessctl help' for the commands.\n", name)
		return exitUsage
	}

	fs := newFlagSet("accessctl " + name)
	act := v.flags(fs)
	g.register(fs)
	if err := fs.Parse(verbArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			verbUsage(stdout, v)
			return exitOK
		}
		fmt.Fprintf(stderr, "accessctl %s: %v\nRun 'accessctl %s -h' for its flags.\n", name, err, name)
		return exitUsage
	}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	inv, err := setup(v, &g, given, fs.Args(), lookup, stdout, stderr)
	if err == nil {
		err = act(ctx, inv)
	}
	return report(err, name, inv, stderr)
}

// report prints err and returns the exit code.
func report(err error, name string, inv *invocation, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var (
		ue *usageError
		ce *exitCodeError
		pe *client.Problem
		ne *client.NetworkError
	)
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "accessctl %s: %v\nRun 'accessctl %s -h' for its flags.\n", name, ue, name)
		return exitUsage
	case errors.As(err, &ce):
		if ce.msg != "" {
			fmt.Fprintf(stderr, "accessctl: %s\n", ce.msg)
		}
		return ce.code
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "accessctl: %v\n", pe)
		if pe.Status >= 500 {
			inv.retryHint(stderr)
		}
		return exitError
	case errors.As(err, &ne):
		fmt.Fprintf(stderr, "accessctl: %v\n", ne)
		inv.retryHint(stderr)
		return exitError
	default:
		fmt.Fprintf(stderr, "accessctl: %v\n", err)
		return exitError
	}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// invocation is what a verb's action works with.
type invocation struct {
	connect     func() (*client.Client, error)
	client      *client.Client // set by call
	stdout      io.Writer
	stderr      io.Writer
	json        bool
	timeout     time.Duration
	key         string // the Idempotency-Key of a command
	keyGiven    bool   // whether the user chose key
	minPosition string
	isCommand   bool
}

// setup checks the global flags and builds the client.
func setup(v verb, g *globals, given map[string]bool, extra []string, lookup func(string) (string, bool),
	stdout, stderr io.Writer) (*invocation, error) {
	if len(extra) > 0 {
		return nil, usagef("unexpected argument %q (every value is given with a flag)", extra[0])
	}
	if g.output != outputTable && g.output != outputJSON {
		return nil, usagef("--output %q: want table or json", g.output)
	}
	if g.timeout < 0 {
		return nil, usagef("--timeout %s: must not be negative", g.timeout)
	}
	inv := &invocation{stdout: stdout, stderr: stderr, json: g.output == outputJSON, timeout: g.timeout, isCommand: !v.query}
	if v.query && given["idempotency-key"] {
		return nil, usagef("--idempotency-key applies to commands only; %s is a query", v.name)
	}
	if !v.query && given["min-position"] {
		return nil, usagef("--min-position applies to queries only; %s is a command", v.name)
	}
	if v.ledger && given["min-position"] {
		return nil, usagef("--min-position does not apply to %s: the ledger answers with signed checkpoints and proofs, not positions", v.name)
	}
	if given["min-position"] {
		if g.minPosition == "" || strings.ContainsFunc(g.minPosition, isSpaceOrControl) {
			return nil, usagef("--min-position %q: want a position token from an earlier answer", g.minPosition)
		}
		inv.minPosition = g.minPosition
	}
	if !v.query {
		if given["idempotency-key"] {
			if err := checkIdempotencyKey(g.idempotencyKey); err != nil {
				return nil, err
			}
			inv.key, inv.keyGiven = g.idempotencyKey, true
		} else {
			inv.key = newIdempotencyKey()
		}
	}
	server := g.server
	if err := client.CheckServer(server); err != nil {
		return nil, &usageError{err.Error()}
	}
	// The token is resolved when the verb's flags are valid, so that a
	// mistake in them is reported first.
	inv.connect = func() (*client.Client, error) {
		token, err := resolveToken(g, given, lookup)
		if err != nil {
			return nil, err
		}
		c, err := client.New(server, token)
		if err != nil {
			return nil, &usageError{err.Error()}
		}
		c.RetryWait, c.UserAgent = retryWait, "accessctl"
		return c, nil
	}
	return inv, nil
}

// resolveToken finds the bearer token: --token, else --token-file, else
// ACCESSLEDGER_TOKEN, else ACCESSLEDGER_TOKEN_FILE. The command line wins
// over the environment; giving both forms at one level is a mistake.
// Error messages never contain the token.
func resolveToken(g *globals, given map[string]bool, lookup func(string) (string, bool)) (string, error) {
	var token, source string
	switch {
	case given["token"] && given["token-file"]:
		return "", usagef("give --token or --token-file, not both")
	case given["token"]:
		token, source = g.token, "--token"
	case given["token-file"]:
		t, err := readTokenFile(g.tokenFile)
		if err != nil {
			return "", err
		}
		token, source = t, "--token-file "+g.tokenFile
	default:
		envTok, hasTok := lookup(envToken)
		envFile, hasFile := lookup(envTokenFile)
		hasTok, hasFile = hasTok && envTok != "", hasFile && envFile != ""
		switch {
		case hasTok && hasFile:
			return "", usagef("set %s or %s, not both", envToken, envTokenFile)
		case hasTok:
			token, source = strings.TrimSpace(envTok), envToken
		case hasFile:
			t, err := readTokenFile(envFile)
			if err != nil {
				return "", err
			}
			token, source = t, envTokenFile+"="+envFile
		default:
			return "", usagef("no token: use --token-file FILE, or set %s or %s (make one with: accessd token --role ROLE --sub ID)",
				envTokenFile, envToken)
		}
	}
	if err := client.CheckToken(token); err != nil {
		return "", usagef("%s: %v", source, err)
	}
	return token, nil
}

func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", usagef("cannot read the token file: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", usagef("cannot read the token file: %v", err)
	}
	if len(b) > maxTokenFile {
		return "", usagef("the token file %s is larger than %d bytes: is it the right file?", path, maxTokenFile)
	}
	return strings.TrimSpace(string(b)), nil
}

// newIdempotencyKey makes the key of one invocation: a random UUID.
func newIdempotencyKey() string { return uuid.NewString() }

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// checkIdempotencyKey accepts 1 to 200 visible ASCII characters.
func checkIdempotencyKey(k string) error {
	if k == "" || len(k) > 200 {
		return usagef("--idempotency-key: want 1 to 200 characters")
	}
	for _, r := range k {
		if r <= ' ' || r > '~' {
			return usagef("--idempotency-key: only visible ASCII characters, no spaces")
		}
	}
	return nil
}

// retryHint tells the user how to retry a command whose outcome is unknown
// without carrying it out twice.
func (inv *invocation) retryHint(w io.Writer) {
	if inv == nil || !inv.isCommand {
		return
	}
	fmt.Fprintf(w, "accessctl: the command may or may not have been carried out; to retry it safely, run it again with --idempotency-key %s\n", inv.key)
}

// requestCtx bounds one request (with its retries) by --timeout.
func (inv *invocation) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if inv.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, inv.timeout)
}
