package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/google/uuid"

	"github.com/accessledger/accessledger/api"
	"github.com/accessledger/accessledger/client"
)

// portal stands in for an accessledger server in the examples: it answers
// a grant and a check as the API does (docs/openapi.yaml), and says which
// consistency token the check carried.
func portal() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/check":
			fmt.Println("check waits for position", r.URL.Query().Get("min_position"))
			fmt.Fprint(w, `{"allowed":true,"permissions":["view"],"reason":"grant","until":null,"at":"2026-03-03T09:00:00Z","position":"42"}`)
		case "/v1/children/00000000-0000-4000-8000-000000000001/grants":
			fmt.Fprint(w, `{"position":"42"}`)
		case "/v1/watch":
			// One change, then the connection drops; the client comes back
			// after the position it was given.
			w.Header().Set("Content-Type", "text/event-stream")
			if r.URL.Query().Get("after") == "42" {
				fmt.Fprint(w, "retry: 1000\n\nid: 43\nevent: access\ndata: "+
					`{"account_id":"00000000-0000-4000-8000-000000000002","child_id":"00000000-0000-4000-8000-000000000001",`+
					`"permissions":[],"reason":"revoked","until":null,"at":"2026-03-03T09:00:00Z","position":"43"}`+"\n\n")
				return
			}
			fmt.Println("watch resumes after", r.URL.Query().Get("after"))
			<-r.Context().Done()
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"type":"urn:accessledger:problem:not_found","title":"Not found","status":404,"detail":"child not found","code":"not_found"}`)
		}
	}))
}

var (
	child  = uuid.MustParse("00000000-0000-4000-8000-000000000001")
	member = uuid.MustParse("00000000-0000-4000-8000-000000000002")
)

// A portal backend asks whether an account may view a child's record. The
// check carries the position of the grant this client made before it, so
// any replica answers it with the grant applied.
func ExampleClient_Check() {
	srv := portal()
	defer srv.Close()
	c, err := client.New(srv.URL, "a-bearer-token")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := c.Grant(ctx, child, member, api.GrantRequestRelationshipGuardian,
		[]api.GrantRequestPermissions{api.GrantRequestPermissionsView}, "grandmother, agreed at review"); err != nil {
		panic(err)
	}
	a, err := c.Check(ctx, client.CheckQuery{Account: member, Child: child, Permission: api.PermissionView})
	if err != nil {
		panic(err)
	}
	fmt.Println(a.Allowed, a.Reason, a.Until == nil)
	// Output:
	// check waits for position 42
	// true grant true
}

// Problems are matched by their code.
func ExampleProblem() {
	srv := portal()
	defer srv.Close()
	c, _ := client.New(srv.URL, "a-bearer-token")
	_, err := c.Child(context.Background(), uuid.New(), time.Time{})
	var p *client.Problem
	fmt.Println(errors.Is(err, client.ErrNotFound), errors.As(err, &p) && p.Status == 404)
	fmt.Println(err)
	// Output:
	// true true
	// Not found: child not found (code not_found, status 404)
}

// A portal backend keeps a cache of who may see what: Watch delivers each
// access change, and after a dropped connection resumes after the last
// change it delivered.
func ExampleClient_Watch() {
	srv := portal()
	defer srv.Close()
	c, _ := client.New(srv.URL, "a-bearer-token")
	c.RetryWait = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Watch(ctx, "42", func(e api.WatchEvent) error {
		fmt.Println(e.AccountID, "on", e.ChildID, "->", e.Reason, "at position", e.Position)
		go func() { time.Sleep(100 * time.Millisecond); cancel() }() // enough for this example
		return nil
	})
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// 00000000-0000-4000-8000-000000000002 on 00000000-0000-4000-8000-000000000001 -> revoked at position 43
	// watch resumes after 43
	// true
}
