# vpnfleet: a control plane for fleets of self-hosted VPN servers.
# Everything builds from the Go module proxy; nothing is installed by hand.

GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/vpnfleet/vpnfleet/shared/version.Version=$(VERSION)
# Every module of the workspace (a bare `go test ./...` does not work at a
# workspace root).
MODULES  = $(shell $(GO) list -m -f '{{.Dir}}')
PKGS     = $(addsuffix /...,$(MODULES))
# Binaries and where their main packages live.
CMDS := ./services/vpnd/cmd/vpnd \
        ./services/gateway/cmd/vpn-gateway \
        ./services/users/cmd/vpn-users \
        ./services/health/cmd/vpn-health \
        ./services/runtime-agent/cmd/vpn-agent \
        ./services/vpnd/cmd/vpn-cluster \
        ./cli/cmd/vpn
# staticcheck, pinned, built from the module proxy by `go run` (a
# version-suffixed `go run` ignores go.work, so no module depends on it). It
# runs once per module: the workspace root is not a module.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Extra arguments for `make run`, e.g. make run ARGS="--log-level debug".
ARGS ?=
TEST_TIMEOUT ?= 25m
BENCH ?= .
BENCHTIME ?= 1x

# Xray-core is pinned by services/runtime-agent/go.mod (a tool directive) and
# built from the module proxy; the image is FROM scratch, so neither needs a
# registry. bin/xray is vpn-xray: that Xray-core with the session extension
# (ends a user's open connections, counts traffic while it flows);
# bin/xray-stock is the stock Xray-core, which the agent also drives.
XRAY_VERSION = $(shell cd services/runtime-agent && $(GO) list -m -f '{{.Version}}' github.com/xtls/xray-core)
XRAY_IMAGE  ?= vpnfleet/xray:$(XRAY_VERSION)
# The images of deploy/ (FROM scratch, non-root, with Xray and a CA bundle);
# docker-compose.yml runs $(VPND_IMAGE).
VPND_IMAGE  ?= vpnfleet/vpnd:local
AGENT_IMAGE ?= vpnfleet/vpn-agent:local
# The reference cluster (deploy/cluster): nats-server from the module
# shared/go.mod pins, and the standalone services (deploy/Dockerfile).
NATS_IMAGE    ?= vpnfleet/nats:local
USERS_IMAGE   ?= vpnfleet/vpn-users:local
GATEWAY_IMAGE ?= vpnfleet/vpn-gateway:local
HEALTH_IMAGE  ?= vpnfleet/vpn-health:local
export NATS_IMAGE USERS_IMAGE GATEWAY_IMAGE HEALTH_IMAGE AGENT_IMAGE
# The CA bundle the images carry (HTTPS notifiers, OTLP, TLS to NATS),
# copied from the build host.
CA_BUNDLE   ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: all build run test bench lint fmt clean xray xray-stock wireguard xray-image proto image agent-image ca-bundle tools nats-server nats-image service-images cluster-images cluster-up cluster-check cluster-down agent-binaries

all: build

## build: every binary into bin/
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(CMDS)

## run: build and start vpnd (embedded NATS, data in ./data); its "vpnd ready" log line says where the API listens (http://127.0.0.1:8080 unless ARGS say otherwise)
run: build xray
	$(BIN)/vpnd $(ARGS)

## xray: build vpn-xray (the pinned Xray-core with the session extension) into bin/xray
xray:
	@mkdir -p $(BIN)
	cd services/runtime-agent && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/xray ./cmd/vpn-xray

## xray-stock: build the stock pinned Xray-core into bin/xray-stock
xray-stock:
	@mkdir -p $(BIN)
	cd services/runtime-agent && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/xray-stock github.com/xtls/xray-core/main

## wireguard: build vpn-wireguard (the userspace WireGuard workload: wireguard-go with netstack forwarding or a TUN device, peers set live over UAPI) into bin/vpn-wireguard; its tests build it themselves with go build (or use VPN_WIREGUARD_BIN), so `make test` needs no step for it
wireguard:
	@mkdir -p $(BIN)
	cd services/runtime-agent && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vpn-wireguard ./cmd/vpn-wireguard

## proto: regenerate the session extension's Go code from its .proto (needs protoc: apt-get install protobuf-compiler)
PROTOC_GEN_GO      ?= google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC ?= google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
proto:
	@mkdir -p $(BIN)/protoc-gen
	GOBIN=$(BIN)/protoc-gen $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(BIN)/protoc-gen $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd services/runtime-agent/internal/xray/sessionpb && PATH=$(BIN)/protoc-gen:$$PATH protoc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative sessions.proto

