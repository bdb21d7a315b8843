#!/usr/bin/env bash
# Packaging smoke test: `python -m build` makes an sdist and a wheel (the wheel built from the
# sdist, so a file missing from the sdist fails here); each installs into its own fresh virtual
# environment and must run `symconv --version` and `symconv select ...` from outside the source
# tree.
#
# The environments see the base interpreter's site-packages (--system-site-packages): pip still
# resolves every dependency the package declares (under constraints.txt) and installs what is
# missing, but reuses the torch already installed instead of unpacking a 700 MB wheel twice
# (that took minutes on a 2-core machine). symconv itself always goes into the new environment,
# and the script checks that the copy imported is that one.
# SMOKE_ISOLATED=1 makes the environments fully isolated (every dependency installed afresh).
#
# Usage: tools/smoke_package.sh            (run by .ci/run; needs the `build` package: .[dev])
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/symconv-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

want_version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')

echo "smoke: building sdist and wheel"
t0=$SECONDS
python3 -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
sdist=$(ls "$WORK"/dist/symconv-*.tar.gz)
wheel=$(ls "$WORK"/dist/symconv-*.whl)
echo "smoke: built $(basename "$sdist") and $(basename "$wheel") ($((SECONDS - t0)) s)"

# The wheel must carry the type marker, the proof catalogue (symconv prove imports it) and the
# console script's entry module, which the script must name.
python3 - "$wheel" <<'PY'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = set(wheel.namelist())
for need in ("symconv/py.typed", "symconv/_fastpath.cpp", "symconv/cli/__init__.py",
             "proofs/__init__.py",
             "symconv_launcher.py"):
    assert need in names, f"{need} is missing from the wheel"
entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
assert "symconv = symconv_launcher:main" in wheel.read(entry_points).decode(), \
    "the console script does not start at symconv_launcher:main"
PY

check() {  # check <label> <artifact>
    local label=$1 artifact=$2 venv="$WORK/venv-$1"
    local t0=$SECONDS
    if [ "${SMOKE_ISOLATED:-0}" = 1 ]; then
        python3 -m venv "$venv"
    else
        python3 -m venv --system-site-packages "$venv"
    fi
    local opts=(-q --disable-pip-version-check -c "$ROOT/constraints.txt")
    "$venv/bin/python" -m pip install "${opts[@]}" --force-reinstall --no-deps "$artifact" \
        > "$WORK/pip-$label.log" 2>&1 || { cat "$WORK/pip-$label.log"; exit 1; }
    # then its dependencies, resolved from the package's own metadata
    "$venv/bin/python" -m pip install "${opts[@]}" "$artifact" >> "$WORK/pip-$label.log" 2>&1 \
        || { cat "$WORK/pip-$label.log"; exit 1; }
    "$venv/bin/python" -m pip check > "$WORK/check-$label.log" 2>&1 \
        || { cat "$WORK/check-$label.log"; echo "smoke[$label]: pip check failed"; exit 1; }
    (
        cd "$WORK"  # not the source tree: the installed copy must be the one imported
        where=$("$venv/bin/python" -c 'import symconv; print(symconv.__file__)')
        case $where in "$venv"/*) ;; *) echo "smoke[$label]: imported symconv from $where"; exit 1;; esac
        got=$("$venv/bin/symconv" --version)
        [ "$got" = "symconv $want_version" ] || { echo "smoke[$label]: --version printed '$got'"; exit 1; }
        out=$("$venv/bin/symconv" select --input 8,3,224,224 --weight 64,3,7,7 --stride 2 \
              --padding 3 --env cpu)
        echo "$out" | grep -qx 'backend        Mkldnn' || { echo "$out"; echo "smoke[$label]: wrong backend"; exit 1; }
        echo "$out" | grep -qx 'output shape   \[8, 64, 112, 112\]' || { echo "$out"; echo "smoke[$label]: wrong shape"; exit 1; }
        set +e
        "$venv/bin/symconv" select --input 1,4,8,8 --weight 4,4,3,3 --groups 3 --env cpu > "$WORK/err.txt" 2>&1
        rc=$?
        set -e
        [ $rc -eq 1 ] && grep -q 'expected weight to be divisible by 3' "$WORK/err.txt" \
            || { cat "$WORK/err.txt"; echo "smoke[$label]: torch's error not reported (exit $rc)"; exit 1; }
    )
    echo "smoke[$label]: ok ($(basename "$artifact"): symconv --version, select, an error case;" \
         "$((SECONDS - t0)) s)"
}

# the two environments are independent: check them side by side (2 cores on CI)
check wheel "$wheel" & wheel_pid=$!
check sdist "$sdist" & sdist_pid=$!
status=0
wait "$wheel_pid" || status=1
wait "$sdist_pid" || status=1
[ $status -eq 0 ] || { echo "smoke: FAILED"; exit 1; }
echo "smoke: passed"
