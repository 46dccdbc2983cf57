# The two user-facing targets: `make run` and `make test`. Both install what
# they need (Debian packages, a venv, the package) and are fast when it is
# already there.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
KVMCONF := $(VENV)/bin/kvmconf
STAMP := $(VENV)/.installed
# Debian packages the harness needs on the host.
DEBS := qemu-system-x86 qemu-utils busybox-static cpio dropbear-bin openssh-sftp-server kmod gcc libc6-dev \
        python3-venv python3-dev xz-utils git bc bison flex libelf-dev libssl-dev make ccache rsync \
        libipt-dev chromium chromium-driver postgresql lava-common

.PHONY: run test deps venv

run: venv
	$(KVMCONF) run $(RUN_ARGS)

# the slowest tests are listed before pytest's closing line: the budget's evidence
test: venv
	$(PY) -m pytest --durations=25 $(TEST_ARGS)

deps:
	@bash ci/install-deps.sh $(DEBS)

venv: deps $(STAMP) $(VENV)/.pipeline-tools

$(STAMP): pyproject.toml avocado-plugin/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . ./avocado-plugin
	touch $(STAMP)

# lava-test-case and actionlint for tests/test_pipelines.py (a tool that cannot be had is skipped there)
$(VENV)/.pipeline-tools: ci/pipeline-tools.sh $(STAMP)
	bash ci/pipeline-tools.sh $(VENV) && touch $@ || echo "ci/pipeline-tools.sh: incomplete, tests/test_pipelines.py skips what is missing" >&2
