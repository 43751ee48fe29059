# Developer tasks. `make help` lists them. CI runs .ci/run, which runs the
# same commands (test, fuzz, mutation) on a clean clone.

GO       ?= go
FUZZTIME ?= 5s

.PHONY: help test race fuzz lint bench mutation ci demo

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: ## the tests (services are skipped unless their variables are set)
	$(GO) test ./...

race: ## the README's test command: every test under the race detector
	$(GO) test -race ./...

fuzz: ## every Fuzz* target for FUZZTIME each
	FUZZTIME=$(FUZZTIME) ./.ci/fuzz

lint: ## gofmt, go vet, staticcheck (v0.8.2)
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: ## benchmarks: bench/REPORT.md and the core benchmarks
	$(GO) run ./bench
	$(GO) test ./postauth -run '^$$' -bench 'Exchange|RawSignatures' -benchmem

mutation: ## remove each security check in turn; a named test must fail
	python3 tools/mutation-check.py

ci: ## what CI runs, on this tree
	./.ci/run

demo: ## the demo
	$(GO) run ./examples/agent
