package datagen

import (
	"fmt"
	"time"
)

// ImportLines returns a legacy system's export of n lines in the import
// format (docs/import.md), for measuring and testing accessd import: per
// five lines a child, a foster carer and a network member (both
// activated), a placement of the child with the carer (every other one
// ended long ago, so with its end and its grace expiry) and a grant of
// view to the member. Every value is made up; the same n gives the same
// lines. The references are NCC-0000000 on; the emails carerI and memberI
// at example.org.
func ImportLines(n int) []string {
	out := make([]string, 0, n+4)
	base := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	for i := 0; len(out) < n; i++ {
		h := time.Duration(i) * time.Hour
		ref, carer, member := fmt.Sprintf("NCC-%07d", i), fmt.Sprintf("carer%d@example.org", i), fmt.Sprintf("member%d@example.org", i)
		end := ""
		if i%2 == 0 {
			end = `,"ended_at":"` + ts(h+400*24*time.Hour) + `"`
		}
		out = append(out,
			`{"kind":"child","reference":"`+ref+`","worker_id":"worker-`+fmt.Sprint(i%50)+`","registered_at":"`+ts(h)+`"}`,
			`{"kind":"account","email":"`+carer+`","account_kind":"foster_carer","invited_at":"`+ts(h)+`","activated_at":"`+ts(h+24*time.Hour)+`","identity_subject":"idp|c`+fmt.Sprint(i)+`"}`,
			`{"kind":"account","email":"`+member+`","account_kind":"network_member","invited_at":"`+ts(h)+`","activated_at":"`+ts(h+48*time.Hour)+`","identity_subject":"idp|m`+fmt.Sprint(i)+`"}`,
			`{"kind":"placement","legacy_id":"PL-`+fmt.Sprint(i)+`","child_reference":"`+ref+`","carer_email":"`+carer+`","started_at":"`+ts(h+72*time.Hour)+`"`+end+`}`,
			`{"kind":"grant","child_reference":"`+ref+`","email":"`+member+`","relationship":"network_member","permissions":["view"],"granted_at":"`+ts(h+96*time.Hour)+`","reason":"legacy grant"}`,
		)
	}
	return out[:n]
}
