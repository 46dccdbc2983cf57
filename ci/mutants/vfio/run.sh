#!/bin/bash
# Mutation check of the VFIO suite: each patch here (-p1 against
# linux-source-6.1, drivers/vfio/vfio_iommu_type1.c) must be caught.
#
#   ci/mutants/vfio/run.sh [PATCH...]      (default: every *.patch here)
#
# For each patch the script builds the patched vfio_iommu_type1.ko out of
# tree against Debian's linux-headers of the default kernel (the same 6.1.192
# source as the packaged binary: vermagic and modversions match; the module is
# unsigned, so the guest kernel is tainted E from boot, before the baseline),
# puts it into a symlink copy of the default module tree and runs
#   kvmconf run --features vfio --kernel <Debian vmlinuz> --modules <copy>
# Expectations:
#   fix-stale-bits.patch  exit 1, a divergence with matches_profile "fixed";
#                         then exit 0 with --profile vfio=fixed
#   any other patch       exit 1 with a vfio divergence (a surviving mutant
#                         is a failure of this script)
# Needs: linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz), linux-headers of
# the Debian kernel kvmconf fetches, gcc, make.  Exit 0 when every mutant is
# caught, 1 when one survives, 2 when the harness broke.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
KVMCONF=${KVMCONF:-$REPO/.venv/bin/kvmconf}
PY=${PY:-$REPO/.venv/bin/python}
SRC_TAR=${LINUX_SOURCE_TAR:-/usr/src/linux-source-6.1.tar.xz}
SEED=${SEED:-1}
WORK=$(mktemp -d /tmp/kvmconf-vfio-mutants.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

die() { echo "vfio mutants: $*" >&2; exit 2; }
[ -r "$SRC_TAR" ] || die "$SRC_TAR missing (apt-get install linux-source-6.1)"

read -r VMLINUZ MODDIR KVER < <(cd "$REPO" && "$PY" -c '
from harness.kernel import debian
k = debian.fetch()
print(k.bzimage, k.modules_dir, k.version)') || die "cannot fetch the Debian kernel"
BUILD=/lib/modules/$KVER/build
[ -d "$BUILD" ] || die "$BUILD missing (apt-get install linux-headers-$KVER)"

tar -xJf "$SRC_TAR" -C "$WORK" --wildcards '*/drivers/vfio/vfio_iommu_type1.c' '*/drivers/vfio/vfio.h' \
    || die "cannot extract vfio_iommu_type1.c from $SRC_TAR"
PRISTINE=$(find "$WORK" -path '*/drivers/vfio/vfio_iommu_type1.c' | head -1)

build_module() {  # patch -> path of the built .ko
    local patch=$1 tree=$WORK/build-$(basename "$1" .patch)
    mkdir -p "$tree/drivers/vfio"
    cp "$PRISTINE" "$(dirname "$PRISTINE")/vfio.h" "$tree/drivers/vfio/"
    (cd "$tree" && patch -p1 -s < "$patch") || die "$(basename "$patch") does not apply"
    printf 'obj-m := vfio_iommu_type1.o\n' > "$tree/drivers/vfio/Kbuild"
    make -s -C "$BUILD" M="$tree/drivers/vfio" modules >"$tree/build.log" 2>&1 \
        || { tail -5 "$tree/build.log" >&2; die "module build failed for $(basename "$patch")"; }
    echo "$tree/drivers/vfio/vfio_iommu_type1.ko"
}

module_root() {  # .ko -> a modules dir with it in place of the packaged one
    local ko=$1 root=$WORK/mods-$RANDOM
    mkdir -p "$root"
    cp -rs "$MODDIR" "$root/$KVER"
    local target
    target=$(find "$root/$KVER/kernel" -name 'vfio_iommu_type1.ko*' | head -1)
    [ -n "$target" ] || die "no vfio_iommu_type1.ko in $MODDIR"
    rm -f "$target"
    cp "$ko" "$(dirname "$target")/vfio_iommu_type1.ko"
    echo "$root/$KVER"
}

run_vfio() {  # modules dir, output dir, extra args -> exit code
    set +e
    "$KVMCONF" run --features vfio --kernel "$VMLINUZ" --modules "$1" --output "$2" \
        --seed "$SEED" --label "mutant $(basename "$2")" "${@:3}" >"$2.log" 2>&1
    local rc=$?
    set -e
    echo $rc
}

divergence() {  # run.json -> "case|field|matches_profile" of the first vfio divergence
    "$PY" - "$1" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
for c in run["cases"]:
    if c["feature"] == "vfio" and c["status"] == "FAIL":
        d = c.get("divergence") or {}
        print(f"{c['id']}|{d.get('action', '-')}|{d.get('field', c['reason'][:80])}|"
              f"{d.get('expected', '-')}|{d.get('observed', '-')}|{d.get('matches_profile')}")
        break
EOF
}

patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=("$HERE"/*.patch)
survived=0
printf '%-28s %-6s %s\n' mutant rc "first divergence (case | action | field | expected | observed | matches_profile)"
for p in "${patches[@]}"; do
    p=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
    name=$(basename "$p" .patch)
    ko=$(build_module "$p")
    mods=$(module_root "$ko")
    rc=$(run_vfio "$mods" "$WORK/$name")
    [ "$rc" = 2 ] && { tail -5 "$WORK/$name.log" >&2; die "$name: kvmconf run broke (exit 2)"; }
    div=$(divergence "$WORK/$name/run.json")
    printf '%-28s %-6s %s\n' "$name" "$rc" "${div:-none}"
    if [ "$rc" != 1 ] || [ -z "$div" ]; then
        echo "vfio mutants: $name SURVIVED" >&2; survived=1; continue
    fi
    if [ "$name" = fix-stale-bits ]; then
        [ "${div##*|}" = fixed ] || { echo "vfio mutants: fix-stale-bits did not match profile fixed" >&2; survived=1; }
        rc=$(run_vfio "$mods" "$WORK/$name-fixed" --profile vfio=fixed)
        printf '%-28s %-6s %s\n' "$name (profile fixed)" "$rc" "$(divergence "$WORK/$name-fixed/run.json")"
        [ "$rc" = 0 ] || { echo "vfio mutants: fix-stale-bits fails profile fixed too" >&2; survived=1; }
    fi
done
exit $survived
