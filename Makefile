# Tether's build. `make help` lists the targets.

BIN      := bin/tether
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
ADDR     ?= :8080
DATA     ?= ./data
FUZZTIME ?= 1m
# The Go vulnerability database: the offline copy beside the project where
# there is one, else vuln.go.dev.
VULNDB   ?= $(if $(wildcard ../shared/vulndb/README.md),file://$(abspath ../shared/vulndb),https://vuln.go.dev)

.DEFAULT_GOAL := help

.PHONY: help run test build bench bench-postgres bench-events bench-growth fuzz lint vulncheck clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## serve on :8080 with the store in ./data (ADDR=, DATA= to change; PUBLIC_URL= turns OAuth/OpenID Connect on)
	go run -ldflags "$(LDFLAGS)" ./cmd/tether serve --addr $(ADDR) --data $(DATA) $(if $(PUBLIC_URL),--public-url $(PUBLIC_URL))

test: ## go vet, then every test with the race detector (.ci/test: with the JavaScript clients and a throwaway PostgreSQL where they can be had)
	go vet ./...
	.ci/test

build: ## one static binary: bin/tether
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tether

BENCH_DURATION ?= 3s
BENCH_RUNS     ?= 3
BENCH_CLIENTS  ?= 64

bench: build ## load-test the server (table + bench.json), then the Go benchmarks
	CGO_ENABLED=0 go build -trimpath -o bin/tether-bench ./cmd/tether-bench
	bin/tether-bench --server $(BIN) --duration $(BENCH_DURATION) --clients $(BENCH_CLIENTS) --runs $(BENCH_RUNS) --out bench.json $(if $(BENCH_STORE),--store "$(BENCH_STORE)")
	go test -run '^$$' -bench . -benchmem ./...

bench-postgres: build ## the load test on PostgreSQL: BENCH_STORE, or a throwaway cluster (.ci/postgres)
	CGO_ENABLED=0 go build -trimpath -o bin/tether-bench ./cmd/tether-bench
	bin/tether-bench --server $(BIN) --duration $(BENCH_DURATION) --clients $(BENCH_CLIENTS) --runs $(BENCH_RUNS) --out bench-postgres.json \
	  --store "$${BENCH_STORE:-$$(.ci/postgres)}"

bench-events: build ## login and renewal with the audit trail pushed to two sinks, against none
	CGO_ENABLED=0 go build -trimpath -o bin/tether-bench ./cmd/tether-bench
	bin/tether-bench --server $(BIN) --events --duration $(BENCH_DURATION) --clients $(BENCH_CLIENTS) --runs $(BENCH_RUNS) --out bench-events.json

bench-growth: build ## renewal on a small store against one with 100,000 handsets and 1,000,000 sessions
	CGO_ENABLED=0 go build -trimpath -o bin/tether-bench ./cmd/tether-bench
	bin/tether-bench --server $(BIN) --growth --duration $(BENCH_DURATION) --clients $(BENCH_CLIENTS) --runs $(BENCH_RUNS) --out bench-growth.json

fuzz: ## run each fuzz target for FUZZTIME (1m)
	@for pkg in $$(go list ./...); do \
	  for target in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$target"; \
	    go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint: ## gofmt, go vet, staticcheck, and govulncheck where its database can be reached
	@test -z "$$(gofmt -l .)" || { echo "not gofmt'ed:"; gofmt -l .; exit 1; }
	go vet ./...
	go tool staticcheck ./...
	@db="$(VULNDB)"; case "$$db" in \
	  file://*) test -d "$${db#file://}" ;; \
	  *) curl -fsS -m 10 -o /dev/null "$$db/index/db.json" ;; \
	esac; if [ $$? -eq 0 ]; then \
	  $(MAKE) --no-print-directory vulncheck; \
	else \
	  echo "lint: govulncheck NOT RUN: the vulnerability database $(VULNDB) cannot be reached (set VULNDB to a mirror or a file:// copy)"; \
	  test -z "$(VULNCHECK_REQUIRED)"; \
	fi

vulncheck: ## known vulnerabilities reachable from the code (VULNDB: the Go vulnerability database)
	go tool govulncheck -db "$(VULNDB)" ./...

clean: ## remove the binary and test caches (never ./data)
	rm -rf bin
	go clean -testcache
