package accessctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
	"github.com/accessledger/accessledger/projections/ledger"
)

// The ledger's verbs (R23). The engine keeps a Merkle tree over its event
// log and signs checkpoints of it; these verbs fetch a checkpoint and the
// proofs, and check them here, with the ledger's public key, so that a
// server (or a database) that rewrote the log cannot pass them.

// maxLedgerFile bounds a key or checkpoint file.
const maxLedgerFile = 64 << 10

// ledgerCheckpointVerb prints the current signed checkpoint.
func ledgerCheckpointVerb() verb {
	return verb{
		name: "ledger checkpoint", synopsis: "", query: true, ledger: true,
		summary: "print the ledger's current signed checkpoint (auditors, service)",
		help: "Keep it (accessctl ledger checkpoint > FILE), or better 'ledger verify --save FILE',\n" +
			"and check later that the log still extends it: accessctl ledger verify --checkpoint FILE.\n" +
			"It is printed exactly as signed; this verb does not check the signature.",
		endpoint: "GET /v1/ledger/checkpoint",
		flags: func(fs *flag.FlagSet) action {
			return func(ctx context.Context, inv *invocation) error {
				raw, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) ([]byte, error) {
					return inv.client.LedgerCheckpoint(ctx, o...)
				})
				if err != nil {
					return err
				}
				cp, err := checkpointShape(raw)
				if err != nil {
					return fmt.Errorf("the server's checkpoint: %w", err)
				}
				if inv.json {
					return printLedgerJSON(inv.stdout, map[string]any{"checkpoint": string(raw), "origin": cp.Origin,
						"size": cp.Size, "root": cp.Root.String()})
				}
				_, err = inv.stdout.Write(raw)
				return err
			}
		},
	}
}

// ledgerPublicKeyVerb prints the ledger's public key.
func ledgerPublicKeyVerb() verb {
	return verb{
		name: "ledger public-key", synopsis: "", query: true, ledger: true,
		summary: "print the verifier key of the ledger's checkpoints",
		help: "Keep it in a file for ledger verify and ledger prove --public-key, after comparing it with\n" +
			"a copy obtained some other way (the server cannot vouch for its own key).",
		endpoint: "GET /v1/ledger/public-key",
		flags: func(fs *flag.FlagSet) action {
			return func(ctx context.Context, inv *invocation) error {
				raw, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) ([]byte, error) {
					return inv.client.LedgerPublicKey(ctx, o...)
				})
				if err != nil {
					return err
				}
				key := strings.TrimSpace(string(raw))
				v, err := ledger.ParseVerifierKey(key)
				if err != nil {
					return fmt.Errorf("the server's public key: %w", err)
				}
				if inv.json {
					return printLedgerJSON(inv.stdout, map[string]any{"public_key": key, "name": v.Name()})
				}
				_, err = fmt.Fprintln(inv.stdout, key)
				return err
			}
		},
	}
}

// ledgerVerifyVerb checks that the server's checkpoint is signed by the
// key and extends a checkpoint kept from earlier.
func ledgerVerifyVerb() verb {
	return verb{
		name: "ledger verify", synopsis: "--checkpoint FILE --public-key FILE [--save FILE]", query: true, ledger: true,
		summary: "check that today's signed checkpoint extends one you kept (auditors)",
		help: "Fetches the server's current checkpoint, checks its signature with the key in\n" +
			"--public-key, and checks that the log it signs extends the checkpoint in --checkpoint\n" +
			"(signed by the same key): same size and root, or a consistency proof from the server\n" +
			"checked here. Prints what it checked and a verdict line, OK: or FAILED:, and exits 1\n" +
			"when the check fails. With --save, writes the server's checkpoint to a new file when\n" +
			"it checks out: keep it for the next verify.",
		endpoint: "GET /v1/ledger/checkpoint, GET /v1/ledger/proof/consistency",
		flags: func(fs *flag.FlagSet) action {
			cpFile := fs.String("checkpoint", "", "a `FILE` holding a checkpoint kept from earlier (required)")
			keyFile := fs.String("public-key", "", "a `FILE` holding the ledger's public key, obtained out of band (required)")
			save := fs.String("save", "", "write the server's checkpoint to `FILE` (mode 0644) when it checks out; never overwrites")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				c.file("checkpoint", *cpFile)
				c.file("public-key", *keyFile)
				if err := c.err(); err != nil {
					return err
				}
				v, err := loadVerifier(*keyFile)
				if err != nil {
					return err
				}
				oldNote, err := readLedgerFile("checkpoint", *cpFile)
				if err != nil {
					return err
				}
				if err := checkNewFile("save", *save); err != nil {
					return err
				}
				return verifyCheckpoints(ctx, inv, v, *keyFile, *cpFile, oldNote, *save)
			}
		},
	}
}

