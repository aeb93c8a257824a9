// Command client calls keyward from Go with grpc-go: it issues a key, then verifies it.
//
//	./gen.sh && go mod tidy                      # once: generates gen/keywardv1
//	KEYWARD_ADMIN_TOKEN=... go run . [-show-key]
//
// Environment: KEYWARD_ADDR (default 127.0.0.1:50051), KEYWARD_ADMIN_TOKEN (required for Issue).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keywardv1 "keyward.example/client/gen/keywardv1"
)

func main() {
	showKey := flag.Bool("show-key", false, "print the issued key")
	flag.Parse()
	if err := run(*showKey); err != nil {
		if st, ok := status.FromError(err); ok {
			// A failed RPC: gRPC status code and message, e.g. Unauthenticated: invalid credential.
			fmt.Fprintf(os.Stderr, "error: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
		}
		os.Exit(1)
	}
}

func run(showKey bool) error {
	addr := os.Getenv("KEYWARD_ADDR")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	adminToken := os.Getenv("KEYWARD_ADMIN_TOKEN")
	if adminToken == "" {
		return errors.New("set KEYWARD_ADMIN_TOKEN (Issue is a management call)")
	}

	conn, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	keys := keywardv1.NewKeyServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Management calls carry the admin token (or a keyward:admin key) as a bearer credential.
	adminCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
	issued, err := keys.Issue(adminCtx, &keywardv1.IssueRequest{
		TenantId:  "acme",
		Name:      "go example",
		Scopes:    []string{"invoices:read"},
		RateLimit: 1000,
	})
	if err != nil {
		return err
	}
	// The plaintext key is returned this once; keyward stores only its hash.
	apiKey := issued.GetApiKey()
	fmt.Printf("issued %s (prefix %s) for tenant %s\n", apiKey.GetId(), apiKey.GetPrefix(), apiKey.GetTenantId())
	if showKey {
		fmt.Printf("key: %s\n", issued.GetKey())
	}

	// Verify needs no credential. An invalid key is a normal answer (valid=false and a code), not an error.
	for _, scope := range []string{"invoices:read", "invoices:write"} {
		res, err := keys.Verify(ctx, &keywardv1.VerifyRequest{Key: issued.GetKey(), RequiredScopes: []string{scope}})
		if err != nil {
			return err
		}
		fmt.Printf("verify %s: valid=%t code=%s\n", scope, res.GetValid(), res.GetCode())
	}
	return nil
}
