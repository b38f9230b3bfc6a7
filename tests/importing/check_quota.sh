#!/usr/bin/env bash
# The decision of hit-aiot-ops' tools/check_quota.sh (the hook its nodes source), as a script the tests run
# against the shim: the same curl call and the same JSON fields (.status, .balance). Prints "allow ..." or
# "deny ..." and exits 0 or 1. Without `set -e`, unlike the old file (seed-hit-aiot-ops.md W9).
# Usage: check_quota.sh LINUX_USER   (CONTROLLER_URL, GPUOPS_CURL_TIMEOUT, HOME as the old hook reads them)
user=$1
url="${CONTROLLER_URL:-http://controller:8000}/api/users/${user}/balance"
if resp=$(curl -fsS --max-time "${GPUOPS_CURL_TIMEOUT:-2}" "$url" 2>/dev/null); then
    status=$(printf '%s' "$resp" | jq -r '.status')
    balance=$(printf '%s' "$resp" | jq -r '.balance')
    case "$status" in
        limited|blocked) echo "deny $status $balance"; exit 1 ;;
        *) echo "allow $status $balance"; exit 0 ;;
    esac
fi
# the controller did not answer 2xx: the old hook blocks only when the flag file exists
if [ -f "$HOME/.gpu_blocked" ]; then
    echo "deny flag-file"
    exit 1
fi
echo "allow unreachable"
