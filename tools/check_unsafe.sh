#!/usr/bin/env bash
# tools/check_unsafe.sh: `unsafe` lives in the kernels crate only. The workspace lints refuse
# `unsafe_code` everywhere; this check fails when `unsafe`, or an allowance for it, appears anywhere
# but in the kernels crate, in tests, or in the two functions that may use it (the corpus cache's
# mmap, the allocator setting), and when one of those two lacks its `// SAFETY:` line.
set -euo pipefail
cd "$(dirname "$0")/.."
allowed=("data/src/corpus/cache.rs map_file" "distill/src/main.rs tune_allocator")
status=0

# The function a line belongs to: the last `fn NAME` at or above it.
fn_of() { head -n "$2" "$1" | grep -o -E '\bfn [a-z_0-9]+' | tail -n 1 | cut -d' ' -f2; }

# Rust sources outside the kernels crate and outside tests (tests/ folders, #[cfg(test)] modules);
# fuzz/ is a workspace of its own that builds no library code.
for f in $(git ls-files '*.rs' | grep -v -E '^(kernels/|fuzz/|[^/]+/tests/)'); do
    while IFS=: read -r line text; do
        fn=$(fn_of "$f" "$line")
        ok=0
        for a in "${allowed[@]}"; do
            [[ "$a" == "$f $fn" ]] && ok=1
        done
        if [[ $ok -eq 0 ]]; then
            echo "$f:$line: unsafe outside the kernels crate:$text"
            status=1
        fi
    done < <(awk '/#\[cfg\(test\)\]/ { exit } /^[[:space:]]*\/\// { next }
                  /(^|[^a-z_])unsafe([^a-z_]|$)/ { print NR ":" $0 }' "$f")
done

for a in "${allowed[@]}"; do
    set -- $a
    start=$(grep -n -E "\bfn $2\b" "$1" | head -n 1 | cut -d: -f1)
    if [[ -z "$start" ]] || ! tail -n +"$start" "$1" | head -n 20 | grep -q '// SAFETY:'; then
        echo "$1: fn $2 has no // SAFETY: line"
        status=1
    fi
done
if [[ $status -eq 0 ]]; then
    echo "UNSAFE CHECK OK: unsafe only in kernels/, in tests, and in ${allowed[*]}"
fi
exit $status
