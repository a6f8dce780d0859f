#!/usr/bin/env bash
# Starts a local single-node Garage (a real S3 server) for trying the cold
# tier or running `strata perf cold-read` by hand, without Docker:
#
#   scripts/garage-local.sh DIR [S3_PORT]
#
# Writes DIR/garage.toml, starts `garage server` in the background (log in
# DIR/garage.log, pid in DIR/garage.pid), assigns the layout, creates the
# bucket `strata` and a key, and writes DIR/strata.env with
# STRATA_OBJECT_STORE and the AWS_* credentials:
#
#   set -a; . DIR/strata.env; set +a
#   strata standalone           # the cold tier is now Garage
#
# Stop it with: kill "$(cat DIR/garage.pid)". Needs `garage` 2.x on PATH
# (scripts/test.sh installs it).
#
# Metadata in LMDB, Garage's default engine: with SQLite the offload of
# `strata perf cold-read` ran 15-20 % slower on the development VM (Garage's
# CPU is the bottleneck there). No compression: the benchmark's payloads
# are random, and a Pulsar client compresses its own batches.
set -euo pipefail
dir=${1:?usage: scripts/garage-local.sh DIR [S3_PORT]}
s3_port=${2:-3900}
rpc_port=$((s3_port + 1))
admin_port=$((s3_port + 3))
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
compression_level = "none"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TOML
g() { garage -c "$dir/garage.toml" "$@"; }
garage -c "$dir/garage.toml" server > "$dir/garage.log" 2>&1 &
echo $! > "$dir/garage.pid"
for _ in $(seq 1 100); do
    node=$(g node id -q 2>/dev/null | cut -d@ -f1) && [[ -n $node ]] && break
    sleep 0.2
done
[[ -n ${node:-} ]] || { echo "garage did not start; see $dir/garage.log" >&2; exit 1; }
# `node id` answers before the server listens: wait for its RPC.
for _ in $(seq 1 100); do
    g status > /dev/null 2>&1 && break
    sleep 0.2
done
g layout assign -z dc1 -c 10G "$node" > /dev/null
g layout apply --version 1 > /dev/null
key=$(g key create strata)
key_id=$(sed -n 's/^Key ID: *//p' <<< "$key")
secret=$(sed -n 's/^Secret key: *//p' <<< "$key")
g bucket create strata > /dev/null
g bucket allow --read --write --owner strata --key "$key_id" > /dev/null
cat > "$dir/strata.env" <<ENV
STRATA_OBJECT_STORE='s3://strata/cluster1?endpoint=http://127.0.0.1:$s3_port&region=garage'
AWS_ACCESS_KEY_ID='$key_id'
AWS_SECRET_ACCESS_KEY='$secret'
AWS_REGION='garage'
ENV
echo "garage running (pid $(cat "$dir/garage.pid")), S3 on http://127.0.0.1:$s3_port; settings in $dir/strata.env"
