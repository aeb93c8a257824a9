# Source this file: puts a Node.js >= 22.17 first on PATH, installing Node 24
# from the npm registry into .tools/ when the system Node is older.
# (Native dependencies here are N-API prebuilds, so no header setup is needed.)
_kw_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_kw_node_ok() {
  command -v node >/dev/null 2>&1 && node -e '
    const [a, b] = process.versions.node.split(".").map(Number);
    process.exit(a > 22 || (a === 22 && b >= 17) ? 0 : 1)'
}
if ! _kw_node_ok; then
  if [ ! -x "$_kw_root/.tools/node_modules/.bin/node" ]; then
    echo "node-env: system Node $(node --version 2>/dev/null || echo none) is older than 22.17; installing node@24 into .tools/" >&2
    npm install --prefix "$_kw_root/.tools" --no-save --no-package-lock node@24 >/dev/null
  fi
  export PATH="$_kw_root/.tools/node_modules/.bin:$PATH"
fi
unset -f _kw_node_ok
unset _kw_root
