package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"

	"github.com/accessledger/accessledger/adapters/console"
	"github.com/accessledger/accessledger/adapters/httpapi"
	"github.com/accessledger/accessledger/adapters/viewlog"
	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/internal/engine"
	"github.com/accessledger/accessledger/projections/accessindex"
)

// serveConfig holds the flags of accessd serve besides the store's.
type serveConfig struct {
	addr            string
	gracePeriod     time.Duration
	invitationTTL   time.Duration
	sessionIdle     time.Duration
	sessionWarning  time.Duration
	closedRetention time.Duration
	reviewPeriod    time.Duration
	jwtIssuer       string
	jwtAudience     string
	secretFile      string
	minPositionWait time.Duration
	shutdownTimeout time.Duration
	bus             string
	instanceID      string
	// checkpointInterval and CheckpointEvery: when serve signs a grown
	// ledger tree (R23).
	checkpointInterval time.Duration
	checkpointEvery    int64
	// snapshotDir, snapshotEvery and snapshotInterval: where and when the
	// snapshots of the access index and of the access history's fold are
	// written (issue 18).
	snapshotDir      string
	snapshotEvery    int64
	snapshotInterval time.Duration
	// viewsRetention: how long record views and alerts are kept (R20); 0
	// keeps them forever.
	viewsRetention time.Duration
	// keptChildren: how many children's state the command service keeps
	// between commands (commands.Config.KeptChildren).
	keptChildren int
	// projectionLinger: engine.Options.ProjectionLinger.
	projectionLinger time.Duration
	// accessLog and accessLogSample: which successful hot reads the
	// access log keeps (httpapi.AccessLog).
	accessLog       string
	accessLogSample int
	// The auditor's console (/console).
	consoleBaseURL  string
	oidcIssuer      string
	oidcClientID    string
	oidcSecretFile  string
	oidcRoleClaim   string
	oidcActorClaim  string
	consoleLinkRole string
	consoleLinkSub  string
}