// verifyCheckpoints is ledger verify once its flags are read.
func verifyCheckpoints(ctx context.Context, inv *invocation, v note.Verifier, keyFile, cpFile string, oldNote []byte, save string) error {
	rep := newLedgerReport(inv)
	rep.PublicKey = v.Name()
	rep.line("public key: %s (from %s)", v.Name(), keyFile)
	old, err := ledger.OpenCheckpoint(oldNote, v)
	if err != nil {
		return rep.fail("the checkpoint in %s does not open with the key in %s: %v", cpFile, keyFile, err)
	}
	rep.Checkpoint = checkpointOf(old, cpFile)
	rep.line("checkpoint %s: %d events, root %s, signature OK", cpFile, old.Size, old.Root)

	raw, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) ([]byte, error) {
		return inv.client.LedgerCheckpoint(ctx, o...)
	})
	if err != nil {
		return err
	}
	cur, err := ledger.OpenCheckpoint(raw, v)
	if err != nil {
		return rep.fail("the server's checkpoint does not open with the key in %s: %v", keyFile, err)
	}
	rep.Server = checkpointOf(cur, "the server")
	rep.line("server's checkpoint: %d events, root %s, signature OK", cur.Size, cur.Root)

	switch {
	case cur.Size < old.Size:
		return rep.fail("the server's log has %d events, fewer than the %d of the checkpoint in %s: it was truncated or rewritten",
			cur.Size, old.Size, cpFile)
	case cur.Size == old.Size && cur.Root != old.Root:
		return rep.fail("the server's log of %d events has root %s, but the checkpoint in %s signed %s for that size: the log was rewritten (a fork)",
			cur.Size, cur.Root, cpFile, old.Root)
	case cur.Size == old.Size:
		rep.line("same size and root as the checkpoint in %s", cpFile)
	case old.Size == 0:
		rep.line("the checkpoint in %s is of the empty log: every log extends it", cpFile)
	default:
		p, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.ConsistencyProof, error) {
			return inv.client.ConsistencyProof(ctx, old.Size, cur.Size, o...)
		})
		if err != nil {
			return err
		}
		if err := checkConsistencyProof(old, cur, p); err != nil {
			return rep.fail("%v", err)
		}
		rep.line("consistency proof from %d to %d events: %d hashes, OK", old.Size, cur.Size, len(p.Hashes))
	}
	if save != "" {
		if err := writeNewFile(save, raw); err != nil {
			return err
		}
		rep.Saved = save
		rep.line("saved the server's checkpoint to %s", save)
	}
	return rep.ok("the server's log of %d events (root %s) extends the checkpoint in %s (%d events); both are signed by %s",
		cur.Size, cur.Root, cpFile, old.Size, v.Name())
}

