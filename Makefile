# The two commands of the README: `make run` and `make test`. Everything else is a step of theirs.
SHELL := /bin/bash
PRESET ?= release
BIN := build/release/vote
TEST_BIN := build/debug-asan/vote
export CCACHE_DIR ?= $(HOME)/.cache/ccache

# What the web client's build reads: it is rebuilt only when one of these changed.
WEB_SOURCES := $(shell find web/src web/public web/scripts -type f 2>/dev/null) \
  web/index.html web/vite.config.ts web/tsconfig.json web/package.json web/package-lock.json docs/openapi.yaml

.PHONY: run test build build-test fuzz faults observe observe-down web bootstrap stack-up stack-down migrate bench loadtest clean gcc-check format

run: bootstrap build stack-up migrate
	$(BIN) serve --config config/config.yaml

test: bootstrap build-test web
	scripts/test

# The web client, served by the server from web/dist (server.web_root).
web: web/dist/index.html

web/dist/index.html: $(WEB_SOURCES) | bootstrap
	cd web && npm run build

build: bootstrap web
	cmake --preset release >/dev/null
	cmake --build --preset release

build-test: bootstrap
	cmake --preset debug-asan >/dev/null
	cmake --build --preset debug-asan
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz

# A local Prometheus and Alertmanager (deploy/) on the stack of `make run`; prints the URLs.
observe: bootstrap
	scripts/observe

observe-down:
	scripts/observe down

# Every fault of tests/faults under load, with the table of error windows and stored votes.
faults: bootstrap build-test
	scripts/test faults

# Each libFuzzer target for FUZZ_SECONDS (make test runs them over their seeds, briefly).
FUZZ_SECONDS ?= 600
fuzz: bootstrap
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz
	scripts/fuzz $(FUZZ_SECONDS)

bootstrap:
	@scripts/bootstrap

stack-up:
	scripts/stack up

stack-down:
	scripts/stack down

migrate: build
	$(BIN) migrate up --config config/config.yaml

bench: build
	build/release/micro_bench
	scripts/bench-http

loadtest: build stack-up migrate
	loadtest/run

gcc-check:
	cmake --preset gcc >/dev/null
	cmake --build --preset gcc

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'bench/*.cpp')

clean:
	rm -rf build web/dist
