// Package client is a Go client of the Relink gateway's HTTP API,
// generated from the gateway's OpenAPI document (gateway/openapi.json) by
// oapi-codegen (github.com/oapi-codegen/oapi-codegen/v2, pinned in go.mod
// as a tool). client.gen.go is generated: do not edit it; change the
// document and run `go generate ./client` (or `task generate`). CI fails
// when client.gen.go is not what the document generates.
//
// oapi-codegen reads the document through openapi-overlay.yaml, which
// says why: every error answer is the Error schema, with the gateway's
// code and message.
//
// Use NewClientWithResponses with the gateway's base URL and a request
// editor that sets the credential:
//
//	c, err := client.NewClientWithResponses("https://relink.example.com",
//		client.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
//			req.Header.Set("Authorization", "Bearer "+apiKey)
//			return nil
//		}))
//	res, err := c.GetRepairWithResponse(ctx, "plaid", "item_1", nil)
//	// res.JSON200 is the repair; res.JSON404 etc. the gateway's Error.
//
// Each call's response holds the raw body (Body), the *http.Response and
// one typed field per status the document lists (JSON200, JSON404, …).
package client

// The document's ProviderName enum is generated first (go generate
// ./gateway): `go generate ./...` reaches client before gateway, and the
// client must be generated from the current document.
//go:generate go generate ../gateway
//go:generate go tool oapi-codegen -config oapi-codegen.yaml -o client.gen.go ../gateway/openapi.json
