# drover: the two commands a user needs are `make demo` and `make test`.
# Everything else here is what they are built from.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/drover-net/drover/internal/buildinfo.Version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all deps build vet unit e2e test test-faults test-faults-ci demo demo-down screenshot bench-overlay bench-confgen bench-lb bench-dns clean

all: build

## deps: install system packages (haproxy, docker.io, wireguard-tools, …) and build bin/consul
deps:
	@deploy/deps.sh

## build: the static drover binary and the demo server
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/drover ./cmd/drover
	$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/drover-demo ./cmd/drover-demo

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi

## unit: pure tests, no root needed
unit:
	$(GO) test -count=1 ./...

## e2e: end-to-end tests in sandboxes (root; they skip with a reason otherwise)
E2E_RUN ?= .
e2e: deps build
	DROVER_BIN_DIR=$(BIN) $(GO) test -tags e2e -count=1 -timeout 40m -v -run '$(E2E_RUN)' ./test/e2e/

## test: everything: deps, vet, unit and end-to-end tests, and the fault suite's CI subset
test: deps build vet unit e2e test-faults-ci

## test-faults: the whole fault suite (issue 12's matrix, test/e2e/faults_*_test.go, tags e2e+faults),
## each case at full length; ends with the summary table and writes docs/reliability.md from this run
FAULTS_RUN ?= TestFault
FAULTS_OUT ?= $(BIN)/faults.jsonl
test-faults: deps build
	@rm -f $(FAULTS_OUT)
	start=$$(date +%s); \
	DROVER_BIN_DIR=$(BIN) DROVER_FAULTS_OUT=$(FAULTS_OUT) $(GO) test -tags 'e2e faults' -count=1 -timeout 150m -v -run '$(FAULTS_RUN)' ./test/e2e/ 2>&1 | grep -v 'level=INFO'; \
	  status=$${PIPESTATUS[0]}; \
	  $(GO) run ./test/faults/report -in $(FAULTS_OUT) -out docs/reliability.md -elapsed $$(( $$(date +%s) - start )) || status=1; \
	  exit $$status

## test-faults-ci: the chosen CI subset of the fault suite (short variants, see docs/reliability.md), run
## by `make test` after the e2e tests; prints the summary table, writes no docs. One pattern per level:
## go test splits -run at "/".
FAULTS_CI ?= ^(TestFaultDocker|TestFaultLB|TestFaultConsulProxy|TestFaultConsulServers)$$/^(T13|T14|T17|T8|T3)$$
test-faults-ci: deps build
	@rm -f $(BIN)/faults-ci.jsonl
	start=$$(date +%s); \
	DROVER_BIN_DIR=$(BIN) DROVER_FAULTS_OUT=$(BIN)/faults-ci.jsonl DROVER_FAULTS_SHORT=1 $(GO) test -tags 'e2e faults' -count=1 -timeout 30m -v -run '$(FAULTS_CI)' ./test/e2e/ 2>&1 | grep -v 'level=INFO'; \
	  status=$${PIPESTATUS[0]}; \
	  $(GO) run ./test/faults/report -in $(BIN)/faults-ci.jsonl -out '' -elapsed $$(( $$(date +%s) - start )) || status=1; \
	  exit $$status

## bench-overlay: TCP throughput through drover's mesh vs hand-configured wireguard-go vs the underlay
bench-overlay: deps build
	DROVER_BIN_DIR=$(BIN) $(GO) test -tags e2e -count=1 -run XXX -bench OverlayThroughput -benchtime 1x -v ./test/e2e/ 2>&1 | grep -v 'level=INFO'

## bench-lb: docker start → first proxied response, http and https (p50/p99 over 100 tries); plan/render 1,000 backends × 10 servers; runtime ops/s
bench-lb: deps build
	$(GO) test -run XXX -bench . -benchtime 3x ./lb/
	DROVER_BIN_DIR=$(BIN) $(GO) test -tags e2e -count=1 -run XXX -timeout 60m -bench 'LB' -benchtime 1x -v ./test/e2e/ 2>&1 | grep -v 'level=INFO'

## bench-dns: DNS lookups from a container with 1,000 instances in Consul (p50/p99, target 5 ms p99); answer() over 1,000 instances
bench-dns: deps build
	$(GO) test -run XXX -bench . ./discovery/dns/
	DROVER_BIN_DIR=$(BIN) $(GO) test -tags e2e -count=1 -run XXX -bench DNS1000 -benchtime 1x -v ./test/e2e/ 2>&1 | grep -v 'level=INFO'

## bench-confgen: render time of a template over 10,000 keys and 1,000 instances
bench-confgen:
	$(GO) test -run XXX -bench Render -benchtime 20x ./confgen/

## demo: a 3-host cluster in namespaces with Consul and Docker; prints what to try
demo: deps build
	@test/demo.sh up

## demo-down: remove the demo cluster and everything it made
demo-down: build
	@test/demo.sh down

## screenshot: docs/ui.png, h1's web UI in a 3-host sandbox (services, an lb, a refused container),
## taken by TestUI's headless chromium (the same page the test asserts on), so the README's picture stays true
screenshot: deps build
	DROVER_BIN_DIR=$(BIN) DROVER_UI_SCREENSHOT=$(CURDIR)/docs/ui.png $(GO) test -tags e2e -count=1 -timeout 15m -v -run '^TestUI$$' ./test/e2e/ 2>&1 | grep -v 'level=INFO'; exit $${PIPESTATUS[0]}

clean:
	rm -f $(BIN)/drover $(BIN)/drover-demo
