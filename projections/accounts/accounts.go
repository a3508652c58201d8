// Package accounts is the accounts read model: one row per portal account,
// holding the facts of its stream (invitation, expiry record, activation,
// closure, the 2FA phone workflow) and the identity subject linked to it. It
// answers GET /v1/accounts/{account_id} and the portals team's lists.
//
// # Facts in the table, status at query time
//
// The table keeps facts, never a status: an unaccepted invitation is expired
// from its deadline on whether or not the expiry event has been written
// (R9), so the status depends on the decision time. Get, ByEmail and
// ByIdentity rebuild a domain.Account from the stored facts and ask it
// (StatusAt, NeedsPhoneEnrolment), so the read model answers exactly what
// the aggregate replayed to the same position answers. List filters by
// status in SQL with the same rules; the tests check it against Get.
//
// # Table
//
// One table, logical name "accounts" (see projections.Table): account_id
// (TEXT, the canonical lower-case UUID), email (normalized), kind,
// invited_at, expires_at, activated_at, closed_at (BIGINT microseconds since
// the Unix epoch, NULL when unset), invitation_expired, identity_subject,
// phone_hint, phone_reset_requested and updated_position (the Commit of the
// position of the last event that changed the row). The phone hint column
// only accepts "" or "***" and three digits (R11: no full number can be
// stored).
//
// A row whose invited_at is NULL is a placeholder: an identity was linked
// (identity.linked.v1) to an account whose invitation the log has not shown
// yet. Queries never return placeholders.
package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/domain/eventlog"
	"github.com/accessledger/accessledger/projections"
)

// TableName is the logical name of the table (and of the view queries read).
const TableName = "accounts"

// ProjectionName is the projection's name (its checkpoint and the NAME of
// accessd rebuild --projection).
const ProjectionName = "accounts"

// ProjectionVersion is the version of the table and the fold; bump it when
// either changes, and the runner rebuilds the table.
const ProjectionVersion = 2 // 2: erased_at, and erased personal values kept as ""

// Projection folds the account.*, phone.* and identity.linked.v1 events into
// the accounts table. It keeps no state in memory: every batch reads the
// rows it changes, folds the batch in memory and writes them back with one
// upsert. The zero value is ready to use.
type Projection struct{}

var _ projections.Projection = (*Projection)(nil)

// New returns the projection.
func New() *Projection { return &Projection{} }

// Name returns "accounts".
func (*Projection) Name() string { return ProjectionName }

// Version returns ProjectionVersion.
func (*Projection) Version() int { return ProjectionVersion }

// Tables returns the one table, "accounts".
func (*Projection) Tables() []projections.Table {
	return []projections.Table{{Name: TableName, Create: createTable, DeferIndexes: true}}
}

// createTable returns the DDL of the physical table and its indexes.
func createTable(d dialect.Name, physical string) []string {
	q := quote(physical)
	if d == dialect.PG {
		return []string{
			`CREATE TABLE ` + q + ` (
    account_id            TEXT    NOT NULL,
    email                 TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    invited_at            BIGINT,
    expires_at            BIGINT,
    activated_at          BIGINT,
    closed_at             BIGINT,
    invitation_expired    BOOLEAN NOT NULL,
    identity_subject      TEXT    NOT NULL,
    phone_hint            TEXT    NOT NULL,
    phone_reset_requested BOOLEAN NOT NULL,
    updated_position      BIGINT  NOT NULL,
    erased_at             BIGINT,
    CONSTRAINT ` + quote(physical+"_pkey") + ` PRIMARY KEY (account_id),
    CONSTRAINT ` + quote(physical+"_phone_hint_check") + ` CHECK (phone_hint = '' OR phone_hint ~ '^[*]{3}[0-9]{3}$')
)`,
			`CREATE INDEX ` + quote(physical+"_email_idx") + ` ON ` + q + ` (email)`,
			`CREATE INDEX ` + quote(physical+"_identity_subject_idx") + ` ON ` + q + ` (identity_subject)`,
		}
	}
	return []string{
		`CREATE TABLE ` + q + ` (
    account_id            TEXT    NOT NULL PRIMARY KEY,
    email                 TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    invited_at            INTEGER,
    expires_at            INTEGER,
    activated_at          INTEGER,
    closed_at             INTEGER,
    invitation_expired    INTEGER NOT NULL CHECK (invitation_expired IN (0, 1)),
    identity_subject      TEXT    NOT NULL,
    phone_hint            TEXT    NOT NULL CHECK (phone_hint = '' OR phone_hint GLOB '[*][*][*][0-9][0-9][0-9]'),
    phone_reset_requested INTEGER NOT NULL CHECK (phone_reset_requested IN (0, 1)),
    updated_position      INTEGER NOT NULL,
    erased_at             INTEGER
) STRICT`,
		`CREATE INDEX ` + quote(physical+"_email_idx") + ` ON ` + q + ` (email)`,
		`CREATE INDEX ` + quote(physical+"_identity_subject_idx") + ` ON ` + q + ` (identity_subject)`,
	}
}

