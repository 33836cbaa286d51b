# The steps a user types. The logic lives in Go and in the scripts under .ci/.
GO ?= go
BIN := bin/convcov-onnx

.PHONY: build test demo ort bench fuzz fixtures

build:
	$(GO) build -o $(BIN) ./cmd/convcov-onnx

test:
	.ci/check
	$(GO) test -race ./...

ort:
	.ci/ort

demo: build ort
	.ci/demo

bench:
	.ci/bench

fuzz:
	.ci/fuzz

fixtures:
	/usr/bin/python3 testdata/gen/gen.py
