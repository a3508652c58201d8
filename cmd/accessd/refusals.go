package main

import (
	"context"

	"github.com/accessledger/accessledger/commands"
	"github.com/accessledger/accessledger/projections/securitylog"
)

// refusalLog writes the command layer's refusals to the security log.
type refusalLog struct{ log *securitylog.Log }

// RecordRefusal implements commands.Refusals.
func (r refusalLog) RecordRefusal(ctx context.Context, f commands.Refusal) error {
	return r.log.Record(ctx, securitylog.Entry{
		At: f.At, ActorID: f.Actor.ID, ActorRole: string(f.Actor.Role),
		Command: f.Command, Target: f.Target, Code: f.Code, Detail: f.Detail,
		RequestID: f.RequestID, CorrelationID: f.CorrelationID,
	})
}