// ledgerProveVerb checks that an event is in the signed log.
func ledgerProveVerb() verb {
	return verb{
		name: "ledger prove", synopsis: "--event ID [--public-key FILE] [--checkpoint FILE]", query: true, ledger: true,
		summary: "check that an event is in the log the ledger signed (auditors)",
		help: "Fetches the server's checkpoint (or reads --checkpoint) and checks its signature,\n" +
			"then fetches the proof that the event's leaf is in that checkpoint's tree, recomputes\n" +
			"the leaf's hash from the event's bytes and checks the proof here. Prints the event\n" +
			"(type, stream, version, position) and a verdict line, OK: or FAILED:, and exits 1 when\n" +
			"the check fails. Without --public-key the key is the server's own, which proves the\n" +
			"event is in the log that key signed, not that it is the engine's key.",
		endpoint: "GET /v1/ledger/checkpoint, GET /v1/ledger/proof/inclusion",
		flags: func(fs *flag.FlagSet) action {
			event := fs.String("event", "", "the event's `ID` (an audit entry's event_id) (required)")
			keyFile := fs.String("public-key", "", "a `FILE` holding the ledger's public key (default: ask the server)")
			cpFile := fs.String("checkpoint", "", "prove against the checkpoint in `FILE` (default: the server's current one)")
			return func(ctx context.Context, inv *invocation) error {
				var c checker
				id := c.id("event", *event)
				if err := c.err(); err != nil {
					return err
				}
				var v note.Verifier
				var err error
				if *keyFile != "" {
					if v, err = loadVerifier(*keyFile); err != nil {
						return err
					}
				}
				var cpNote []byte
				if *cpFile != "" {
					if cpNote, err = readLedgerFile("checkpoint", *cpFile); err != nil {
						return err
					}
				}
				return proveEvent(ctx, inv, id, v, *keyFile, cpNote, *cpFile)
			}
		},
	}
}

// proveEvent is ledger prove once its flags are read: v and cpNote are nil
// when not given.
func proveEvent(ctx context.Context, inv *invocation, id uuid.UUID, v note.Verifier, keyFile string, cpNote []byte, cpFile string) error {
	rep := newLedgerReport(inv)
	if v == nil {
		raw, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) ([]byte, error) {
			return inv.client.LedgerPublicKey(ctx, o...)
		})
		if err != nil {
			return err
		}
		if v, err = ledger.ParseVerifierKey(string(raw)); err != nil {
			return rep.fail("the server's public key: %v", err)
		}
		rep.line("public key: %s (from the server: compare it with a copy obtained elsewhere, or give --public-key)", v.Name())
	} else {
		rep.line("public key: %s (from %s)", v.Name(), keyFile)
	}
	rep.PublicKey = v.Name()
	source := cpFile
	if cpNote == nil {
		raw, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) ([]byte, error) {
			return inv.client.LedgerCheckpoint(ctx, o...)
		})
		if err != nil {
			return err
		}
		cpNote, source = raw, "the server"
	}
	cp, err := ledger.OpenCheckpoint(cpNote, v)
	if err != nil {
		return rep.fail("the checkpoint of %s does not open with the key %s: %v", source, v.Name(), err)
	}
	rep.Checkpoint = checkpointOf(cp, source)
	rep.line("checkpoint of %s: %d events, root %s, signature OK", source, cp.Size, cp.Root)
	if cp.Size == 0 {
		return rep.fail("the checkpoint of %s is of the empty log: it includes no event", source)
	}

	p, _, err := call(ctx, inv, func(ctx context.Context, o ...client.CallOption) (api.InclusionProof, error) {
		return inv.client.InclusionProof(ctx, client.InclusionQuery{Event: id, TreeSize: cp.Size}, o...)
	})
	if err != nil {
		return err
	}
	leaf, err := checkInclusionProof(cp, id, p)
	if err != nil {
		return rep.fail("%v", err)
	}
	rep.Event = &eventJSON{EventID: leaf.EventID, Type: leaf.Type, Stream: leaf.Stream, Version: leaf.Version,
		Position: p.Position, LeafIndex: int64(p.LeafIndex), ActorID: leaf.ActorID, ActorRole: leaf.ActorRole,
		RecordedAt: leaf.RecordedAt, EffectiveAt: leaf.EffectiveAt}
	rep.line("event %s: %s in %s, version %d, position %s, recorded %s by %s", leaf.EventID, leaf.Type, leaf.Stream, leaf.Version,
		p.Position, humanTime(leaf.RecordedAt), withRole(leaf.ActorID, leaf.ActorRole))
	rep.line("leaf %d: hash %s recomputed from the event's bytes; inclusion proof of %d hashes, OK",
		p.LeafIndex, tlog.RecordHash(p.LeafData), len(p.Hashes))
	return rep.ok("event %s is leaf %d of the log of %d events (root %s) signed by %s", leaf.EventID, p.LeafIndex, cp.Size, cp.Root, v.Name())
}

