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

rm -rf "$state/models" "$state/fleet" "$state/agents" "$state/logs" "$state/keys"
mkdir -p "$state/logs"
cli() { dotnet "$cli_dll" "$@"; }
model_dir="$state/models/vibration-classifier"
model="$model_dir/v1.onnx"
echo "== training the demo model, its drift baselines and validation report; the fleet's signing keys"
cli model demo --out "$model" >/dev/null
# Baselines from a mix of all three conditions, as the fleet runs them: drift is judged for the fleet as a whole.
cli model samples --kind demo --count 900 --out "$model_dir/baseline" >/dev/null
# The model is tiny (8 -> 16 -> 3): its INT8 form is not faster, so the gate leaves latency out (null).
cat >"$model_dir/card.json" <<'JSON'
{"owner": "vibration-ml", "intendedUse": "pump and fan vibration: normal, imbalance, bearing wear",
 "labels": ["normal", "imbalance", "bearing-wear"], "thresholds": {"maxLatencyRatio": null}}
JSON
cli model baseline --model "$model" --data "$model_dir/baseline" --bins 10 --card "$model_dir/card.json" --out "$model_dir/card-v1.json" >/dev/null
cli model validate --reference "$model" --candidate "$model" --data "$model_dir/baseline" --max-samples 100 --card "$model_dir/card.json" --report-out "$model_dir/report-v1.json" >/dev/null
cli keys init --dir "$state/keys" >/dev/null

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
# Short drift windows so the demo shows the retraining loop within minutes (production: hourly windows).
# The retraining executor "demo" is the reference worker: the CLI, run by the fleet without a shell.
dotnet_bin="$(command -v dotnet)"
(cd "$(dirname "$fleet_dll")" && exec dotnet "$fleet_dll" --urls "http://127.0.0.1:$http_port" \
  --Fleet:Broker:Port "$mqtt_port" --Fleet:Storage:Path "$state/fleet/fleet.db" --Fleet:Storage:ArtifactsPath "$state/fleet/artifacts" --Fleet:Signing:KeyDirectory "$state/keys" \
  --Fleet:Drift:WindowSeconds 15 --Fleet:Drift:CheckSeconds 5 --Fleet:Drift:AlertWindows 3 --Fleet:Drift:LookbackWindows 40 \
  --Fleet:Retraining:CheckSeconds 5 --Fleet:Retraining:WorkPath "$state/fleet/retraining" \
  --Fleet:Retraining:Executors:demo:Command "$dotnet_bin" "--Fleet:Retraining:Executors:demo:Arguments:0=$cli_dll" \
  --Fleet:Retraining:Executors:demo:Arguments:1=retrain --Fleet:Retraining:Executors:demo:Arguments:2=worker \
  --Fleet:Retraining:Executors:demo:Arguments:3=--kind --Fleet:Retraining:Executors:demo:Arguments:4=demo) >"$state/logs/fleet.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  http_get /api/health | grep -q '"brokerConnected":true' && break
  sleep 0.3
done
http_get /api/health | grep -q '"brokerConnected":true' || { echo "the fleet service did not start; see $state/logs/fleet.log" >&2; exit 1; }

# The fleet wrote its first admin API key beside its database; the demo uses it for the CLI.
export EDGEFLEET_API_KEY="$(cat "$state/fleet/admin.key")" EDGEFLEET_URL="http://127.0.0.1:$http_port"
echo "== registering the model (v1 approved, with its baselines)"
cli model register --id vibration-classifier --description "demo vibration classifier" >/dev/null
cli model push --model-id vibration-classifier --card "$model_dir/card-v1.json" --fp32 "$model" --report "$model_dir/report-v1.json" >/dev/null
cli model approve --model-id vibration-classifier --model-version 1 --reason "demo baseline" >/dev/null

