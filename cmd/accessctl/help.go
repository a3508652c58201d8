package main

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
	for _, query := range []bool{false, true} {
		if query {
			p("")
			p("Queries (change nothing; answer with the position they were computed at):")
		} else {
			p("Commands (change something; answer with the position of the change):")
		}
		for _, v := range verbs() {
			if v.query == query {
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
	p("  0  done (check: the access is allowed)")
	p("  1  the server refused or failed (its problem is printed to stderr as")
	p("     \"accessctl: TITLE: DETAIL (code CODE, status STATUS)\"), the server could")
	p("     not be reached, or verify found the audit trail broken")
	p("  2  usage: a flag or the environment is wrong; nothing was sent")
	p("  3  check: the access is denied")
}

// help prints the usage, or a verb's.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	v, ok := findVerb(args[0])
	if !ok {
		fmt.Fprintf(stderr, "accessctl help: unknown command %q\n", args[0])
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
