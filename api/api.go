// Package api holds the wire types of accessledger's HTTP API: every
// request body and answer of docs/openapi.yaml, generated from that
// document by oapi-codegen (wire.gen.go; never edit it by hand). The server
// (adapters/httpapi) answers with these types and decodes request bodies
// into them; the Go client (package client) sends and reads the same
// types, so the document, the server and the client cannot disagree on a
// field. After editing docs/openapi.yaml, run `go generate ./api`;
// `make lint` fails while wire.gen.go is out of date.
//
// Request fields that the server parses itself (ids, times) are strings on
// the wire types (x-go-type: string in the document), so that a malformed
// value gets the server's own precise 400 rather than a JSON decoding
// error; free-text fields carry the tag api:"text" (tab and line feed
// allowed).
package api

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml ../docs/openapi.yaml
