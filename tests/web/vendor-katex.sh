#!/bin/sh
# Copy KaTeX (installed from the npm registry by `npm ci --prefix tests/web`) into the package's
# static folder: the script, its stylesheet, the woff2 fonts and the licence. Run after a bump of
# katex in package.json; the copied files are committed, so installing cove needs no npm.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dist="$here/node_modules/katex/dist"
static="$here/../../src/cove/web/static"
[ -f "$dist/katex.min.js" ] || { echo "run: npm ci --prefix tests/web" >&2; exit 1; }
mkdir -p "$static/fonts"
cp "$dist/katex.min.js" "$static/katex.min.js"
cp "$dist/katex.min.css" "$static/katex.min.css"
cp "$here/node_modules/katex/LICENSE" "$static/KATEX-LICENSE.txt"
rm -f "$static"/fonts/KaTeX_*
cp "$dist"/fonts/KaTeX_*.woff2 "$static/fonts/"
echo "KaTeX $(node -p "require('$here/node_modules/katex/package.json').version") vendored into $static"
