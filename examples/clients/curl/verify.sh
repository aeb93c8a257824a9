#!/usr/bin/env bash
# keyward with nothing but curl (and jq to read the answers): the Connect protocol's
# JSON encoding over HTTP/1.1. Every RPC is
#   POST <KEYWARD_URL>/<package.Service>/<Method>   content-type: application/json
# with the request message as a JSON object (proto3 JSON: lowerCamelCase field names,
# enums as their names); the answer is the response message as JSON (HTTP 200), or an
# error {"code": "unauthenticated", "message": "..."} with a matching HTTP status.
#
#   KEYWARD_ADMIN_TOKEN=... bash examples/clients/curl/verify.sh [--show-key]
#
# Environment: KEYWARD_URL (default http://127.0.0.1:50051), KEYWARD_ADMIN_TOKEN (required).
set -euo pipefail

url="${KEYWARD_URL:-http://127.0.0.1:50051}"
: "${KEYWARD_ADMIN_TOKEN:?set KEYWARD_ADMIN_TOKEN (Issue, ListKeys and SetSetting are management calls)}"
show_key=false
[ "${1:-}" = "--show-key" ] && show_key=true

# rpc SERVICE/METHOD JSON [CREDENTIAL]: prints the response JSON, or reports the error and exits 1.
rpc() {
  local auth=()
  # Management calls carry the admin token (or a keyward:admin key) as a bearer credential.
  [ -n "${3:-}" ] && auth=(-H "authorization: Bearer $3")
  local out status
  out="$(mktemp)"
  # connect-protocol-version marks the request as Connect (keyward does not require it).
  status="$(curl -sS --max-time 10 -o "$out" -w '%{http_code}' -X POST "$url/$1" \
    -H 'content-type: application/json' -H 'connect-protocol-version: 1' "${auth[@]}" \
    --data-binary "$2")" || { rm -f "$out"; echo "error: $1: cannot reach $url" >&2; exit 1; }
  if [ "$status" != 200 ]; then
    echo "error: $1: HTTP $status $(jq -r '"\(.code): \(.message)"' "$out" 2>/dev/null || cat "$out")" >&2
    rm -f "$out"
    exit 1
  fi
  cat "$out"
  rm -f "$out"
}

# Issue a key. The plaintext key is in the response this once; keyward stores only its hash.
issued="$(rpc keyward.v1.KeyService/Issue \
  '{"tenantId":"acme","name":"curl example","scopes":["invoices:read"],"rateLimit":1000}' \
  "$KEYWARD_ADMIN_TOKEN")"
key="$(jq -r .key <<<"$issued")"
jq -r '"issued \(.apiKey.id) (prefix \(.apiKey.prefix)) for tenant \(.apiKey.tenantId)"' <<<"$issued"
if $show_key; then echo "key: $key"; fi

# Verify it: no credential needed. An invalid key is a normal answer (valid=false and a code),
# not an error. proto3 JSON leaves out false booleans, hence the `// false`.
for scope in invoices:read invoices:write; do
  rpc keyward.v1.KeyService/Verify "$(jq -nc --arg key "$key" --arg scope "$scope" '{key: $key, requiredScopes: [$scope]}')" |
    jq -r --arg scope "$scope" '"verify \($scope): valid=\(.valid // false) code=\(.code)"'
done

# List the tenant's keys (metadata only, never secrets), newest first.
rpc keyward.v1.KeyService/ListKeys '{"tenantId":"acme","pageSize":10}' "$KEYWARD_ADMIN_TOKEN" |
  jq -r '"listKeys: \(.apiKeys | length) key(s) in tenant acme, newest \(.apiKeys[0].id)"'

# Store a typed, public setting; the value is validated against its type on write.
rpc keyward.v1.SettingsService/SetSetting \
  '{"setting":{"tenantId":"acme","key":"max_upload_mb","value":"25","valueType":"SETTING_TYPE_INT","isPublic":true}}' \
  "$KEYWARD_ADMIN_TOKEN" |
  jq -r '"setSetting: \(.setting.key)=\(.setting.value) (\(.setting.valueType))"'