func (c *serveConfig) register(fs *flag.FlagSet) {
	d := domain.DefaultPolicy
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address the HTTP API listens on")
	fs.DurationVar(&c.gracePeriod, "grace-period", d.GracePeriod, "initial policy (R25): a carer's limited access after a placement ends (R3)")
	fs.DurationVar(&c.invitationTTL, "invitation-ttl", d.InvitationTTL, "initial policy (R25): how long an invitation stays open (R9)")
	fs.DurationVar(&c.sessionIdle, "session-idle-timeout", d.SessionIdleTimeout, "initial policy (R25), published to portals: idle session timeout (R16)")
	fs.DurationVar(&c.sessionWarning, "session-warning-after", d.SessionWarningAfter, "initial policy (R25), published to portals: idle time before the countdown (R16)")
	fs.DurationVar(&c.closedRetention, "closed-account-retention", d.ClosedAccountRetention, "initial policy (R25): how long a closed account's personal data is kept before the engine erases it (R22; default 2,192 days: six years)")
	fs.DurationVar(&c.reviewPeriod, "review-period", d.ReviewPeriod, "initial policy (R25): how long after it was made or last reviewed an open-ended grant is due for review (R19; default 365 days)")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", "", "required iss claim of bearer tokens (default: not checked)")
	fs.StringVar(&c.jwtAudience, "jwt-audience", "", "required aud claim of bearer tokens (default: not checked)")
	fs.StringVar(&c.secretFile, "secret-file", "", "file holding the HS256 secret, hex (default: jwt-secret in --data-dir, created on first start, mode 0600)")
	fs.DurationVar(&c.minPositionWait, "min-position-wait", engine.DefaultMinPositionWait, "longest wait of a query for its min_position before answering 503 stale")
	fs.StringVar(&c.bus, "bus", "gochannel", "message bus of the relay and the process manager: gochannel (in-process), nats://HOST:4222 (JetStream) or postgres://...")
	fs.StringVar(&c.instanceID, "instance-id", "", "this replica's name in the read store: the process manager's claims and the outbox publishers' lease are held under it; give each replica sharing a read store its own (default: the host name)")
	fs.DurationVar(&c.checkpointInterval, "checkpoint-interval", time.Minute, "policy: sign a checkpoint of the ledger this often when the log has grown")
	fs.Int64Var(&c.checkpointEvery, "checkpoint-every", 1000, "policy: sign a checkpoint of the ledger as soon as the log has grown by this many events")
	fs.StringVar(&c.snapshotDir, "snapshot-dir", "", "directory of the snapshots of the access index, of the access history's fold and of the command service's kept state, loaded at start so that only the log after them is replayed "+
		"(default: --data-dir; mode 0600; deleting it is always safe: the next start replays the whole log)")
	fs.Int64Var(&c.snapshotEvery, "snapshot-every", accessindex.DefaultSnapshotEvery, "write the snapshots (the access index's, the access history's fold) once this many events were applied since the last one; 0 turns snapshots off (no load, no write; the command service's kept state's too)")
	fs.DurationVar(&c.snapshotInterval, "snapshot-interval", accessindex.DefaultSnapshotInterval, "write the snapshots (the access index's, the access history's fold, the command service's kept state) this long after the last one when events were applied since")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 20*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.IntVar(&c.keptChildren, "kept-children", commands.DefaultKeptChildren, "children whose state the command service keeps in memory between commands "+
		"(about 8 KB each in a county's data), so that a command or a deadline on one reads only the end of its stream; the oldest goes first")
	fs.DurationVar(&c.projectionLinger, "projection-linger", engine.DefaultProjectionLinger, "how long the read models wait, after an event arrives, "+
		"for more before they write them in one transaction (0 to 1s; 0: each at once): a busy log then costs a transaction per read model "+
		"every linger instead of one per command")
	fs.StringVar(&c.accessLog, "access-log", string(httpapi.AccessLogSampled), "which successful hot reads (GET /v1/check, POST /v1/checks, "+
		"GET /v1/accounts/{id}/children, GET /v1/children/{id}/viewers, POST /v1/views, GET /v1/policy) the access log keeps: "+
		"all, sampled (1 in --access-log-sample) or errors (none); commands, refusals (4xx), errors (5xx) and every other route are always logged")
	fs.IntVar(&c.accessLogSample, "access-log-sample", httpapi.DefaultAccessLogSampleEvery,
		"with --access-log sampled: log the first and then every N-th successful request of each hot read route (1 to 1000000)")
	fs.StringVar(&c.consoleBaseURL, "console-base-url", "", "the console's external origin, e.g. https://access.council.example (OIDC redirect URL, Secure cookies); default: taken from each request")
	fs.StringVar(&c.oidcIssuer, "oidc-issuer", "", "OpenID Connect issuer URL of the council's identity provider for the console's sign-in (default: none; sign in with accessd console-link)")
	fs.StringVar(&c.oidcClientID, "oidc-client-id", "", "the console's client id at the identity provider")
	fs.StringVar(&c.oidcSecretFile, "oidc-client-secret-file", "", "file holding the console's client secret at the identity provider (mode 0600; none for a public client)")
	fs.StringVar(&c.oidcRoleClaim, "oidc-role-claim", console.DefaultRoleClaim, "ID token claim holding the person's role (auditor, manager or dpo)")
	fs.StringVar(&c.oidcActorClaim, "oidc-actor-claim", "sub", "ID token claim holding the person's actor id, as the security log names them")
	fs.StringVar(&c.consoleLinkRole, "console-link", "", "print a one-time sign-in link to the console for this role (auditor, manager or dpo) once listening; make run uses it")
	fs.StringVar(&c.consoleLinkSub, "console-link-sub", "local-auditor", "the actor id of --console-link's sign-in")
	fs.DurationVar(&c.viewsRetention, "views-retention", viewlog.DefaultRetention, "how long record views and their alerts are kept (R20), pruned hourly; 0 keeps them forever (default 2,192 days: six years)")
}

// policy returns the policy the flags set: the initial policy only (R25).
// serve records it when the event log has no policy yet; once one is
// recorded, the recorded one holds and a manager changes it with PUT
// /v1/policy (accessctl set-policy).
func (c *serveConfig) policy() domain.Policy {
	return domain.Policy{GracePeriod: c.gracePeriod, InvitationTTL: c.invitationTTL,
		SessionIdleTimeout: c.sessionIdle, SessionWarningAfter: c.sessionWarning, ClosedAccountRetention: c.closedRetention,
		ReviewPeriod: c.reviewPeriod}
}

