#!/usr/bin/env bash
# Refresh the Swagger UI and ReDoc files /docs and /redoc serve (app/docs/static/), from the npm
# registry at pinned versions, with their licence files. Bump a version here, run it, commit.
# Usage: bash scripts/vendor_docs_assets.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SWAGGER_UI_VERSION="5.35.0"  # swagger-ui-dist, Apache-2.0 (LICENSE + NOTICE kept)
REDOC_VERSION="2.5.4"        # redoc, MIT; 2.x: the <redoc spec-url> page FastAPI renders

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" "redoc@$REDOC_VERSION" >/dev/null)
mkdir -p "$scratch/swagger" "$scratch/redoc"
tar xzf "$scratch/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz" -C "$scratch/swagger"
tar xzf "$scratch/redoc-$REDOC_VERSION.tgz" -C "$scratch/redoc"

target=app/docs/static
rm -rf "$target/swagger-ui" "$target/redoc"
mkdir -p "$target/swagger-ui" "$target/redoc"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
  favicon-32x32.png LICENSE NOTICE; do
  cp "$scratch/swagger/package/$file" "$target/swagger-ui/"
done
# The standalone bundle inlines its web worker; the worker's licence notice is kept beside it.
cp "$scratch/redoc/package/LICENSE" "$target/redoc/"
cp "$scratch/redoc/package/bundles/redoc.standalone.js" \
  "$scratch/redoc/package/bundles/redoc.standalone.js.LICENSE.txt" \
  "$scratch/redoc/package/bundles/"*.worker.js.LICENSE.txt "$target/redoc/"
# A bundle ends with a sourceMappingURL comment naming a .map not shipped: drop it, so a
# browser's developer tools do not ask for a file that answers 404.
sed -i -e '/^\/\/# sourceMappingURL=/d' "$target/swagger-ui/swagger-ui-bundle.js" \
  "$target/redoc/redoc.standalone.js"
sed -i -e 's#/\*\# sourceMappingURL=[^*]*\*/##' "$target/swagger-ui/swagger-ui.css"
# ReDoc's footer fetches Redocly's logo from their CDN: an outside request from a page that
# must work offline (and tell no third party who reads our docs). An empty inline image instead.
sed -i -e 's#src:"https://cdn.redoc.ly/redoc/logo-mini.svg"#src:"data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E"#' \
  "$target/redoc/redoc.standalone.js"
if grep -q 'https://cdn\.' "$target/redoc/redoc.standalone.js"; then
  echo "redoc.standalone.js still names a CDN: look before committing" >&2
  exit 1
fi
printf 'swagger-ui-dist %s\nredoc %s\n' "$SWAGGER_UI_VERSION" "$REDOC_VERSION" >"$target/VERSIONS"
echo "vendored swagger-ui-dist $SWAGGER_UI_VERSION and redoc $REDOC_VERSION into $target"
