#!/usr/bin/env bash
# Compares the throughput and CPU cost of three HTTP load generators against refservice
# on 127.0.0.1: wrk, oha and `deploybench load --mode closed`.
#
# Every generator runs at maximum throughput (a closed loop) with the same connection
# count for the same time, and the rounds alternate the generators so that drifting
# machine load affects all of them alike. CPU time is the generator process's user plus
# system time from /usr/bin/time, divided by the requests it completed. The table shows
# the median over the rounds.
#
# Usage: scripts/compare-load-generators.sh
# Settings (environment variables):
#   ROUNDS=5          rounds, each running every generator once
#   DURATION=10       seconds per generator run
#   CONNECTIONS=16    connections of every generator
#   THREADS=$(nproc)  wrk threads (oha and deploybench size their runtimes to the CPUs)
#   URL_PATH=/        path and query requested from refservice
#   NO_OHA_INSTALL=1  skip `cargo install oha --locked` when oha is missing
#
# Requires: cargo, python3, /usr/bin/time (Debian package time), wrk (Debian package
# wrk). oha is installed with cargo when missing; if that fails, oha is skipped and the
# reason printed. Exit code 0 on success, 2 when a requirement is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-$(nproc)}
URL_PATH=${URL_PATH:-/}

log() { printf 'compare: %s\n' "$*" >&2; }
die() { printf 'compare: error: %s\n' "$*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is missing; install the Debian package python3"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing; install the Debian package time"
command -v wrk >/dev/null || die "wrk is missing; install the Debian package wrk"

oha_skip_reason=""
if ! command -v oha >/dev/null; then
  if [ -x "$HOME/.cargo/bin/oha" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
  elif [ -n "${NO_OHA_INSTALL:-}" ]; then
    oha_skip_reason="oha is not installed and NO_OHA_INSTALL is set"
  else
    log "installing oha with cargo install oha --locked (takes several minutes)"
    if cargo install oha --locked >/tmp/compare-oha-install.log 2>&1; then
      PATH="$HOME/.cargo/bin:$PATH"
    else
      oha_skip_reason="cargo install oha --locked failed, see /tmp/compare-oha-install.log"
    fi
  fi
fi
if [ -n "$oha_skip_reason" ]; then
  log "skipping oha: $oha_skip_reason"
fi

log "building refservice and deploybench (release)"
cargo build --release --quiet -p refservice -p deploybench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
refservice="$target_dir/release/refservice"
deploybench="$target_dir/release/deploybench"

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Port 0 lets the kernel pick a free port, which refservice prints when it listens.
"$refservice" serve --bind 127.0.0.1 --port 0 >"$work/refservice.log" 2>&1 &
server_pid=$!
address=""
for _ in $(seq 100); do
  address=$(sed -n 's/^refservice .* listening on \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$work/refservice.log")
  [ -n "$address" ] && break
  kill -0 "$server_pid" 2>/dev/null || die "refservice exited: $(cat "$work/refservice.log")"
  sleep 0.1
done
[ -n "$address" ] || die "refservice did not report its address within 10 s"
url="http://$address$URL_PATH"
log "refservice (pid $server_pid) listens on $address"

results="$work/results.csv"
echo "round,generator,requests,seconds,rps,cpu_s" >"$results"

# Runs one generator under /usr/bin/time and appends a row to the results.
# Arguments: round, generator name, command...
measure() {
  local round=$1 name=$2
  shift 2
  local output="$work/$name-$round.out" timing="$work/$name-$round.time" status=0
  /usr/bin/time -f '%U %S' -o "$timing" "$@" >"$output" 2>"$work/$name-$round.err" || status=$?
  # deploybench exits 1 for a run its saturation guard marked invalid, which still
  # has valid counts; any other failure loses the round.
  if [ "$status" -ne 0 ] && ! { [ "$name" = deploybench ] && [ "$status" -eq 1 ]; }; then
    log "round $round: $name failed with exit code $status: $(tail -n 3 "$work/$name-$round.err")"
    return
  fi
  python3 - "$round" "$name" "$output" "$timing" >>"$results" <<'EOF'
import json, re, sys
round_, name, output, timing = sys.argv[1:]
text = open(output).read()
user, system = (float(value) for value in open(timing).read().split()[-2:])
if name == "wrk":
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    requests = int(match.group(1))
    seconds = float(match.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(3)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
elif name == "oha":
    summary = json.loads(text)
    # Completed responses only: errorDistribution contains the requests aborted at the deadline.
    requests = sum(summary["statusCodeDistribution"].values())
    seconds = summary["summary"]["total"]
    rps = summary["summary"]["requestsPerSec"]
else:
    summary = json.loads(text)
    requests = summary["completed"]
    seconds = summary["measured_s"]
    rps = summary["achieved_rps"]
    if not summary["valid"]:
        print(f"compare: round {round_}: deploybench marked its run invalid: {summary['invalid_reasons']}", file=sys.stderr)
print(f"{round_},{name},{requests},{seconds:.3f},{rps:.1f},{user + system:.2f}")
EOF
}

generators=(wrk deploybench)
[ -z "$oha_skip_reason" ] && generators=(wrk oha deploybench)
log "url $url, $CONNECTIONS connections, $DURATION s per run, $ROUNDS rounds, generators: ${generators[*]}"

for round in $(seq "$ROUNDS"); do
  # Rotate the order each round, so no generator always runs first or after the same one.
  count=${#generators[@]}
  for offset in $(seq 0 $((count - 1))); do
    name=${generators[$(((round - 1 + offset) % count))]}
    log "round $round/$ROUNDS: $name"
    case $name in
      wrk) measure "$round" wrk wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$url" ;;
      oha) measure "$round" oha oha --no-tui --output-format json -z "${DURATION}s" -c "$CONNECTIONS" "$url" ;;
      deploybench)
        measure "$round" deploybench "$deploybench" load --mode closed --connections "$CONNECTIONS" \
          --duration "${DURATION}s" --json "$url"
        ;;
    esac
  done
done

echo
echo "Per run:"
column -s, -t <"$results"
echo
python3 - "$results" "$oha_skip_reason" "$CONNECTIONS" "$DURATION" "$ROUNDS" <<'EOF'
import csv, statistics, sys
path, oha_skip_reason, connections, duration, rounds = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
table = {}
for name in ("wrk", "oha", "deploybench"):
    runs = [row for row in rows if row["generator"] == name]
    if not runs:
        continue
    rps = statistics.median(float(row["rps"]) for row in runs)
    cpu_us = statistics.median(float(row["cpu_s"]) * 1e6 / int(row["requests"]) for row in runs)
    table[name] = (rps, cpu_us, len(runs))
print(f"Median over {rounds} rounds, {connections} connections, {duration} s per run:")
print(f"{'generator':<12} {'req/s':>10} {'CPU µs/req':>11} {'runs':>5}")
for name, (rps, cpu_us, runs) in table.items():
    print(f"{name:<12} {rps:>10.0f} {cpu_us:>11.2f} {runs:>5}")
if oha_skip_reason:
    print(f"oha skipped: {oha_skip_reason}")
print()
mine = table.get("deploybench")
for other in ("wrk", "oha"):
    if mine and other in table:
        rps_ratio = mine[0] / table[other][0]
        cpu_ratio = mine[1] / table[other][1]
        print(f"deploybench/{other}: req/s {rps_ratio:.2f}, CPU per request {cpu_ratio:.2f}")
EOF
