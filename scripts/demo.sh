#!/usr/bin/env bash
# The demo fleet on this machine: builds, trains the demo model, starts the fleet service (embedded MQTT
# broker + LiteDB store) and three agents with different simulated sensors. Ctrl-C stops all of it.
# Needs only the .NET SDK. Ports: EDGEFLEET_HTTP_PORT (5080), EDGEFLEET_MQTT_PORT (1883).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
state="$root/.demo"
http_port="${EDGEFLEET_HTTP_PORT:-5080}"
mqtt_port="${EDGEFLEET_MQTT_PORT:-1883}"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A plain HTTP GET on loopback without curl, which a fresh machine may lack.
http_get() {
  (exec 3<>"/dev/tcp/127.0.0.1/$http_port" && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3 && cat <&3) 2>/dev/null
}
if port_busy "$mqtt_port"; then
  if [ -n "${EDGEFLEET_MQTT_PORT:-}" ]; then echo "demo: port $mqtt_port is in use; choose another EDGEFLEET_MQTT_PORT" >&2; exit 1; fi
  mqtt_port=18830; while port_busy "$mqtt_port"; do mqtt_port=$((mqtt_port + 1)); done
  echo "demo: port 1883 is in use (another broker?); the embedded broker takes $mqtt_port"
fi
if port_busy "$http_port"; then echo "demo: port $http_port is in use; set EDGEFLEET_HTTP_PORT" >&2; exit 1; fi

echo "== building (Release)"
mkdir -p "$state"
for p in fleet-service/EdgeFleet.Fleet fleet-service/EdgeFleet.Cli edge-agent; do
  dotnet build "$p" -c Release -nologo -v:q >"$state/build.log" 2>&1 || { cat "$state/build.log" >&2; exit 1; }
done
bin() { echo "$root/$1/bin/Release/net10.0/$2"; }
fleet_dll="$(bin fleet-service/EdgeFleet.Fleet edgefleet-fleet.dll)"
cli_dll="$(bin fleet-service/EdgeFleet.Cli edgefleet.dll)"
agent_dll="$(bin edge-agent edgefleet-agent.dll)"

rm -rf "$state/models" "$state/fleet" "$state/agents" "$state/logs"
mkdir -p "$state/logs"
model="$state/models/vibration-classifier/1.0.0/model.onnx"
echo "== training the demo model"
dotnet "$cli_dll" model demo --out "$model"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "== stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; state and logs are in $state"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT   # Ctrl-C
trap 'cleanup; exit 143' TERM

echo "== starting the fleet service (HTTP $http_port, MQTT $mqtt_port)"
(cd "$(dirname "$fleet_dll")" && exec dotnet "$fleet_dll" --urls "http://127.0.0.1:$http_port" \
  --Fleet:Broker:Port "$mqtt_port" --Fleet:Storage:Path "$state/fleet/fleet.db") >"$state/logs/fleet.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  http_get /api/health | grep -q '"brokerConnected":true' && break
  sleep 0.3
done
http_get /api/health | grep -q '"brokerConnected":true' || { echo "the fleet service did not start; see $state/logs/fleet.log" >&2; exit 1; }

# The fleet wrote its first admin API key beside its database; the demo uses it for the CLI.
export EDGEFLEET_API_KEY="$(cat "$state/fleet/admin.key")" EDGEFLEET_URL="http://127.0.0.1:$http_port"
echo "== enrolling and starting three agents"
seed=1
for device in pump-01:normal pump-02:imbalance fan-03:bearing-wear; do
  id="${device%%:*}"; condition="${device#*:}"
  mkdir -p "$state/agents/$id"
  cat >"$state/agents/$id/agent.json" <<JSON
{
  "deviceId": "$id",
  "stateDirectory": "$state/agents/$id",
  "hardwareProfile": "auto",
  "profilesDirectory": "$root/hardware-profiles",
  "model": { "name": "vibration-classifier", "version": "1.0.0", "path": "$model" },
  "input": { "kind": "demoVibration", "condition": "$condition", "rateHz": 4, "seed": $seed }
}
JSON
  # As on a real device: a one-time enrollment token from the operator, then 'enroll' on the device.
  token="$(dotnet "$cli_dll" devices enroll-token --tags "site=demo,line=$seed" 2>/dev/null)"
  dotnet "$agent_dll" enroll --fleet "$EDGEFLEET_URL" --token "$token" --config "$state/agents/$id/agent.json"
  dotnet "$agent_dll" run --config "$state/agents/$id/agent.json" >"$state/logs/$id.log" 2>&1 &
  pids+=($!)
  seed=$((seed + 1))
done

# A console user for the demo, with a random password (there is no default one), kept in a 0600 file.
console_password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
( umask 077; printf '%s\n' "$console_password" >"$state/console-password" )
if ! dotnet "$cli_dll" users list --json 2>/dev/null | grep -q '"username":"demo"'; then
  dotnet "$cli_dll" users create --username demo --role admin --password-file "$state/console-password" >/dev/null
else
  dotnet "$cli_dll" users set --username demo --password-file "$state/console-password" --enable >/dev/null
fi

cat <<MSG

  Web console: http://127.0.0.1:$http_port/console   (user demo, password in $state/console-password)
  Fleet API:   http://127.0.0.1:$http_port/api/devices   (health: /api/health)
  MQTT broker: 127.0.0.1:$mqtt_port (embedded)
  API key:     $state/fleet/admin.key (admin; curl -H "Authorization: Bearer \$(cat $state/fleet/admin.key)" ...)
  Devices:     EDGEFLEET_API_KEY=\$(cat $state/fleet/admin.key) dotnet $cli_dll devices list --fleet http://127.0.0.1:$http_port
  Logs:        $state/logs/

  Press Ctrl-C to stop.
MSG
while true; do
  sleep 10
  echo; date +%T
  dotnet "$cli_dll" devices list || true
done
