# accessledger — see README.md. `make help` lists the targets.

GO        ?= go
DATA_DIR  ?= ./data
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
BENCHCOUNT ?= 6
PKGS      := ./...
# The pinned linter, run from the module proxy (not a dependency of the module).
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

# Fuzz targets as package:Target pairs; `make fuzz` runs each for FUZZTIME.
FUZZ_TARGETS := ./adapters/bus:FuzzDecodeEvent ./domain:FuzzDecode ./domain:FuzzMaskPhone ./domain/eventlog:FuzzParsePosition \
  ./domain/eventlog:FuzzPositionRoundTrip ./projections/audit:FuzzCanonicalRoundTrip \
  ./adapters/auth:FuzzVerify ./adapters/httpapi:FuzzCommandBodies ./adapters/httpapi:FuzzChecksBody \
  ./projections/ledger:FuzzDecodeLeaf ./projections/ledger:FuzzParseCheckpointBody ./projections/ledger:FuzzOpenCheckpoint \
  ./internal/importer:FuzzDecodeLine ./adapters/httpapi:FuzzDecodeViews ./adapters/console:FuzzParseWhen ./projections/accessindex:FuzzDecodeSnapshot \
  ./projections/accesshistory:FuzzDecodeSnapshot ./internal/snapshotfile:FuzzDecodeGobParts

.PHONY: help run build migrate generate test test-race-skipped test-norace test-race test-race-pass build-nocgo lint lint-code lint-tools lint-wire fuzz bench cover browser-deps

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

ADDR ?= 127.0.0.1:8080

run: ## run the engine on its embedded default (SQLite in $(DATA_DIR), HTTP on $(ADDR))
	@echo "accessd: starting on http://$(ADDR) with data in $(DATA_DIR). In another shell:"
	@echo "  TOKEN=\$$(go run ./cmd/accessd token --data-dir $(DATA_DIR) --role worker --sub worker-ann)"
	@echo "  curl -s -X POST -H \"Authorization: Bearer \$$TOKEN\" -H 'Content-Type: application/json' \\"
	@echo "       -d '{\"reference\":\"C-0001\"}' http://$(ADDR)/v1/children"
	@echo "  curl -s -H \"Authorization: Bearer \$$TOKEN\" http://$(ADDR)/v1/policy"
	@echo "  The auditor's console is at http://$(ADDR)/console: the sign-in link is printed below once the engine listens."
	$(GO) run ./cmd/accessd serve --data-dir $(DATA_DIR) --addr $(ADDR) --console-link auditor

build: ## build the binaries into ./bin (no cgo)
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/...

migrate: ## apply the schema migrations to the embedded default store
	$(GO) run ./cmd/accessd migrate --data-dir $(DATA_DIR)

generate: ## regenerate the wire types (api/wire.gen.go) from docs/openapi.yaml with the pinned oapi-codegen
	$(GO) generate ./api

# Parallel tests at a time per package: the end-to-end tests mostly wait
# (on deadlines, fsync, a server starting), so more than the cores pays.
PARALLEL ?= 4
# Test packages built and run at a time by the race pass (go test -p;
# empty: go's default, the number of CPUs). A package whose tests wait holds
# its slot and leaves a core idle; .ci/run fills it with the second pass and
# the lint beside the race pass rather than with a third package: the
# end-to-end tests give a server 10-30 s to start, and on a loaded machine
# more packages at once made them miss it.
TESTP ?=

# Tests too slow for the race detector, with nothing in them for it to find
# (one goroutine writing or replaying a data set; the load tool on the engine
# the end-to-end tests run under the detector; bulk SQL writes, a rebuild
# compared with a runner's result, and the random histories of the
# consistency property, whose concurrent parts have tests of their own
# under the detector), skip themselves under it;
# `make test` runs them once more without it (test-race-skipped). An entry is
# PACKAGE:NAME, or PACKAGE:PATH for a subtest (go test -run's levels, split
# at /). Top-level names must be unique across the listed packages.
RACE_SKIPPED := ./internal/datagen:TestCountyCalibration ./internal/datagen:TestSmallEndToEnd \
  ./cmd/accessd:TestRule_R21_TheExportOfASeededAccountHoldsEveryInterval \
  ./cmd/accessd:TestTheChangeFeedsCarryWhatTimeChanges ./cmd/accessd:TestGenerateWritesTheDataSetAndRefusesAFullStore \
  ./internal/bench:TestBenchSmallEndToEnd \
  ./adapters/sqlstore:TestConformance/.*/TenThousandEventsInOneAppend \
  ./adapters/eventstoredb:TestConformance/.*/TenThousandEventsInOneAppend \
  ./projections:TestInsertRows ./projections:TestRebuildMatchesIncremental \
  ./projections/consistency:TestProperty_IndexHistoryAndReplayAgree ./projections/accesshistory:TestFoldMatchesReference \
  ./projections/accesshistory:TestSnapshotKilledWhileWriting

# The longest test packages, started first: go test runs packages in the
# order given, a few at a time (-p, the number of CPUs), so a long one
# started last would run alone at the end. Measured with
# `go test -race -json ./...` (docs/performance.md, "The test suite"); the
# console's package drives a browser.
SLOW_PKGS := ./cmd/accessd ./adapters/console ./adapters/outbox ./adapters/sqlstore ./adapters/httpapi ./adapters/eventstoredb \
  ./adapters/processmanager ./projections ./internal/reseal ./projections/accesshistory

