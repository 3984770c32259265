#!/usr/bin/env bash
# Starts the local AWS emulator (moto) and the function (cargo lambda watch), creates the tables,
# the pepper and the development API keys, then runs the given command, or waits for Ctrl-C.
# Waiting for Ctrl-C (make run), it also runs the event pipeline: the fanout and deliver
# functions (a second cargo lambda watch, on PIPELINE_PORT) fed from moto's SQS by
# scripts/sqs_poller.py, which stands in for Lambda's event source mappings.
# Everything it started is stopped when it exits. Settings come from local.env.
#
#   scripts/local-stack.sh                 serve until Ctrl-C (make run)
#   scripts/local-stack.sh CMD [ARGS...]   serve while CMD runs, exit with its status
#
# MOTO_PORT and API_PORT may be overridden from the environment (the fuzz run uses free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

override_moto_port=${MOTO_PORT:-}
set -a
# shellcheck source=../local.env
. ./local.env
set +a
MOTO_PORT=${override_moto_port:-$MOTO_PORT}
API_PORT=${API_PORT:-9000}
PIPELINE_PORT=${PIPELINE_PORT:-9001}
export AWS_ENDPOINT_URL="http://127.0.0.1:${MOTO_PORT}"
VENV=.venv/bin
RUN_DIR=.run
mkdir -p "$RUN_DIR"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "error: $what did not come up; see $RUN_DIR/*.log" >&2; return 1; fi
    sleep 0.3
  done
}

ports=("$MOTO_PORT" "$API_PORT")
(($# == 0)) && ports+=("$PIPELINE_PORT")
for port in "${ports[@]}"; do
  if port_in_use "$port"; then
    echo "error: port $port is already in use (is another 'make run' still running?)" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> starting moto on 127.0.0.1:$MOTO_PORT"
"$VENV/python" scripts/moto_server.py -H 127.0.0.1 -p "$MOTO_PORT" >"$RUN_DIR/moto-$MOTO_PORT.log" 2>&1 &
pids+=($!)
wait_for 60 "moto" port_in_use "$MOTO_PORT"

echo "==> building"
cargo build --quiet --bin create-webhook --bin webhooks-admin --bin fanout --bin deliver
admin=${CARGO_TARGET_DIR:-target}/debug/webhooks-admin

echo "==> creating tables, pepper and development API keys"
"$admin" setup
"$admin" keys create --name "local development (write)" --scope write:webhooks --scope read:webhooks \
  --company "$DEV_COMPANY_ID" --token "$DEV_API_TOKEN" >/dev/null
"$admin" keys create --name "local development (read-only)" --scope read:webhooks \
  --company "$DEV_COMPANY_ID" --token "$DEV_READONLY_API_TOKEN" >/dev/null

echo "==> serving the function on http://127.0.0.1:$API_PORT/webhooks"
# --disable-cors: the emulator otherwise reflects any Origin with credentials (API Gateway
# sends no CORS headers for this API, and browsers have no business calling it).
"$VENV/cargo-lambda" lambda watch --bin create-webhook -A 127.0.0.1 -P "$API_PORT" --disable-cors \
  --env-file local.env --env-var "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" \
  >"$RUN_DIR/function-$API_PORT.log" 2>&1 &
pids+=($!)
# A PUT answered with 405 proves the function itself (not only the emulator) is up.
function_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$API_PORT/webhooks")" = 405 ]; }
wait_for 300 "the function" function_answers

if (($# > 0)); then
  "$@"
  exit $?
fi

# cargo lambda watch sends every invocation the constant deadline 600000 ms (1970); deliver
# then gives itself 60 s instead (src/bin/deliver.rs), matching --timeout 60 here.
echo "==> starting the event pipeline (fanout and deliver on 127.0.0.1:$PIPELINE_PORT, SQS poller)"
"$VENV/cargo-lambda" lambda watch -A 127.0.0.1 -P "$PIPELINE_PORT" --disable-cors --timeout 60 \
  --env-file local.env --env-var "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" \
  >"$RUN_DIR/pipeline-$PIPELINE_PORT.log" 2>&1 &
pids+=($!)
wait_for 120 "the pipeline functions" port_in_use "$PIPELINE_PORT"
"$VENV/python" scripts/sqs_poller.py "http://127.0.0.1:$PIPELINE_PORT" >"$RUN_DIR/poller.log" 2>&1 &
pids+=($!)

cat <<MSG

Ready. Create the documentation's example webhook:

curl -i -X POST http://127.0.0.1:$API_PORT/webhooks \\
  -H "Authorization: Bearer $DEV_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "url": "https://api.example.com/webhooks/instaview",
    "name": "Production Webhook",
    "description": "Receives interview completion notifications",
    "events": ["interview.completed", "analysis.completed"],
    "headers": [{ "name": "Authorization", "value": "Bearer your-internal-token" }]
  }'

Publish an event; every subscribed webhook gets it, signed (webhook URLs on http://127.0.0.1
are allowed locally):

$admin --env-file local.env events publish --event interview.completed \
  --company $DEV_COMPANY_ID --data '{"interviewId":"int_123"}'

Read-only key (for a 403): $DEV_READONLY_API_TOKEN    Company: $DEV_COMPANY_ID
Logs: $RUN_DIR/function-$API_PORT.log, $RUN_DIR/pipeline-$PIPELINE_PORT.log,
$RUN_DIR/poller.log and $RUN_DIR/moto-$MOTO_PORT.log. Ctrl-C stops everything.
MSG
tail -n 0 -f "$RUN_DIR/function-$API_PORT.log" "$RUN_DIR/pipeline-$PIPELINE_PORT.log" &
pids+=($!)
wait "${pids[0]}"
