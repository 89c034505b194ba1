#!/usr/bin/env bash
# The demo's drift loop, timed (issue 27): runs ./scripts/demo.sh as a user does, polls the fleet's drift alerts
# every 5 s, approves v2's draft rollout as soon as it appears, and after 11 minutes prints every change of every
# alert (version, feature, kind, segment → state and the devices it names) with its second since the agents started.
# Needs python3 for the summary. Ports: 5180 (HTTP) and 18931 (MQTT), so a running demo is left alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${1:-$(mktemp -d /tmp/edgefleet-drift-loop.XXXXXX)}"
mkdir -p "$out"
cd "$root"
export EDGEFLEET_HTTP_PORT=5180 EDGEFLEET_MQTT_PORT=18931
./scripts/demo.sh > "$out/demo.log" 2>&1 &
demo=$!
# TERM, not INT: a script's background job ignores SIGINT, and the demo stops its fleet and agents on either.
trap 'kill -TERM $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
cli() { dotnet fleet-service/EdgeFleet.Cli/bin/Release/net10.0/edgefleet.dll "$@"; }
for _ in $(seq 1 600); do
  grep -q "Press Ctrl-C" "$out/demo.log" 2>/dev/null && [ -f .demo/fleet/admin.key ] && break
  kill -0 $demo 2>/dev/null || { cat "$out/demo.log" >&2; exit 1; }
  sleep 1
done
export EDGEFLEET_API_KEY="$(cat .demo/fleet/admin.key)" EDGEFLEET_URL="http://127.0.0.1:5180"
start=$(date +%s)
approved=""
while [ $(( $(date +%s) - start )) -lt 660 ]; do
  t=$(( $(date +%s) - start ))
  echo "$t $(cli drift alerts --all --json 2>/dev/null || echo '[]')" >> "$out/alerts.log"
  if [ -z "$approved" ]; then
    draft="$(cli rollout list 2>/dev/null | awk '/draft/ {print $1}' | head -1)"
    if [ -n "$draft" ] && cli rollout approve --id "$draft" --reason "measured" > /dev/null 2>&1; then
      approved=$t
      echo "$t approved $draft"
    fi
  fi
  sleep 5
done
python3 - "$out/alerts.log" <<'PY'
import json, sys
last = {}
for line in open(sys.argv[1]):
    t, _, text = line.partition(' ')
    try:
        alerts = json.loads(text)
    except ValueError:
        continue
    for a in alerts:
        key = (a['version'], a['feature'], a['kind'], a['segment'])
        state = (a['state'], tuple(d['deviceId'] for d in a.get('devices', [])))
        if last.get(key) != state:
            print(t, 'v' + key[0], key[1], key[2], key[3], state[0], ','.join(state[1]) or '-', a.get('resolution') or '')
            last[key] = state
PY
echo "logs in $out"
