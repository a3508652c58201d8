package accessctl

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

func usage(w io.Writer) {
	p := func(s string) { fmt.Fprintln(w, s) }
	p("accessctl: the command line of the accessledger HTTP API")
	p("")
	p("Usage: accessctl VERB [flags]")
	p("")
	width := 0
	for _, v := range verbs() {
		width = max(width, len(v.name))
	}
	sections := []struct {
		title string
		in    func(v verb) bool
	}{
		{"Commands (change something; answer with the position of the change):", func(v verb) bool { return !v.query }},
		{"Queries (change nothing; answer with the position they were computed at):", func(v verb) bool { return v.query && !v.ledger }},
		{ledgerTitle, func(v verb) bool { return v.ledger }},
	}
	for i, sec := range sections {
		if i > 0 {
			p("")
		}
		p(sec.title)
		for _, v := range verbs() {
			if sec.in(v) {
				fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, v.summary)
			}
		}
	}
	p("")
	p("Run 'accessctl VERB -h' (or 'accessctl help VERB') for a verb's flags.")
	p("")
	p("Global flags (before or after the verb):")
	printFlags(w, func(fs *flag.FlagSet) {
		g := globals{server: defaultServer, output: outputTable, timeout: defaultTimeout}
		g.register(fs)
	})
	p("")
	p("Environment: ACCESSLEDGER_SERVER (default " + defaultServer + "), ACCESSLEDGER_TOKEN,")
	p("ACCESSLEDGER_TOKEN_FILE, ACCESSLEDGER_OUTPUT, ACCESSLEDGER_TIMEOUT (default 10s). A flag on the")
	p("command line wins over the environment. The token is never printed; prefer a token")
	p("file (mode 0600) to --token, which other users can see in the process list.")
	p("")
	p("Output: --output table (default) prints aligned columns with times in UTC;")
	p("--output json prints the server's answer as indented JSON with sorted keys. Every")
	p("answer shows its position: pass it to a later query as --min-position to read")
	p("your own writes, e.g.")
	p("  pos=$(accessctl grant ... --output json | jq -r .position)")
	p("  accessctl viewers --child ID --min-position \"$pos\"")
	p("")
	p("Idempotency: every command is sent with an Idempotency-Key header. By default")
	p("accessctl makes a new random key per invocation, and reuses it when it retries")
	p("a request that got no answer (or 502, 503, 504), so the server carries the")
	p("command out at most once however often accessctl retries. A second invocation")
	p("has a new key and is a new command: to re-run a command whose outcome you do")
	p("not know (accessctl prints its key when it could not get an answer), run it")
	p("again with --idempotency-key KEY; the server then answers with the first")
	p("answer and changes nothing.")
	p("")
	p("Exit codes:")
	p("  0  done (check: the access is allowed; checks: answered, whatever the answers)")
	p("  1  the server refused or failed (its problem is printed to stderr as")
	p("     \"accessctl: TITLE: DETAIL (code CODE, status STATUS)\"), the server could")
	p("     not be reached, verify found the audit trail broken, or a ledger check")
	p("     failed (ledger verify, ledger prove: the verdict line starts FAILED:)")
	p("  2  usage: a flag or the environment is wrong; nothing was sent")
	p("  3  check: the access is denied")
}

// ledgerTitle heads the ledger's verbs in the usage.
const ledgerTitle = "The ledger (check that the log is the one the engine signed; no --min-position):"

// groupUsage lists the verbs of a group of two-word verbs ("ledger").
func groupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: accessctl %s SUBCOMMAND [flags]\n\n", group)
	width := 0
	for _, v := range verbs() {
		width = max(width, len(v.name))
	}
	for _, v := range verbs() {
		if strings.HasPrefix(v.name, group+" ") {
			fmt.Fprintf(w, "  %-*s  %s\n", width, v.name, v.summary)
		}
	}
	fmt.Fprintf(w, "\nRun 'accessctl %s SUBCOMMAND -h' for its flags.\n", group)
}

// help prints the usage, or a verb's (a verb of two words may be given as
// two arguments).
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	name := strings.Join(args, " ")
	if len(args) == 1 && isGroup(name) {
		groupUsage(stdout, name)
		return exitOK
	}
	v, ok := findVerb(name)
	if !ok {
		fmt.Fprintf(stderr, "accessctl help: unknown command %q\n", name)
		return exitUsage
	}
	verbUsage(stdout, v)
	return exitOK
}

func verbUsage(w io.Writer, v verb) {
	fmt.Fprintf(w, "Usage: accessctl %s %s\n\n", v.name, v.synopsis)
	fmt.Fprintln(w, strings.ToUpper(v.summary[:1])+v.summary[1:]+".")
	if v.help != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.TrimSpace(v.help))
	}
	fmt.Fprintf(w, "\n%s: %s.\n", v.endpoint, kindOf(v))
	fmt.Fprintln(w, "\nFlags:")
	printFlags(w, func(fs *flag.FlagSet) { v.flags(fs) })
	fmt.Fprintln(w, "\nGlobal flags (--server, --token-file, --output, ...): see 'accessctl help'.")
}

func kindOf(v verb) string {
	if v.ledger {
		return "a query of the ledger; takes no --min-position"
	}
	if v.query {
		return "a query; accepts --min-position"
	}
	return "a command; sent with an Idempotency-Key (see --idempotency-key)"
}

// printFlags prints the flags that register adds, GNU style.
func printFlags(w io.Writer, register func(*flag.FlagSet)) {
	fs := newFlagSet("")
	register(fs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		arg := "--" + f.Name
		if name := metavar(f); name != "" {
			arg += " " + name
		}
		_, use := flag.UnquoteUsage(f)
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", arg, use, def)
	})
	tw.Flush()
}

// metavar names a flag's value in the help: a `name` quoted in its usage,
// else ID for ids, RFC3339 for times, N for numbers, else the flag's name in
// upper case; none for a boolean flag.
func metavar(f *flag.Flag) string {
	name, _ := flag.UnquoteUsage(f)
	switch {
	case strings.Contains(f.Usage, "`"):
		return name
	case name == "":
		return ""
	case name == "int":
		return "N"
	case name == "duration":
		return "DURATION"
	case f.Name == "child" || f.Name == "account" || f.Name == "carer" || f.Name == "placement":
		return "ID"
	case f.Name == "at" || f.Name == "from" || f.Name == "to" || strings.HasSuffix(f.Name, "-at"):
		return "RFC3339"
	case f.Name == "after":
		return "CURSOR"
	}
	return strings.ToUpper(f.Name)
}