// checkConsistencyProof checks that cur extends old with a, the server's
// consistency proof from old.Size to cur.Size.
func checkConsistencyProof(old, cur ledger.Checkpoint, a api.ConsistencyProof) error {
	if int64(a.FromSize) != old.Size || int64(a.ToSize) != cur.Size {
		return fmt.Errorf("the server answered a consistency proof from %d to %d events, not from %d to %d", a.FromSize, a.ToSize, old.Size, cur.Size)
	}
	proof, err := parseHashes(a.Hashes)
	if err != nil {
		return fmt.Errorf("the server's consistency proof: %w", err)
	}
	if err := tlog.CheckTree(proof, cur.Size, cur.Root, old.Size, old.Root); err != nil {
		return fmt.Errorf("the server's log of %d events is not an extension of the checkpoint of %d events (%v): the log was rewritten or forked",
			cur.Size, old.Size, err)
	}
	return nil
}

// checkInclusionProof checks a, the server's proof that event id is in
// the tree of cp, with a leaf hash recomputed from a's leaf bytes, and
// returns the event those bytes hold.
func checkInclusionProof(cp ledger.Checkpoint, id uuid.UUID, a api.InclusionProof) (ledger.Leaf, error) {
	if int64(a.TreeSize) != cp.Size {
		return ledger.Leaf{}, fmt.Errorf("the server answered a proof for a tree of %d events, not %d", a.TreeSize, cp.Size)
	}
	leaf, err := ledger.DecodeLeaf(a.LeafData)
	if err != nil {
		return ledger.Leaf{}, fmt.Errorf("the server's leaf_data is not an event's leaf: %v", err)
	}
	if leaf.EventID != id || a.EventID != id {
		return ledger.Leaf{}, fmt.Errorf("the server answered the leaf of event %s, not %s", leaf.EventID, id)
	}
	h := tlog.RecordHash(a.LeafData)
	if a.LeafHash != h.String() {
		return ledger.Leaf{}, fmt.Errorf("the server's leaf_hash %s is not the hash of its leaf_data (%s)", cell(a.LeafHash), h)
	}
	proof, err := parseHashes(a.Hashes)
	if err != nil {
		return ledger.Leaf{}, fmt.Errorf("the server's inclusion proof: %w", err)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, int64(a.LeafIndex), h); err != nil {
		return ledger.Leaf{}, fmt.Errorf("event %s is not leaf %d of the signed log of %d events (%v)", id, a.LeafIndex, cp.Size, err)
	}
	return leaf, nil
}

func parseHashes(in []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, fmt.Errorf("hash %d is not a base64 SHA-256 hash", i+1)
		}
		out[i] = h
	}
	return out, nil
}

// checkpointShape checks that b is a signed note (text, signature lines)
// whose text is a checkpoint, without checking the signature.
func checkpointShape(b []byte) (ledger.Checkpoint, error) {
	text, _, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok || !utf8.Valid(b) || bytes.ContainsFunc(b, func(r rune) bool { return r < ' ' && r != '\n' }) {
		return ledger.Checkpoint{}, errors.New("not a signed note")
	}
	return ledger.ParseCheckpointBody(string(text) + "\n")
}

// ---- files ----

// file checks a required file flag.
func (c *checker) file(name, path string) {
	if path == "" {
		c.fail("--%s FILE is required", name)
	}
}