// quote quotes an identifier the runner has validated (lower-case letters,
// digits, underscores); the same quoting works on both engines.
func quote(ident string) string { return `"` + ident + `"` }

// row is one row of the table. Times are Unix microseconds, NULL when unset.
type row struct {
	bun.BaseModel `bun:"table:accounts,alias:accounts"`

	AccountID           string        `bun:"account_id,pk"`
	Email               string        `bun:"email"`
	Kind                string        `bun:"kind"`
	InvitedAt           sql.NullInt64 `bun:"invited_at"`
	ExpiresAt           sql.NullInt64 `bun:"expires_at"`
	ActivatedAt         sql.NullInt64 `bun:"activated_at"`
	ClosedAt            sql.NullInt64 `bun:"closed_at"`
	InvitationExpired   bool          `bun:"invitation_expired"`
	IdentitySubject     string        `bun:"identity_subject"`
	PhoneHint           string        `bun:"phone_hint"`
	PhoneResetRequested bool          `bun:"phone_reset_requested"`
	UpdatedPosition     int64         `bun:"updated_position"`
	ErasedAt            sql.NullInt64 `bun:"erased_at"`
}

// Load has nothing to load: the state lives in the table. It never asks for
// a warm-up.
func (*Projection) Load(context.Context, bun.IDB, projections.Tables, eventlog.Position) (bool, error) {
	return false, nil
}

// Replay does nothing: records another runner has written are already in
// the table, and the projection keeps no state in memory.
func (*Projection) Replay([]eventlog.Record) error { return nil }

// ErrApply is returned (wrapped) by Apply when a record of an account event
// type cannot be decoded: the log is corrupt or written by a newer engine.
var ErrApply = errors.New("accounts: cannot apply record")

// chunk is the number of rows per SELECT ... IN: bun formats values into
// the SQL text, so it bounds the statement size.
const chunk = 500

// Apply folds recs into the rows they change and writes those rows with
// projections.UpsertRows through tx. Records of other event types are
// skipped without decoding.
func (*Projection) Apply(ctx context.Context, tx bun.Tx, t projections.Tables, recs []eventlog.Record) error {
	physical := t.Ident(TableName)

	// Decode the account events and collect the accounts they touch, in
	// first-seen order so writes are deterministic.
	type change struct {
		account uuid.UUID
		event   domain.Event
		pos     eventlog.Position
	}
	var changes []change
	var order []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, rec := range recs {
		if !handled[rec.Type] {
			continue
		}
		env, err := domain.DecodeRecord(rec)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrApply, err)
		}
		id := accountOf(env.Event)
		changes = append(changes, change{account: id, event: env.Event, pos: rec.Position})
		if !seen[id] {
			seen[id] = true
			order = append(order, id)
		}
	}
	if len(changes) == 0 {
		return nil
	}

	// Read the rows of those accounts.
	rows := make(map[uuid.UUID]*row, len(order))
	for start := 0; start < len(order); start += chunk {
		ids := order[start:min(start+chunk, len(order))]
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = id.String()
		}
		var got []row
		if err := tx.NewSelect().Model(&got).ModelTableExpr("? AS accounts", physical).
			Where("accounts.account_id IN (?)", bun.List(keys)).Scan(ctx); err != nil {
			return fmt.Errorf("accounts: read rows: %w", err)
		}
		for i := range got {
			id, err := uuid.Parse(got[i].AccountID)
			if err != nil {
				return fmt.Errorf("accounts: row %q: %w", got[i].AccountID, err)
			}
			rows[id] = &got[i]
		}
	}

	// Fold.
	for _, c := range changes {
		r := rows[c.account]
		if r == nil {
			r = &row{AccountID: c.account.String()}
			rows[c.account] = r
		}
		fold(r, c.event)
		r.UpdatedPosition = int64(c.pos.Commit)
	}

	// Write.
	out := make([]row, 0, len(order))
	for _, id := range order {
		out = append(out, *rows[id])
	}
	err := projections.UpsertRows(ctx, tx, t.Name(TableName), columns, 1, len(out), func(i int, dst []any) []any {
		return out[i].values(dst)
	})
	if err != nil {
		return fmt.Errorf("accounts: write rows: %w", err)
	}
	return nil
}

