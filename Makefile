# Liaison — the two commands of the README, and a few more.
#   make run    install what is missing, build (release), start PostgreSQL and all five services, run the demo
#   make stop   stop the services and PostgreSQL
#   make test   install what is missing and run every test on a throwaway PostgreSQL
.PHONY: run stop status test deps build interop fuzz overload bench-storage bench-transport bench-intake bench-sla generate check-generated lint

run: deps
	swift build -c release
	scripts/stack.sh start

stop:
	scripts/stack.sh stop

status:
	scripts/stack.sh status

test: deps
	scripts/test.sh

deps:
	@scripts/install-deps.sh

build:
	swift build -c release

interop: deps
	Tests/interop/run.sh

# Long versions of what make test runs briefly (FUZZ_SECONDS / OVERLOAD_SECONDS to change).
fuzz: deps
	swift build
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} Tests/fuzz/run.sh

overload: deps
	swift build
	OVERLOAD_SECONDS=$${OVERLOAD_SECONDS:-60} Tests/overload/run.sh

bench-storage: deps
	Benchmarks/storage/run.sh

bench-transport: deps
	Benchmarks/transport/run.sh

bench-intake: deps
	Benchmarks/intake/run.sh

bench-sla: deps
	Benchmarks/sla/run.sh

generate:
	protos/generate.sh

check-generated:
	protos/check-generated.sh

lint:
	protos/lint.sh
