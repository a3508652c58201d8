package accessindex_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/accessledger/accessledger/domain"
	"github.com/accessledger/accessledger/projections/accessindex"
	"github.com/accessledger/accessledger/projections/projtest"
)

// TestRule_R19_AClosedAccountsGrantsLeaveTheReviewsList: closing an account
// ends its grants (R13), and reopening it does not bring them back (R18):
// they are no longer due for review.
func TestRule_R19_AClosedAccountsGrantsLeaveTheReviewsList(t *testing.T) {
	w := projtest.New(t.Fatalf)
	child := w.RegisterChild()
	member := w.Member()
	w.Grant(child, member, domain.PermView)
	ix := accessindex.New()
	require.NoError(t, ix.Apply(w.Records...))
	due := func() int {
		got, _, _ := ix.GrantsDue("", w.Now.Add(3*365*24*time.Hour), w.Now, accessindex.DueKey{}, 100)
		return len(got)
	}
	require.Equal(t, 1, due())
	n := len(w.Records)
	w.Close(member)
	require.NoError(t, ix.Apply(w.Records[n:]...))
	require.Equal(t, 0, due(), "a closed account's grant is not due for review")
}
