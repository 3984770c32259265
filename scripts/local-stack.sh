#!/usr/bin/env bash
# Starts the local AWS emulator (moto) and the function (cargo lambda watch), creates the tables,
# the pepper and the development API keys, then runs the given command, or waits for Ctrl-C.
# Waiting for Ctrl-C (make run), or with PIPELINE=1, it also runs the event pipeline: the fanout
# and deliver functions (a second cargo lambda watch, on PIPELINE_PORT) fed from moto's SQS by
# scripts/sqs_poller.py, which stands in for Lambda's event source mappings and restarts the
# functions when they die (a `PIPELINE RESTART` line on the terminal).
# Everything it started is stopped when it exits. Settings come from local.env.
#
#   scripts/local-stack.sh                 serve until Ctrl-C (make run)
#   scripts/local-stack.sh CMD [ARGS...]   serve while CMD runs, exit with its status
#   PIPELINE=1 scripts/local-stack.sh CMD  the same, with the pipeline (make soak, make readme-check)
#
# From the environment, over local.env: MOTO_PORT, API_PORT, PIPELINE_PORT (the tests use free
# ports, so that a running `make run` never breaks them), RETRY_DELAYS_SECONDS and LOG_LEVEL.
# CMD gets local.env, these, AWS_ENDPOINT_URL, the queue URLs on MOTO_PORT and RUN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

overridable=(MOTO_PORT API_PORT PIPELINE_PORT RETRY_DELAYS_SECONDS LOG_LEVEL)
declare -A overrides=()
for name in "${overridable[@]}"; do
  if [[ -n ${!name:-} ]]; then overrides[$name]=${!name}; fi
done
set -a
# shellcheck source=../local.env
. ./local.env
set +a
for name in "${!overrides[@]}"; do
  export "$name=${overrides[$name]}"
done
API_PORT=${API_PORT:-9000}
PIPELINE_PORT=${PIPELINE_PORT:-9001}
export API_PORT PIPELINE_PORT
export AWS_ENDPOINT_URL="http://127.0.0.1:${MOTO_PORT}"
# local.env's queue URLs name port 4566; on another MOTO_PORT they name that one.
for name in EVENTS_QUEUE_URL EVENTS_DLQ_URL DELIVERIES_QUEUE_URL DELIVERIES_DLQ_URL; do
  export "$name=${AWS_ENDPOINT_URL}/${!name#http*://*/}"
done
# The functions' settings: local.env with the values above (a file, not --env-var, which
# splits values at commas, and RETRY_DELAYS_SECONDS has commas).
function_vars=(AWS_ENDPOINT_URL EVENTS_QUEUE_URL EVENTS_DLQ_URL DELIVERIES_QUEUE_URL
  DELIVERIES_DLQ_URL RETRY_DELAYS_SECONDS LOG_LEVEL)
pipeline=0
if (($# == 0)) || [[ ${PIPELINE:-0} == 1 ]]; then pipeline=1; fi
VENV=.venv/bin
export RUN_DIR=.run
mkdir -p "$RUN_DIR"
# Per port: stacks on other ports (make soak, make readme-check) may run beside this one.
export POLLER_LOG="$RUN_DIR/poller-$PIPELINE_PORT.log"
function_env="$RUN_DIR/functions-$API_PORT.env"
{
  grep -vE "^($(IFS='|'; echo "${function_vars[*]}"))=" local.env
  for name in "${function_vars[@]}"; do echo "$name=${!name}"; done
} >"$function_env"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "error: $what did not come up; see $RUN_DIR/*.log" >&2; return 1; fi
    # The process just started (the last in pids) ended: no point in waiting.
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "error: $what exited; see $RUN_DIR/*.log" >&2; return 1; fi
    sleep 0.3
  done
}

ports=("$MOTO_PORT" "$API_PORT")
((pipeline)) && ports+=("$PIPELINE_PORT")
for port in "${ports[@]}"; do
  if port_in_use "$port"; then
    echo "error: port $port is already in use (is another 'make run' still running?)" >&2
    exit 1
  fi
done

pids=()
poller_pid=
cleanup() {
  trap - EXIT INT TERM
  # The poller first: it stops the pipeline's emulator itself (killed under it, the emulator
  # would look like a dead pipeline and be restarted).
  if [[ -n $poller_pid ]]; then
    kill -TERM "$poller_pid" 2>/dev/null || true
    for _ in {1..50}; do kill -0 "$poller_pid" 2>/dev/null || break; sleep 0.3; done
  fi
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
  --env-file "$function_env" \
  >"$RUN_DIR/function-$API_PORT.log" 2>&1 &
pids+=($!)
# A PUT answered with 405 proves the function itself (not only the emulator) is up.
function_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$API_PORT/webhooks")" = 405 ]; }
wait_for 300 "the function" function_answers

if ((pipeline)); then
  # No --timeout: cargo lambda watch 1.9.2 puts it on every route, the Runtime API's long poll
  # `GET /runtime/invocation/next` included, so a function idle that long got a 408 without
  # `lambda-runtime-aws-request-id`, lambda_runtime 1.5.0 panicked on it ("missing
  # lambda-runtime-aws-request-id header", types.rs:176), and the emulator, which never
  # restarts a function, answered every later invoke with its own 408 (issue 15.2; reproduced
  # with `--timeout 3` and an idle function). deliver's budget is its own: the constant deadline
  # 600000 ms (1970) it gets here is replaced by 60 s (src/time_budget.rs). The poller runs this
  # emulator, watches it and restarts it when a function dies (scripts/sqs_poller.py).
  echo "==> starting the event pipeline (fanout and deliver on 127.0.0.1:$PIPELINE_PORT, SQS poller)"
  : >"$RUN_DIR/pipeline-$PIPELINE_PORT.log"
  : >"$POLLER_LOG"
  # The poller's stderr (errors, PIPELINE RESTART lines) goes to the terminal and its log.
  "$VENV/python" scripts/sqs_poller.py "http://127.0.0.1:$PIPELINE_PORT" \
    --log "$RUN_DIR/pipeline-$PIPELINE_PORT.log" -- \
    "$VENV/cargo-lambda" lambda watch -A 127.0.0.1 -P "$PIPELINE_PORT" --disable-cors \
    --env-file "$function_env" \
    >>"$POLLER_LOG" 2> >(tee -a "$POLLER_LOG" >&2) &
  poller_pid=$!
  pids+=($!)
  wait_for 120 "the pipeline functions" port_in_use "$PIPELINE_PORT"
fi

if (($# > 0)); then
  "$@"
  exit $?
fi

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
$POLLER_LOG and $RUN_DIR/moto-$MOTO_PORT.log. Ctrl-C stops everything.
MSG
tail -n 0 -f "$RUN_DIR/function-$API_PORT.log" "$RUN_DIR/pipeline-$PIPELINE_PORT.log" &
pids+=($!)
wait "${pids[0]}"
