//go:build grpc_legacy

package main

import "google.golang.org/grpc"

// dial for grpc-go older than 1.63 (Debian 12 ships 1.33), which has neither grpc.NewClient nor
// credentials/insecure. Build with -tags grpc_legacy there; conn.go is the current API.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.Dial(addr, grpc.WithInsecure())
}