// readLedgerFile reads the small file of flag name.
func readLedgerFile(name, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("--%s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLedgerFile+1))
	if err != nil {
		return nil, usagef("--%s: %v", name, err)
	}
	if len(b) > maxLedgerFile {
		return nil, usagef("--%s: %s is larger than %d bytes: is it the right file?", name, path, maxLedgerFile)
	}
	return b, nil
}

// loadVerifier reads the verifier key in --public-key FILE.
func loadVerifier(path string) (note.Verifier, error) {
	b, err := readLedgerFile("public-key", path)
	if err != nil {
		return nil, err
	}
	v, err := ledger.ParseVerifierKey(string(b))
	if err != nil {
		return nil, usagef("--public-key: %s does not hold a verifier key (as 'accessctl ledger public-key' prints it)", path)
	}
	return v, nil
}

// checkNewFile refuses a --save file that exists, before anything is sent.
func checkNewFile(name, path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return usagef("--%s: %s exists: accessctl never overwrites a checkpoint", name, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return usagef("--%s: %v", name, err)
	}
	return nil
}

// writeNewFile writes b to a new file of mode 0644 at path; it never
// overwrites one.
func writeNewFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("save the checkpoint: %w", err)
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Chmod(0o644), f.Sync(), f.Close()); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("save the checkpoint to %s: %w", path, err)
	}
	return nil
}

// ---- the report ----

// ledgerReport is what a ledger check prints: the lines of what it
// checked (as it goes, with --output table), then a verdict line; with
// --output json, one document at the end.
type ledgerReport struct {
	inv        *invocation
	OK         bool            `json:"ok"`
	Checked    []string        `json:"checked"`
	Verdict    string          `json:"verdict"`
	PublicKey  string          `json:"public_key,omitempty"`
	Checkpoint *checkpointJSON `json:"checkpoint,omitempty"`
	Server     *checkpointJSON `json:"server_checkpoint,omitempty"`
	Event      *eventJSON      `json:"event,omitempty"`
	Saved      string          `json:"saved,omitempty"`
}

type checkpointJSON struct {
	Source string `json:"source"`
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
}

func checkpointOf(cp ledger.Checkpoint, source string) *checkpointJSON {
	return &checkpointJSON{Source: source, Origin: cp.Origin, Size: cp.Size, Root: cp.Root.String()}
}

type eventJSON struct {
	EventID     uuid.UUID `json:"event_id"`
	Type        string    `json:"type"`
	Stream      string    `json:"stream"`
	Version     uint64    `json:"version"`
	Position    string    `json:"position"`
	LeafIndex   int64     `json:"leaf_index"`
	ActorID     string    `json:"actor"`
	ActorRole   string    `json:"actor_role"`
	EffectiveAt time.Time `json:"effective_at"`
	RecordedAt  time.Time `json:"recorded_at"`
}

func newLedgerReport(inv *invocation) *ledgerReport {
	return &ledgerReport{inv: inv, Checked: []string{}}
}

// line records (and, as a table, prints) one thing checked.
func (r *ledgerReport) line(format string, a ...any) {
	l := cell(fmt.Sprintf(format, a...))
	r.Checked = append(r.Checked, l)
	if !r.inv.json {
		fmt.Fprintln(r.inv.stdout, l)
	}
}

// ok ends the report with the verdict "OK: …".
func (r *ledgerReport) ok(format string, a ...any) error {
	r.OK, r.Verdict = true, "OK: "+cell(fmt.Sprintf(format, a...))
	return r.finish()
}

// fail ends the report with the verdict "FAILED: …" and exit code 1.
func (r *ledgerReport) fail(format string, a ...any) error {
	r.OK, r.Verdict = false, "FAILED: "+cell(fmt.Sprintf(format, a...))
	if err := r.finish(); err != nil {
		return err
	}
	return &exitCodeError{code: exitError, msg: "ledger check " + r.Verdict}
}

func (r *ledgerReport) finish() error {
	if r.inv.json {
		return printLedgerJSON(r.inv.stdout, r)
	}
	_, err := fmt.Fprintln(r.inv.stdout, r.Verdict)
	return err
}

// printLedgerJSON prints v as stable JSON (sorted keys), as writeJSON
// prints the server's answers.
func printLedgerJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeJSON(w, b)
}
