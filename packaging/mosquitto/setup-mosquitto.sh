#!/bin/sh
# Prepares a Debian/Ubuntu Mosquitto (2.0 or newer, package "mosquitto") as EdgeFleet's external broker:
# creates the dynamic-security file with the fleet service as its admin, and writes the listener
# configuration into Mosquitto's conf.d. Run as root, then restart Mosquitto and give the fleet service
#   Fleet:Broker:Mode=External  Fleet:Broker:Username=<admin>  Fleet:Broker:Password=<from the password file>
#   Fleet:Broker:DeviceAccounts=MosquittoDynamicSecurity
# Running it again keeps the existing accounts (the dynamic-security file is never overwritten).
set -eu

conf_dir=/etc/mosquitto/conf.d
state_dir=/var/lib/mosquitto
port=1883
bind=""
admin=edgefleet-fleet
password_file=/etc/edgefleet/mosquitto-admin.password

usage() {
  cat <<USAGE
usage: setup-mosquitto.sh [--conf-dir D] [--state-dir D] [--port P] [--bind ADDR] [--admin NAME] [--password-file F]
  --conf-dir       where edgefleet.conf goes (default $conf_dir; Debian's mosquitto.conf includes it)
  --state-dir      where dynamic-security.json goes (default $state_dir)
  --port, --bind   the MQTT listener (default 1883 on all addresses)
  --admin          the fleet service's broker account (default $admin; must start with "edgefleet")
  --password-file  its password: read if the file exists, else generated and written there (mode 0600)
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --conf-dir) conf_dir="$2"; shift 2 ;;
    --state-dir) state_dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --bind) bind="$2"; shift 2 ;;
    --admin) admin="$2"; shift 2 ;;
    --password-file) password_file="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup-mosquitto.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

# The fleet's accounts live in a namespace no device can enroll under ("edgefleet*"): a device enrolled under the
# admin's name would otherwise have the fleet re-key the fleet's own account.
case "$admin" in
  edgefleet*) ;;
  *) echo "setup-mosquitto.sh: --admin '$admin' must start with 'edgefleet' (the namespace devices cannot enroll under)" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
plugin=""
for candidate in /usr/lib/*/mosquitto_dynamic_security.so /usr/lib/mosquitto_dynamic_security.so /usr/local/lib/mosquitto_dynamic_security.so; do
  if [ -f "$candidate" ]; then plugin="$candidate"; break; fi
done
if [ -z "$plugin" ]; then
  echo "setup-mosquitto.sh: mosquitto_dynamic_security.so not found; install Mosquitto 2.0 or newer (apt install mosquitto)" >&2
  exit 1
fi
command -v mosquitto_ctrl >/dev/null || { echo "setup-mosquitto.sh: mosquitto_ctrl not found (package mosquitto)" >&2; exit 1; }

dynsec="$state_dir/dynamic-security.json"
mkdir -p "$conf_dir" "$state_dir" "$(dirname "$password_file")"
if [ ! -f "$dynsec" ]; then
  if [ ! -s "$password_file" ]; then
    umask 077
    head -c 32 /dev/urandom | base64 | tr -d '=+/\n' > "$password_file"
  fi
  password="$(cat "$password_file")"
  mosquitto_ctrl dynsec init "$dynsec" "$admin" "$password" >/dev/null
  chmod 600 "$dynsec"
  # Mosquitto rewrites the file (new file, then rename) whenever the fleet changes an account: it must own
  # the file and its directory.
  if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then chown mosquitto: "$dynsec" "$state_dir"; fi
  echo "created $dynsec with admin account $admin (password in $password_file)"
else
  echo "kept $dynsec (existing accounts)"
fi

sed -e "s|@PLUGIN@|$plugin|" -e "s|@DYNSEC_FILE@|$dynsec|" -e "s|@PORT@|$port|" -e "s|@BIND@|$bind|" \
  "$here/edgefleet.conf.in" > "$conf_dir/edgefleet.conf"
echo "wrote $conf_dir/edgefleet.conf (listener $port${bind:+ on $bind}); restart Mosquitto to apply"