## xray-image: a local FROM-scratch image of bin/xray (tag $(XRAY_IMAGE))
xray-image: xray
	docker build -q -f deploy/xray.Dockerfile -t $(XRAY_IMAGE) $(BIN)

## image: the vpnd image with Xray (deploy/vpnd.Dockerfile, tag $(VPND_IMAGE)), which docker-compose.yml runs
image: build xray ca-bundle
	docker build -q -f deploy/vpnd.Dockerfile -t $(VPND_IMAGE) .

## agent-image: the vpn-agent image with Xray (deploy/agent.Dockerfile, tag $(AGENT_IMAGE))
agent-image: build xray ca-bundle
	docker build -q -f deploy/agent.Dockerfile -t $(AGENT_IMAGE) .

## nats-server: the nats-server pinned by shared/go.mod, static, into bin/nats-server
nats-server:
	@mkdir -p $(BIN)
	cd shared && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

## nats-image: a FROM-scratch image of bin/nats-server (deploy/nats.Dockerfile, tag $(NATS_IMAGE))
nats-image: nats-server
	docker build -q -f deploy/nats.Dockerfile -t $(NATS_IMAGE) .

## service-images: vpn-users, vpn-gateway and vpn-health images (deploy/Dockerfile)
service-images: build ca-bundle
	docker build -q -f deploy/Dockerfile --build-arg BIN=vpn-users -t $(USERS_IMAGE) .
	docker build -q -f deploy/Dockerfile --build-arg BIN=vpn-gateway -t $(GATEWAY_IMAGE) .
	docker build -q -f deploy/Dockerfile --build-arg BIN=vpn-health -t $(HEALTH_IMAGE) .

## cluster-images: every image deploy/cluster runs
cluster-images: nats-image service-images agent-image

## cluster-up: the reference cluster (3 NATS, users/gateway/health x2, 2 agents) on this machine's Docker (README "Cluster")
cluster-up: cluster-images
	deploy/cluster/up.sh

## cluster-check: create a user, connect through both agents, kill a NATS container, connect again (deploy/cluster/check.sh)
cluster-check:
	deploy/cluster/check.sh

## cluster-down: stop and remove the cluster's containers and network (its keys and data stay in bin/cluster)
cluster-down:
	deploy/cluster/down.sh

## agent-binaries: vpn-agent and vpn-xray for every architecture the gateway serves new hosts (bin/vpn-agent-linux-amd64, bin/xray-linux-arm64, ...), next to vpnd: GET /install/agent.sh installs them (--agent-binaries)
AGENT_ARCHES ?= amd64 arm64
agent-binaries:
	@mkdir -p $(BIN)
	@for arch in $(AGENT_ARCHES); do \
		echo "linux/$$arch"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vpn-agent-linux-$$arch ./services/runtime-agent/cmd/vpn-agent || exit 1; \
		(cd services/runtime-agent && CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/xray-linux-$$arch ./cmd/vpn-xray) || exit 1; \
	done

## ca-bundle: the build host's CA certificates into bin/, for the images
ca-bundle:
	@mkdir -p $(BIN)
	@test -s $(CA_BUNDLE) || { echo "no CA bundle at $(CA_BUNDLE): install ca-certificates or set CA_BUNDLE"; exit 1; }
	cp $(CA_BUNDLE) $(BIN)/ca-certificates.crt

## tools: what tests need besides Go and Docker, installed with apt-get when missing: systemd-analyze and systemd-sysusers (package systemd; the deploy/systemd and agent install tests), shellcheck (the served install script), docker-compose where a Docker engine answers (the compose test); .ci/run runs it
tools:
	@command -v systemd-analyze >/dev/null 2>&1 && command -v systemd-sysusers >/dev/null 2>&1 || { \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd; }
	@command -v shellcheck >/dev/null 2>&1 || { \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck; }
	@if docker info >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose; fi

## test: all modules, with the race detector (tests use bin/xray and bin/xray-stock)
test: xray xray-stock
	VPN_XRAY_BIN=$(BIN)/xray VPN_XRAY_STOCK_BIN=$(BIN)/xray-stock $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

## bench: Go benchmarks of every module (results go to docs/BENCHMARKS.md by hand, with date and machine)
bench: xray xray-stock
	VPN_XRAY_BIN=$(BIN)/xray VPN_XRAY_STOCK_BIN=$(BIN)/xray-stock $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m $(PKGS)

## lint: go vet, gofmt and staticcheck over every module; fails on any finding
lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for d in $(MODULES); do \
		echo "staticcheck $$d"; \
		(cd $$d && $(GO) run $(STATICCHECK) ./...) || exit 1; \
	done

fmt:
	gofmt -w $(MODULES)

clean:
	rm -rf $(BIN)