// snapshotConfig returns the access index's snapshot settings the flags
// set; a zero Dir (snapshots off) with --snapshot-every 0.
func (c *serveConfig) snapshotConfig(dataDir string) accessindex.SnapshotConfig {
	if c.snapshotEvery == 0 {
		return accessindex.SnapshotConfig{}
	}
	dir := c.snapshotDir
	if dir == "" {
		dir = dataDir
	}
	return accessindex.SnapshotConfig{Dir: dir, Every: uint64(c.snapshotEvery), Interval: c.snapshotInterval}
}

// accessLogConfig returns the access log's settings the flags set (check
// has accepted them).
func (c *serveConfig) accessLogConfig() httpapi.AccessLog {
	return httpapi.AccessLog{Mode: httpapi.AccessLogMode(c.accessLog), SampleEvery: c.accessLogSample}
}

// check validates the values, joining every problem.
func (c *serveConfig) check() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %v", c.addr, err))
	}
	if err := c.policy().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.policy().CheckWholeSeconds(); err != nil { // the unit the policy is recorded in
		errs = append(errs, err)
	}
	if c.projectionLinger < 0 || c.projectionLinger > time.Second {
		errs = append(errs, fmt.Errorf("--projection-linger %s: want 0 to 1s", c.projectionLinger))
	}
	if c.minPositionWait <= 0 || c.minPositionWait > time.Minute {
		errs = append(errs, fmt.Errorf("--min-position-wait %s: want more than 0 and at most 1m", c.minPositionWait))
	}
	if (c.oidcIssuer == "") != (c.oidcClientID == "") {
		errs = append(errs, errors.New("--oidc-issuer and --oidc-client-id go together"))
	}
	if c.oidcIssuer != "" && c.consoleBaseURL == "" {
		// Behind a proxy that ends TLS, the origin the engine sees is not
		// the browser's: the redirect URL, the Origin check of the forms
		// and Secure cookies need the real one.
		errs = append(errs, errors.New("--oidc-issuer needs --console-base-url (the console's origin as browsers reach it, e.g. https://access.council.example)"))
	}
	if c.oidcSecretFile != "" && c.oidcIssuer == "" {
		errs = append(errs, errors.New("--oidc-client-secret-file needs --oidc-issuer"))
	}
	if c.consoleLinkRole != "" {
		if r, err := domain.ParseRole(c.consoleLinkRole); err != nil || !console.Allowed(r) {
			errs = append(errs, fmt.Errorf("--console-link %q: want auditor, manager or dpo", c.consoleLinkRole))
		}
	}
	if c.viewsRetention != 0 && c.viewsRetention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("--views-retention %s: want 0 (keep forever) or at least 24h", c.viewsRetention))
	}
	if _, err := httpapi.ParseAccessLogMode(c.accessLog); err != nil {
		errs = append(errs, fmt.Errorf("--access-log: %v", err))
	}
	if c.accessLogSample < 1 || c.accessLogSample > httpapi.MaxAccessLogSampleEvery {
		errs = append(errs, fmt.Errorf("--access-log-sample %d: want 1 to %d", c.accessLogSample, httpapi.MaxAccessLogSampleEvery))
	}
	if c.shutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s: want more than 0", c.shutdownTimeout))
	}
	if c.checkpointInterval < time.Second || c.checkpointInterval > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--checkpoint-interval %s: want 1s to 24h", c.checkpointInterval))
	}
	if c.checkpointEvery < 1 || c.checkpointEvery > 1_000_000 {
		errs = append(errs, fmt.Errorf("--checkpoint-every %d: want 1 to 1000000", c.checkpointEvery))
	}
	if c.snapshotEvery < 0 || c.snapshotEvery > 1_000_000_000 {
		errs = append(errs, fmt.Errorf("--snapshot-every %d: want 0 (off) to 1000000000", c.snapshotEvery))
	}
	if c.snapshotInterval < time.Second || c.snapshotInterval > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--snapshot-interval %s: want 1s to 24h", c.snapshotInterval))
	}
	if c.instanceID == "" {
		c.instanceID = engine.DefaultInstanceID()
	}
	if len(c.instanceID) > 200 || strings.IndexFunc(c.instanceID, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		errs = append(errs, fmt.Errorf("--instance-id %q: want at most 200 printable characters without spaces", c.instanceID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
