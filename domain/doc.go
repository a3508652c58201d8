// Package domain holds the rules of accessledger: who may see which child's
// record, and the history of why.
//
// It has two aggregates, Child (worker allocation, placements, grace periods,
// grants) and Account (invitation, activation with an identity subject, the
// phone reset workflow, closure), plus the small IdentityLink aggregate that
// keeps one identity to one account (R10), and PolicyHistory, the one policy
// stream: which policy was in force when (R25). Aggregate state is unexported and
// changes only by applying events; decision methods check the rules and return
// new events or a typed error, and never change state themselves.
//
// The access policy (policy.go) is a set of pure functions of facts and a
// decision time. Nothing in this package reads a clock or does I/O: time is
// always an argument. The package imports only the standard library, its own
// eventlog vocabulary and github.com/google/uuid; a test enforces it.
//
// Every time the package produces is in UTC, truncated to the microsecond, so
// that it survives every store unchanged.
package domain