echo "== enrolling and starting three agents (pump-01's accelerometer is replaced after a minute: drift)"
seed=1
for device in pump-01:normal pump-02:imbalance fan-03:bearing-wear; do
  id="${device%%:*}"; condition="${device#*:}"
  drift=""
  [ "$id" = pump-01 ] && drift=', "driftAfterSeconds": 60, "driftGain": 3'
  mkdir -p "$state/agents/$id"
  cat >"$state/agents/$id/agent.json" <<JSON
{
  "deviceId": "$id",
  "stateDirectory": "$state/agents/$id",
  "hardwareProfile": "auto",
  "profilesDirectory": "$root/hardware-profiles",
  "model": { "name": "vibration-classifier", "version": "1.0.0", "path": "$model" },
  "input": { "kind": "demoVibration", "condition": "$condition", "rateHz": 4, "seed": $seed$drift },
  "ota": { "rootPath": "$state/keys/root.json", "fleetUrl": "$EDGEFLEET_URL" }
}
JSON
  # As on a real device: a one-time enrollment token from the operator, then 'enroll' on the device.
  token="$(cli devices enroll-token --tags "site=demo,line=$seed" 2>/dev/null)"
  dotnet "$agent_dll" enroll --fleet "$EDGEFLEET_URL" --token "$token" --config "$state/agents/$id/agent.json"
  dotnet "$agent_dll" run --config "$state/agents/$id/agent.json" >"$state/logs/$id.log" 2>&1 &
  pids+=($!)
  seed=$((seed + 1))
done

started=$(date +%s)
for _ in $(seq 1 60); do
  [ "$(cli devices list --json 2>/dev/null | grep -o '"id":"' | wc -l)" -ge 3 ] && break
  sleep 0.5
done
echo "== rolling the signed v1 out to the three agents; the retraining policy"
cli rollout create --id v1-demo --model-id vibration-classifier --model-version 1 --selector site=demo --phases 100% --quality off >/dev/null
cli retrain policy set --model-id vibration-classifier --executor demo --on-drift features=1,windows=3 --cooldown-hours 1 \
  --timeout-minutes 10 --selector site=demo --phases 34%:120,100% >/dev/null

# A console user for the demo, with a random password (there is no default one), kept in a 0600 file.
console_password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
( umask 077; printf '%s\n' "$console_password" >"$state/console-password" )
if ! cli users list --json 2>/dev/null | grep -q '"username":"demo"'; then
  cli users create --username demo --role admin --password-file "$state/console-password" >/dev/null
else
  cli users set --username demo --password-file "$state/console-password" --enable >/dev/null
fi

cat <<MSG

  Web console: http://127.0.0.1:$http_port/console   (user demo, password in $state/console-password)
  Fleet API:   http://127.0.0.1:$http_port/api/devices   (health: /api/health)
  MQTT broker: 127.0.0.1:$mqtt_port (embedded)
  API key:     $state/fleet/admin.key (admin; curl -H "Authorization: Bearer \$(cat $state/fleet/admin.key)" ...)
  Devices:     EDGEFLEET_API_KEY=\$(cat $state/fleet/admin.key) dotnet $cli_dll devices list --fleet http://127.0.0.1:$http_port
  Logs:        $state/logs/

  The loop: pump-01's new accelerometer reads three times higher from a minute on; the fleet raises a drift
  alert, a technician's feedback labels pump-01's hard examples "normal", the policy queues a retraining job,
  the reference worker retrains the model, the fleet quantizes and validates v2 and drafts its rollout. Approve
  it in the console (Rollouts) or: dotnet $cli_dll rollout approve --id ID

  Press Ctrl-C to stop.
MSG
while true; do
  sleep 10
  elapsed=$(( $(date +%s) - started ))
  echo; echo "$(date +%T) ($elapsed s since the agents started)"
  cli devices list || true
  if [ "$elapsed" -ge 60 ]; then
    # The technician's feedback: pump-01 was inspected and runs normally (only its sensor changed).
    cli model label --model-id vibration-classifier --device pump-01 --label normal --hours 1 2>/dev/null | sed 's/^/feedback: /' || true
  fi
  cli drift alerts 2>/dev/null | grep -v '^no drift alerts' || true
  jobs="$(cli retrain jobs 2>/dev/null || true)"
  if [ "$(printf '%s\n' "$jobs" | wc -l)" -gt 1 ]; then printf '%s\n' "$jobs"; fi
  cli rollout list 2>/dev/null | grep -E 'draft|running' || true
done
