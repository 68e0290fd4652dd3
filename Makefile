# runvirt — build, install and test.
#
#   make            build bin/runvirt, the static agent and the guest image
#   make kernel     build (or take from the cache) the minimal guest kernel
#   make install    install runvirt, the guest image and a default config
#   make test       unit tests, then the integration tests (root, QEMU)
#   make deps       install the Debian packages the build and tests need

PREFIX     ?= /usr/local
DATADIR    ?= /usr/share/runvirt
SYSCONFDIR ?= /etc/runvirt
GO         ?= $(shell command -v go || echo /usr/local/go/bin/go)
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GOFLAGS_LD := -ldflags "-s -w -X main.version=$(VERSION)"
GUEST_DIR  := build/guest
KERNEL_DIR := build/kernel
# The minimal kernel is built once per machine and kept here, outside the
# checkout, one copy per set of inputs (guest-image/build-kernel.sh --cache).
KERNEL_CACHE ?= /var/cache/runvirt/kernel

# The guest image's kernel: "minimal" (the default) is runvirt's own, built
# from Debian's linux-source with guest-image/kernel.config (~10 min the
# first time on a machine, then taken from $(KERNEL_CACHE)); "distro" is the
# newest installed distro kernel with its modules (slower to boot: ~2x).
GUEST_KERNEL ?= minimal
# Kernel release of the distro kernel: the newest installed one.
KERNEL_RELEASE ?= $(shell ls -1 /lib/modules 2>/dev/null | sort -V | tail -n 1)

DEB_PACKAGES := qemu-system-x86 qemu-utils linux-image-amd64 busybox-static cpio kmod runc iproute2 containerd docker.io podman containernetworking-plugins
# The minimal kernel's source and build tools (guest-image/build-kernel.sh).
DEB_PACKAGES += linux-source-6.1 build-essential bc bison flex libelf-dev xz-utils
# Debian's nft, run inside a guest by integration/guestnet_test.go.
DEB_PACKAGES += nftables

.PHONY: all runvirt agent guest kernel clean-cache install uninstall test unit fuzz integration deps demo conformance clean bench netbench

all: runvirt guest

runvirt:
	$(GO) build -trimpath $(GOFLAGS_LD) -o bin/runvirt ./cmd/runvirt

agent:
	CGO_ENABLED=0 $(GO) build -trimpath $(GOFLAGS_LD) -o bin/runvirt-agent ./cmd/runvirt-agent

guest: agent
	@k='$(GUEST_KERNEL)'; \
	case "$$k" in \
	minimal) set -x; guest-image/build-kernel.sh --out $(KERNEL_DIR) --cache $(KERNEL_CACHE) && \
		guest-image/build.sh --agent bin/runvirt-agent --agent-version $(VERSION) --out $(GUEST_DIR) --kernel-dir $(KERNEL_DIR) ;; \
	distro) set -x; guest-image/build.sh --agent bin/runvirt-agent --agent-version $(VERSION) --out $(GUEST_DIR) $(if $(KERNEL_RELEASE),--kernel-release $(KERNEL_RELEASE)) ;; \
	*) echo "GUEST_KERNEL=$$k: want minimal or distro" >&2; exit 2 ;; \
	esac

# The minimal guest kernel, built from Debian's linux-source with
# guest-image/kernel.config (guest-image/build-kernel.sh installs the source
# and the build tools with apt-get when missing). A copy from $(KERNEL_CACHE)
# when this machine built it before; a clean build takes ~10 min on 2 cores
# and ~1.7 GB there (`make clean-cache` removes it).
kernel:
	guest-image/build-kernel.sh --out $(KERNEL_DIR) --cache $(KERNEL_CACHE)

clean-cache:
	rm -rf $(KERNEL_CACHE)

install: all
	install -D -m 0755 bin/runvirt $(DESTDIR)$(PREFIX)/bin/runvirt
	install -D -m 0644 $(GUEST_DIR)/vmlinuz $(DESTDIR)$(DATADIR)/vmlinuz
	install -D -m 0644 $(GUEST_DIR)/vmlinux $(DESTDIR)$(DATADIR)/vmlinux
	install -D -m 0644 $(GUEST_DIR)/initrd.img $(DESTDIR)$(DATADIR)/initrd.img
	install -D -m 0644 $(GUEST_DIR)/kernel.release $(DESTDIR)$(DATADIR)/kernel.release
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/config.toml ]; then \
		echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/config.toml"; \
	else \
		install -D -m 0644 config.toml.example $(DESTDIR)$(SYSCONFDIR)/config.toml; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/runvirt
	rm -rf $(DESTDIR)$(DATADIR)
	@echo "left $(DESTDIR)$(SYSCONFDIR)/config.toml in place"

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES)
	$(GO) mod download

# Every skipped unit test is listed with its reason (scripts/gotest.sh).
unit:
	$(GO) vet ./...
	scripts/gotest.sh $(GO) test -count=1 ./agent/... ./internal/... ./config/... ./hypervisor/... ./runtime/... ./cmd/... ./bench/...

# The integration tests boot real VMs with the binaries and guest image
# built above (no install needed).
integration: all
	$(GO) test -count=1 -timeout 40m -v ./integration/...

# Every fuzz target for a short while (FUZZTIME each); their corpora are
# committed under */testdata/fuzz and run as plain tests by `make unit`.
FUZZTIME ?= 10s
# Minimising a new input must not eat the run: the relay fuzzers run ~100
# inputs a second, and go test's default gives minimisation 60 s.
FUZZMINIMIZETIME ?= 2s
FUZZ_TARGETS := agent:FuzzReadFrame agent:FuzzClientResponses runtime:FuzzBundleSpec \
	runtime:FuzzGuestSession runtime:FuzzStdioRelay

fuzz:
	scripts/fuzz.sh $(GO) $(FUZZTIME) $(FUZZMINIMIZETIME) $(FUZZ_TARGETS)

test: unit fuzz integration

demo: all
	integration/demo.sh

# Benchmarks against runc and a bare QEMU boot (root; ~3 min here):
# writes BENCHMARKS.md. Extra flags: make bench BENCH_FLAGS='-reps 11'.
bench: all
	mkdir -p build/bench
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o build/bench/bench-init ./bench/cmd/bench-init
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o build/bench/bench-io ./bench/cmd/bench-io
	$(GO) build -o build/bench/runvirt-bench ./bench/cmd/runvirt-bench
	build/bench/runvirt-bench -runvirt bin/runvirt -guest $(GUEST_DIR) -out BENCHMARKS.md $(BENCH_FLAGS)

# Network throughput and latency, runvirt beside runc; writes
# BENCHMARKS-network.md.
netbench: all
	mkdir -p build/bench
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o build/bench/bench-init ./bench/cmd/bench-init
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o build/bench/bench-io ./bench/cmd/bench-io
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o build/bench/bench-net ./bench/cmd/bench-net
	$(GO) build -o build/bench/runvirt-bench ./bench/cmd/runvirt-bench
	build/bench/runvirt-bench -suite network -runvirt bin/runvirt -guest $(GUEST_DIR) -out BENCHMARKS-network.md $(BENCH_FLAGS)

conformance: all
	conformance/run.sh

clean:
	rm -rf bin build
