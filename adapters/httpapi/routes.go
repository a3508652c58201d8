package httpapi

import (
	"net/http"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/queries"
)

// access says who may call a route.
type access int

const (
	// public: no token (health, readiness, metrics).
	public access = iota
	// asks: a verified token; the query service decides who may ask the
	// route's query (queries.Roles).
	asks
	// command: any verified token; the command service decides (R8).
	command
)

// route is one entry of the route table: everything the handler serves is
// registered from this table, and the tests check it against
// docs/openapi.yaml.
type route struct {
	// Name is the route's operationId in docs/openapi.yaml, its label in
	// the access log, for queries the query's name (queries.Name), and,
	// for commands, the command's stable name (commands.Command*) in the
	// metrics.
	Name    string
	Method  string
	Pattern string // a net/http ServeMux path pattern
	Access  access
	// Params lists the query parameters the route accepts; any other is
	// refused with 400.
	Params []string
	// OnMismatch marks the /v1/ routes still served when the ledger has
	// found the stored log tampered with (the ledger's own, and the
	// policy); every other authenticated route then answers 503
	// ledger_mismatch, so a tampered log never serves decisions.
	OnMismatch bool
	// HotRead marks the queries a portal backend asks on every page,
	// whose successful answers the access log may sample or leave out
	// (AccessLog); every other route's requests are always logged.
	HotRead bool
	handle  func(s *server, w http.ResponseWriter, r *http.Request, c call) error
}

// call is what the route handler hands a route's handler: the verified
// caller (zero for public routes) and the checked query parameters.
type call struct {
	actor  domain.Actor
	caller queries.Caller
	q      query
}

