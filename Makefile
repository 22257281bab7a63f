# The two commands of the README: `make run` and `make test`. Everything else is a step of theirs.
SHELL := /bin/bash
PRESET ?= release
BIN := build/release/vote
TEST_BIN := build/debug-asan/vote
export CCACHE_DIR ?= $(HOME)/.cache/ccache

.PHONY: run test build build-test bootstrap stack-up stack-down migrate bench loadtest clean gcc-check format

run: bootstrap build stack-up migrate
	$(BIN) serve --config config/config.yaml

test: bootstrap build-test
	scripts/test

build: bootstrap
	cmake --preset release >/dev/null
	cmake --build --preset release

build-test: bootstrap
	cmake --preset debug-asan >/dev/null
	cmake --build --preset debug-asan

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
	rm -rf build