# Where `make test` keeps what tests write to t.ArtifactDir() (the browser
# tests' screenshots): ARTIFACTS/_artifacts/<random>/, emptied at each run.
ARTIFACTS ?= $(CURDIR)/test-artifacts

# make test: the wire types' check first (it rewrites api/wire.gen.go, so
# it ends before anything compiles the api package), then every test once
# under the race detector in the foreground, and beside it, one after the
# other, the tests that skip under it, without it (test-race-skipped), the
# lint and the build without cgo: they take the core the race pass's
# waiting tests leave idle. Their output is printed whole when they end;
# any step's failure fails make test, once all have ended.
test: ## lint, build without cgo, run every test once, under the race detector (PostgreSQL ones need ACCESSLEDGER_TEST_POSTGRES_DSN)
	@$(MAKE) --no-print-directory lint-wire
	@log=$$(mktemp); \
	  ( rc=0; $(MAKE) --no-print-directory test-race-skipped || rc=1; \
	    $(MAKE) --no-print-directory lint-code build-nocgo || rc=1; exit $$rc ) >"$$log" 2>&1 </dev/null & bg=$$!; \
	  rc=0; $(MAKE) --no-print-directory test-race-pass || rc=1; \
	  wait $$bg || rc=1; \
	  echo "---- beside the race pass: the tests without the race detector, the lint, the build without cgo ----"; \
	  cat "$$log"; rm -f "$$log"; exit $$rc

build-nocgo: ## build every package without cgo, as make build does (make test's first step after lint)
	CGO_ENABLED=0 $(GO) build ./...

test-race-pass: ## run every test once under the race detector (make test's first pass; .ci/run runs it beside lint and the second pass)
	rm -rf $(ARTIFACTS)/_artifacts && mkdir -p $(ARTIFACTS)
	$(GO) test -race -count=1 -timeout 20m $(if $(TESTP),-p $(TESTP)) -parallel $(PARALLEL) -artifacts -outputdir $(ARTIFACTS) $(if $(filter ./...,$(PKGS)),$(SLOW_PKGS)) $(PKGS)

test-race-skipped: ## run the tests that skip under the race detector (RACE_SKIPPED), without it: make test's second pass
	@set -ef; top=""; pkgs=""; subs=""; \
	for t in $(RACE_SKIPPED); do p="$${t%%:*}"; n="$${t#*:}"; \
	  case "$$n" in */*) subs="$$subs $$n";; *) top="$${top:+$$top|}$$n"; pkgs="$$pkgs $$p";; esac; done; \
	echo "$(GO) test -count=1 -run '^($$top)$$'$$pkgs"; $(GO) test -count=1 -run "^($$top)$$" $$pkgs; \
	for n in $$(printf '%s\n' $$subs | sort -u); do \
	  sp=""; for t in $(RACE_SKIPPED); do if [ "$${t#*:}" = "$$n" ]; then sp="$$sp $${t%%:*}"; fi; done; \
	  echo "$(GO) test -count=1 -run '^$$n$$'$$sp"; $(GO) test -count=1 -run "^$$n$$" $$sp; done

test-norace: ## run every test without the race detector (quicker when iterating; make test is what CI runs)
	$(GO) test -count=1 $(PKGS)

test-race: test ## the same as make test (every test already runs under the race detector)

lint: lint-code lint-wire ## gofmt, go vet, golangci-lint (.golangci.yml), and the wire types up to date with docs/openapi.yaml

lint-code: ## gofmt, go vet, golangci-lint (make lint without the wire types' check)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GOLANGCI_LINT) run --allow-serial-runners $(PKGS)

lint-tools: ## build the pinned golangci-lint into the build cache (.ci/run does it while the services start)
	$(GOLANGCI_LINT) version

# It rewrites api/wire.gen.go: nothing may compile the api package meanwhile.
lint-wire: ## the wire types up to date with docs/openapi.yaml (make lint's last step)
	@cp api/wire.gen.go api/.wire.gen.go.before && $(GO) generate ./api && \
	  if ! cmp -s api/.wire.gen.go.before api/wire.gen.go; then rm -f api/.wire.gen.go.before; \
	    echo "api/wire.gen.go was out of date with docs/openapi.yaml: it is regenerated now; commit it"; exit 1; fi; \
	  rm -f api/.wire.gen.go.before

# axe-core for the browser tests' accessibility checks, at the version
# pinned in internal/browsertest/axe/package-lock.json (Chromium itself
# comes from Debian: apt-get install chromium).
browser-deps: ## install the browser tests' npm dependencies (axe-core, pinned) into internal/browsertest/axe/node_modules
	cd internal/browsertest/axe && npm ci --no-audit --no-fund

fuzz: ## run every fuzz target for FUZZTIME (default 30s each)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
	  $(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

bench: ## run the Go benchmarks with -benchmem, BENCHCOUNT times (benchstat-ready) into bench.txt
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) -count=$(BENCHCOUNT) $(PKGS) | tee bench.txt

cover: ## test with a coverage profile
	$(GO) test -count=1 -coverprofile=cover.out $(PKGS)
	$(GO) tool cover -func=cover.out | tail -1