// routes returns the route table.
func routes() []route {
	return []route{
		// Commands (api.md). Authorization is the command service's.
		{Name: commands.CommandRegisterChild, Method: http.MethodPost, Pattern: "/v1/children", Access: command, handle: (*server).registerChild},
		{Name: commands.CommandAllocateWorker, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/allocation", Access: command, handle: (*server).allocateWorker},
		{Name: commands.CommandInvite, Method: http.MethodPost, Pattern: "/v1/invitations", Access: command, handle: (*server).invite},
		{Name: commands.CommandActivate, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/activation", Access: command, handle: (*server).activate},
		{Name: commands.CommandCloseAccount, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/close", Access: command, handle: (*server).closeAccount},
		{Name: commands.CommandCancelInvitation, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/invitation/cancel", Access: command, handle: (*server).cancelInvitation},
		{Name: commands.CommandReopenAccount, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/reopen", Access: command, handle: (*server).reopenAccount},
		{Name: commands.CommandRequestEmail, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/email-change-requests", Access: command, handle: (*server).requestEmailChange},
		{Name: commands.CommandChangeEmail, Method: http.MethodPut, Pattern: "/v1/accounts/{account_id}/email", Access: command, handle: (*server).changeEmail},
		{Name: commands.CommandEraseAccount, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/erasure", Access: command, handle: (*server).eraseAccount},
		{Name: commands.CommandEraseChild, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/erasure", Access: command, handle: (*server).eraseChild},
		{Name: commands.CommandSetRetention, Method: http.MethodPut, Pattern: "/v1/children/{child_id}/retention", Access: command, handle: (*server).setRetention},
		{Name: commands.CommandSetPolicy, Method: http.MethodPut, Pattern: "/v1/policy", Access: command, handle: (*server).setPolicy},
		{Name: commands.CommandStartPlacement, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/placements", Access: command, handle: (*server).startPlacement},
		{Name: commands.CommandEndPlacement, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/placements/{placement_id}/end", Access: command, handle: (*server).endPlacement},
		{Name: commands.CommandCancelPlacement, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/placements/{placement_id}/cancel", Access: command, handle: (*server).cancelPlacement},
		{Name: commands.CommandEndGrace, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/placements/{placement_id}/end-grace", Access: command, handle: (*server).endGrace},
		{Name: commands.CommandGrant, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/grants", Access: command, handle: (*server).grant},
		{Name: commands.CommandRevoke, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/grants/{account_id}/revoke", Access: command, handle: (*server).revoke},
		{Name: commands.CommandReviewGrant, Method: http.MethodPost, Pattern: "/v1/children/{child_id}/grants/{account_id}/review", Access: command, handle: (*server).reviewGrant},
		{Name: commands.CommandRequestPhoneReset, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/phone-reset-requests", Access: command, handle: (*server).requestPhoneReset},
		{Name: commands.CommandClearPhone, Method: http.MethodPost, Pattern: "/v1/accounts/{account_id}/phone/clear", Access: command, handle: (*server).clearPhone},
		{Name: commands.CommandEnrolPhone, Method: http.MethodPut, Pattern: "/v1/accounts/{account_id}/phone", Access: command, handle: (*server).enrolPhone},

		// Queries answered by the access index.
		{Name: "check", Method: http.MethodGet, Pattern: "/v1/check", Access: asks, HotRead: true,
			Params: []string{"account_id", "child_id", "carer_id", "permission", "at", "min_position"}, handle: (*server).check},
		{Name: "checks", Method: http.MethodPost, Pattern: "/v1/checks", Access: asks, HotRead: true, handle: (*server).checks},
		{Name: "account_children", Method: http.MethodGet, Pattern: "/v1/accounts/{account_id}/children", Access: asks, HotRead: true,
			Params: []string{"at", "min_position"}, handle: (*server).accountChildren},
		{Name: "list_children", Method: http.MethodGet, Pattern: "/v1/children", Access: asks,
			Params: []string{"reference", "allocated_to", "after", "limit", "min_position"}, handle: (*server).listChildren},
		{Name: "list_reviews", Method: http.MethodGet, Pattern: "/v1/reviews", Access: asks,
			Params: []string{"due_before", "worker_id", "after", "limit", "min_position"}, handle: (*server).listReviews},
		{Name: "get_child", Method: http.MethodGet, Pattern: "/v1/children/{child_id}", Access: asks,
			Params: []string{"at", "min_position"}, handle: (*server).getChild},
		{Name: "child_viewers", Method: http.MethodGet, Pattern: "/v1/children/{child_id}/viewers", Access: asks, HotRead: true,
			Params: []string{"at", "min_position"}, handle: (*server).childViewers},
		{Name: "watch", Method: http.MethodGet, Pattern: "/v1/watch", Access: asks,
			Params: []string{"after"}, handle: (*server).watch},

		// Queries answered by the SQL read models.
		{Name: "child_history", Method: http.MethodGet, Pattern: "/v1/children/{child_id}/history", Access: asks,
			Params: []string{"at", "as_of", "known_at", "min_position"}, handle: (*server).childHistory},
		{Name: "account_history", Method: http.MethodGet, Pattern: "/v1/accounts/{account_id}/history", Access: asks,
			Params: []string{"at", "as_of", "known_at", "min_position"}, handle: (*server).accountHistory},
		{Name: "account_export", Method: http.MethodGet, Pattern: "/v1/accounts/{account_id}/export", Access: asks,
			Params: []string{"format", "min_position"}, handle: (*server).accountExport},
		{Name: "child_export", Method: http.MethodGet, Pattern: "/v1/children/{child_id}/export", Access: asks,
			Params: []string{"format", "min_position"}, handle: (*server).childExport},
		{Name: "get_account", Method: http.MethodGet, Pattern: "/v1/accounts/{account_id}", Access: asks,
			Params: []string{"at", "min_position"}, handle: (*server).getAccount},
		{Name: "list_accounts", Method: http.MethodGet, Pattern: "/v1/accounts", Access: asks,
			Params: []string{"email", "identity_subject", "status", "kind", "needs_phone_enrolment", "phone_reset_requested", "at", "after", "limit", "min_position"},
			handle: (*server).listAccounts},
		{Name: "audit_list", Method: http.MethodGet, Pattern: "/v1/audit", Access: asks,
			Params: []string{"child_id", "account_id", "actor", "from", "to", "after", "limit", "min_position"}, handle: (*server).auditList},
		{Name: "audit_verify", Method: http.MethodGet, Pattern: "/v1/audit/verify", Access: asks,
			Params: []string{"anchor_seq", "anchor_hash", "min_position"}, handle: (*server).auditVerify},
		{Name: "security_log", Method: http.MethodGet, Pattern: "/v1/security-log", Access: asks,
			Params: []string{"actor", "command", "code", "from", "to", "after", "limit", "min_position"}, handle: (*server).securityLog},

		// Record views (R20): kept in the view log, not the event log.
		{Name: "record_views", Method: http.MethodPost, Pattern: "/v1/views", Access: asks, HotRead: true,
			Params: []string{"min_position"}, handle: (*server).recordViews},
		{Name: "child_views", Method: http.MethodGet, Pattern: "/v1/children/{child_id}/views", Access: asks,
			Params: []string{"from", "to", "after", "limit", "min_position"}, handle: (*server).childViews},
		{Name: "account_views", Method: http.MethodGet, Pattern: "/v1/accounts/{account_id}/views", Access: asks,
			Params: []string{"from", "to", "after", "limit", "min_position"}, handle: (*server).accountViews},
		{Name: "alerts", Method: http.MethodGet, Pattern: "/v1/alerts", Access: asks,
			Params: []string{"from", "to", "after", "limit", "min_position"}, handle: (*server).alerts},

		{Name: "policy", Method: http.MethodGet, Pattern: "/v1/policy", Access: asks, HotRead: true, Params: []string{"at", "min_position"},
			OnMismatch: true, handle: (*server).policy},

		// The ledger (R23): checkpoints, its key and proofs (ledger.go).
		{Name: "ledger_checkpoint", Method: http.MethodGet, Pattern: "/v1/ledger/checkpoint", Access: asks,
			OnMismatch: true, handle: (*server).ledgerCheckpoint},
		{Name: "ledger_public_key", Method: http.MethodGet, Pattern: "/v1/ledger/public-key", Access: asks,
			OnMismatch: true, handle: (*server).ledgerPublicKey},
		{Name: "ledger_inclusion_proof", Method: http.MethodGet, Pattern: "/v1/ledger/proof/inclusion", Access: asks,
			Params: []string{"position", "event_id", "tree_size"}, OnMismatch: true, handle: (*server).ledgerInclusionProof},
		{Name: "ledger_consistency_proof", Method: http.MethodGet, Pattern: "/v1/ledger/proof/consistency", Access: asks,
			Params: []string{"from_size", "to_size"}, OnMismatch: true, handle: (*server).ledgerConsistencyProof},

		// Operations.
		{Name: "healthz", Method: http.MethodGet, Pattern: "/healthz", Access: public, handle: (*server).healthz},
		{Name: "readyz", Method: http.MethodGet, Pattern: "/readyz", Access: public, handle: (*server).readyz},
		{Name: "metrics", Method: http.MethodGet, Pattern: "/metrics", Access: public, handle: (*server).serveMetrics},
	}
}