// columns are the columns of the table, the key first, in the order
// row.values gives them.
var columns = []projections.Column{
	{Name: "account_id", PGType: "text"},
	{Name: "email", PGType: "text"},
	{Name: "kind", PGType: "text"},
	{Name: "invited_at", PGType: "bigint"},
	{Name: "expires_at", PGType: "bigint"},
	{Name: "activated_at", PGType: "bigint"},
	{Name: "closed_at", PGType: "bigint"},
	{Name: "invitation_expired", PGType: "boolean"},
	{Name: "identity_subject", PGType: "text"},
	{Name: "phone_hint", PGType: "text"},
	{Name: "phone_reset_requested", PGType: "boolean"},
	{Name: "updated_position", PGType: "bigint"},
	{Name: "erased_at", PGType: "bigint"},
}

// values appends the columns of r to dst, in the order of columns.
func (r *row) values(dst []any) []any {
	ni := projections.NullInt64
	return append(dst, r.AccountID, r.Email, r.Kind, ni(r.InvitedAt), ni(r.ExpiresAt), ni(r.ActivatedAt), ni(r.ClosedAt),
		r.InvitationExpired, r.IdentitySubject, r.PhoneHint, r.PhoneResetRequested, r.UpdatedPosition, ni(r.ErasedAt))
}

// handled lists the event types the projection folds.
var handled = map[string]bool{
	domain.TypeAccountInvited:      true,
	domain.TypeInvitationExpired:   true,
	domain.TypeAccountActivated:    true,
	domain.TypeAccountClosed:       true,
	domain.TypePhoneResetRequested: true,
	domain.TypePhoneCleared:        true,
	domain.TypePhoneEnrolled:       true,
	domain.TypeIdentityLinked:      true,
	domain.TypeAccountErased:       true,
	domain.TypeAccountReopened:     true,
	domain.TypeEmailChanged:        true,
}

// accountOf returns the account an event of a handled type is about.
func accountOf(e domain.Event) uuid.UUID {
	switch e := e.(type) {
	case *domain.AccountInvited:
		return e.AccountID
	case *domain.InvitationExpired:
		return e.AccountID
	case *domain.AccountActivated:
		return e.AccountID
	case *domain.AccountClosed:
		return e.AccountID
	case *domain.PhoneResetRequested:
		return e.AccountID
	case *domain.PhoneCleared:
		return e.AccountID
	case *domain.PhoneEnrolled:
		return e.AccountID
	case *domain.IdentityLinked:
		return e.AccountID
	case *domain.AccountErased:
		return e.AccountID
	case *domain.AccountReopened:
		return e.AccountID
	case *domain.EmailChanged:
		return e.AccountID
	}
	panic(fmt.Sprintf("accounts: unhandled event %T", e)) // handled and accountOf disagree
}

// fold changes r by one event, as domain.Account.Apply changes the
// aggregate. identity.linked.v1, which the Account aggregate does not see,
// records the subject as soon as it is linked (R10: for good, and the same
// subject the activation then carries).
//
// Personal values of an erased account are kept as "": the erasure clears
// them, and the events before it read as domain.ErasedText on a rebuild
// (R22).
func fold(r *row, e domain.Event) {
	plain := func(v string) string {
		if r.ErasedAt.Valid || domain.IsErased(v) {
			return ""
		}
		return v
	}
	switch e := e.(type) {
	case *domain.AccountErased:
		r.ErasedAt = micros(e.ErasedAt)
		r.Email, r.IdentitySubject, r.PhoneHint = "", "", ""
	case *domain.AccountInvited:
		r.Email, r.Kind = plain(e.Email), string(e.Kind)
		r.InvitedAt, r.ExpiresAt = micros(e.InvitedAt), micros(e.ExpiresAt)
		r.InvitationExpired = false
	case *domain.InvitationExpired:
		r.InvitationExpired = true
	case *domain.AccountActivated:
		r.IdentitySubject, r.ActivatedAt = plain(e.IdentitySubject), micros(e.ActivatedAt)
	case *domain.AccountClosed:
		r.ClosedAt = micros(e.ClosedAt)
	case *domain.AccountReopened:
		r.ClosedAt = sql.NullInt64{}
	case *domain.EmailChanged:
		r.Email = plain(e.Email)
	case *domain.PhoneResetRequested:
		r.PhoneResetRequested = true
	case *domain.PhoneCleared:
		r.PhoneResetRequested, r.PhoneHint = false, ""
	case *domain.PhoneEnrolled:
		r.PhoneHint = plain(e.PhoneHint)
	case *domain.IdentityLinked:
		r.IdentitySubject = plain(e.Subject)
	}
}

func micros(t time.Time) sql.NullInt64 { return sql.NullInt64{Int64: t.UnixMicro(), Valid: true} }

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}
