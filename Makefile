# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Only Python 3.11, git and make are assumed; uv is bootstrapped into a cache outside the repo.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
CACHE_DIR ?= $(HOME)/.cache/preview-portal
UV := $(CACHE_DIR)/uv-$(UV_VERSION)/bin/uv
export UV_CACHE_DIR ?= $(HOME)/.cache/uv
export UV_PYTHON_DOWNLOADS := never
# Some machines set PYTHONDONTWRITEBYTECODE=1: every process then compiles each module it imports
# from source again (~0.3 s of CPU per Django process; the tests start a few thousand).
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-quick lint venv services k8s-cluster k8s-real-node kustomize oidc-provider clean

$(UV):
	$(PYTHON) -m venv $(CACHE_DIR)/uv-$(UV_VERSION)
	$(CACHE_DIR)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

venv: $(UV)
	$(UV) sync --frozen --quiet

# Embedded defaults, overridable by any PORTAL_* variable of DESIGN.md.
run: venv
	PORTAL_DEBUG=$${PORTAL_DEBUG:-1} $(PY) manage.py run_portal

lint: venv
	$(VENV)/bin/ruff check .
	PORTAL_DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

# What the tests run for real, from Debian's packages (root on CI; skipped when present):
# Chromium for the browser test, MariaDB for the MySQL pool (each test run starts its own),
# etcd for the test Kubernetes cluster, Redis for the production-parity run's broker, bubblewrap
# for the sandbox branch code runs in.
DEBIAN_PACKAGES := /usr/bin/chromium:chromium /usr/sbin/mariadbd:mariadb-server \
	/usr/bin/etcd:etcd-server /usr/bin/redis-server:redis-server /usr/bin/bwrap:bubblewrap
services:
	@missing=""; for entry in $(DEBIAN_PACKAGES); do \
	  [ -x "$${entry%%:*}" ] || missing="$$missing $${entry#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The Kubernetes control plane and kwok, built from the Go module proxy once per version and
# cached under $(CACHE_DIR) (cold: 10-15 minutes on 2 cores); the tests start the cluster.
k8s-cluster:
	$(PYTHON) scripts/k8s-cluster build

# The real single node for tests/test_real_node.py (containers really run): kubelet, kube-proxy,
# containerd and CoreDNS from the Go module proxy, runc, the CNI plugins, an image registry and the
# image tools from Debian; images FROM a Debian base of our own (mmdebstrap). All cached under
# $(CACHE_DIR) (cold: about 15 minutes on 2 cores after k8s-cluster; warm: under a second).
REAL_NODE_PACKAGES := /usr/sbin/runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
	/usr/bin/docker-registry:docker-registry /usr/bin/buildah:buildah \
	/usr/bin/mmdebstrap:mmdebstrap /usr/sbin/iptables:iptables /usr/sbin/nft:nftables
k8s-real-node: services k8s-cluster
	@missing=""; for entry in $(REAL_NODE_PACKAGES); do \
	  [ -x "$${entry%%:*}" ] || missing="$$missing $${entry#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(PYTHON) scripts/k8s-cluster build --real

# kustomize renders deploy/ for tests/test_deploy_manifests.py; built from the Go module proxy
# (~30 s cold) once per version, cached under $(CACHE_DIR).
KUSTOMIZE_VERSION := v5.5.0
export KUSTOMIZE := $(CACHE_DIR)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
$(KUSTOMIZE):
	GOBIN=$(dir $(KUSTOMIZE)) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
kustomize: $(KUSTOMIZE)

# The OpenID provider tests/test_oidc.py signs people in through (npm's oidc-provider, locked in
# tests/oidc/), installed with the machine's node and npm into $(CACHE_DIR) (~10 s cold).
oidc-provider:
	CACHE_DIR=$(CACHE_DIR) scripts/oidc-provider-install

# Then the pipeline, lease-concurrency, queue and kill -9 tests again as production runs the portal:
# DATABASE_URL on a throwaway MariaDB, PORTAL_BROKER=redis on a throwaway redis-server.
# pytest-xdist: most tests wait on servers and subprocesses, not the CPU, so four workers share
# two cores (each starts its own MariaDB when its tests need one, and the first to need it the
# run's test cluster; the real node's tests keep to one worker). Every run ends with its 15
# slowest tests.
PYTEST_WORKERS ?= 4
test: venv services k8s-cluster k8s-real-node kustomize oidc-provider lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)
	$(PY) scripts/parity-tests -n $(PYTEST_WORKERS) --dist loadgroup

# A first answer in a few minutes: everything but the browser, real-node and slow tests (see
# tests/conftest.py), with whatever tools the machine has. CI runs `make test`.
test-quick: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup \
	  -m "not browser and not real_node and not slow" $(PYTEST_ARGS)

clean:
	rm -rf var .pytest_cache .hypothesis
