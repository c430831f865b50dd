//go:build pprof

package main

// Built with -tags pprof (never in a release), the binary serves the Go
// profiler on the loopback address TETHER_PPROF names, for profiling the
// server under `make bench` (docs/performance.md):
//
//	go build -tags pprof -o bin/tether-pprof ./cmd/tether
//	TETHER_PPROF=127.0.0.1:6060 bin/tether-pprof serve …
//	go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=5

import (
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("TETHER_PPROF")
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("TETHER_PPROF=%q: a loopback host:port", addr)
	}
	go func() { log.Println(http.ListenAndServe(addr, nil)) }()
}
