#!/usr/bin/env bash
# The GPU run in one command (docs/training.md, "The GPU run"). On the bare GPU machine:
# install the carried wheels, unpack the carried data, train with `vimss train` until the
# wall-clock budget (validating and exporting first), and copy the results into $OUT.
#
#   bash scripts/device_train.sh                     # on the H200: 8-minute budget, CUDA
#   DEVICE=cpu BUDGET_SECONDS=60 PACK=/tmp/pack bash scripts/device_train.sh   # CPU dry run
#
# Settings (environment):
#   PACK            the carried folder (default .device): wheels/, data/, config.toml,
#                   and optionally resume/ (a previous launch's $OUT: continues it exactly)
#   MORE            a second pack of train pieces (default .device-more, else
#                   /tmp/.device-more): device_pack.py pack --more-out builds it, and a device
#                   call of its own just before this one leaves it on the machine (it carries
#                   .device-more and copies it to /tmp/); used when found and of the same
#                   packing (pack.json's pack_id), else train.log says why not; none: never
# Results in $OUT: best.safetensors (best validation SDR: on the carried real recordings,
# PACK/realval/, when the pack has them; else synthetic), last.safetensors (the weights at
# the end), log.jsonl, config.toml, train.log, state.safetensors.partNN.
#   DEVICE          cuda (default) or cpu
#   BUDGET_SECONDS  wall clock for the whole script (default 480); training stops early
#                   enough to validate, export and copy before it
#   RESERVE_SECONDS kept back for the final validation, export, copy and (on CUDA) the
#                   separation benchmark (default 75)
#   WORKERS         data-loader processes (default: cores - 2)
#   INIT_FROM       start a new run from these weights (run.init_from; a relative path is
#                   from the repository root); default PACK/init.safetensors when the pack
#                   has one (device_pack.py pack --init). Not with PACK/resume/, which
#                   continues a run instead
#   EXTRA           further `vimss train` options, e.g. "--set data.batch_size=64"
#   OUT             where results go (default: $OUT of the device tool, else out/device)
#   WORK            scratch folder (default /tmp/vimss-device)
set -euo pipefail
started=$(date +%s)
cd "$(dirname "$0")/.."
PACK=${PACK:-.device}
if [ -z "${MORE:-}" ]; then  # the ferry call leaves .device-more, and copies it to /tmp
  MORE=.device-more
  [ -d "$MORE/data" ] || MORE=/tmp/.device-more
fi  # MORE=none: the first pack alone
DEVICE=${DEVICE:-cuda}
BUDGET_SECONDS=${BUDGET_SECONDS:-480}
RESERVE_SECONDS=${RESERVE_SECONDS:-75}
WORK=${WORK:-/tmp/vimss-device}
OUT=${OUT:-$PWD/out/device}
PYTHON=${PYTHON:-python3}
cores=$(nproc)
WORKERS=${WORKERS:-$((cores > 3 ? cores - 2 : 1))}
export PYTHONUNBUFFERED=1

[ -f "$PACK/config.toml" ] || { echo "error: $PACK/config.toml not found: run make device-pack first" >&2; exit 2; }
# What the run starts from, settled before anything is unpacked: a carried run to continue
# (PACK/resume/), else weights (INIT_FROM, default PACK/init.safetensors), else nothing.
resuming=0
if [ -f "$PACK/resume/state.safetensors.part00" ] || [ -f "$PACK/resume/state.safetensors" ]; then
  resuming=1
  if [ -n "${INIT_FROM:-}" ]; then
    echo "error: INIT_FROM is set but $PACK/resume/ holds a run to continue: unset one of them" >&2
    exit 2
  fi
  if [ -f "$PACK/init.safetensors" ]; then
    echo "warning: $PACK/resume/ is continued; $PACK/init.safetensors is not used" >&2
  fi
elif [ -z "${INIT_FROM:-}" ] && [ -f "$PACK/init.safetensors" ]; then
  INIT_FROM="$PACK/init.safetensors"
fi
if [ -n "${INIT_FROM:-}" ] && [ ! -f "$INIT_FROM" ]; then
  echo "error: INIT_FROM $INIT_FROM: no such file (a relative path is from the repository root)" >&2
  exit 2
fi
mkdir -p "$OUT" "$WORK"
: > "$OUT/train.log"  # the setup's lines, then vimss train's (the tool returns only a tail)
note() { echo "$*" | tee -a "$OUT/train.log"; }

# 1. Python packages the machine lacks (skipped where they import already, as on the CPU dry run).
if ! "$PYTHON" -c "import soundfile, tensorboardX, ffmpeg" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" "$PACK"/wheels/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# 2. The data: Ogg Vorbis stems back to a URMP-layout tree.
rm -rf "$WORK/data" "$WORK/run"
"$PYTHON" scripts/device_pack.py unpack "$PACK/data" "$WORK/data" --workers "$cores"
# the second pack joins only if it was packed with the first (device_pack.py second)
second=$("$PYTHON" scripts/device_pack.py second "$PACK" "$MORE")
note "$second"
if [[ $second == "second pack "* ]]; then
  "$PYTHON" scripts/device_pack.py unpack "$MORE/data" "$WORK/data" --workers "$cores"
fi
real=(--set run.real_valid=)  # real recordings to validate on, when carried
rm -rf "$WORK/realval"
if [ -d "$PACK/realval" ]; then
  "$PYTHON" scripts/device_pack.py unpack "$PACK/realval" "$WORK/realval" --workers "$cores"
  folders=("$WORK"/realval/*/)
  if [ "${#folders[@]}" != 1 ] || [ ! -d "${folders[0]}" ]; then
    echo "error: $PACK/realval/ must hold one folder of real recordings" >&2; exit 2
  fi
  real=(--real-valid "${folders[0]%/}")
fi

# 3. Resume a carried run, or start one.
mode=()
if [ "$resuming" = 1 ]; then
  mkdir -p "$WORK/run"
  if [ -f "$PACK/resume/state.safetensors.part00" ]; then  # as step 5 splits it
    cat "$PACK"/resume/state.safetensors.part* > "$WORK/run/state.safetensors"
  else
    cp "$PACK/resume/state.safetensors" "$WORK/run/"
  fi
  cp "$PACK/resume/config.toml" "$WORK/run/"
  [ -f "$PACK/resume/log.jsonl" ] && cp "$PACK/resume/log.jsonl" "$WORK/run/"
  [ -f "$PACK/resume/best.safetensors" ] && cp "$PACK/resume/best.safetensors" "$WORK/run/"
  mode=(--resume --config "$WORK/run/config.toml")
else
  mode=(--config "$PACK/config.toml")
  [ -n "${INIT_FROM:-}" ] && mode+=(--init-from "$INIT_FROM")
fi
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; fi

# 4. Train until the budget, less what setup took and the reserve.
left=$(( BUDGET_SECONDS - ($(date +%s) - started) - RESERVE_SECONDS ))
[ "$left" -gt 5 ] || { echo "error: no time left to train ($left s)" >&2; exit 3; }
minutes=$(awk "BEGIN {print $left / 60}")
note "setup took $(( $(date +%s) - started )) s; training for $left s on $DEVICE with $WORKERS workers"
status=0
# shellcheck disable=SC2086
"$PYTHON" -m vimss_cli train --dataset synth --root "$WORK/data" --out "$WORK/run" \
  "${mode[@]}" "${real[@]}" --device "$DEVICE" --max-minutes "$minutes" \
  --set "data.workers=$WORKERS" \
  --json ${EXTRA:-} 2>&1 | tee -a "$OUT/train.log" || status=$?

# 5. Results (at most 8 files of at most 16 MiB come back): weights, log, config, and the
#    training state in 15 MiB parts (cat state.safetensors.part* > state.safetensors).
for name in best.safetensors last.safetensors log.jsonl config.toml; do
  if [ -f "$WORK/run/$name" ]; then cp "$WORK/run/$name" "$OUT/"; fi
done
if [ -f "$WORK/run/state.safetensors" ]; then
  split -b 15m -d "$WORK/run/state.safetensors" "$OUT/state.safetensors.part"
fi
# 6. On CUDA: the realtime factor of separating a quartet with the new and the bundled model,
#    and chunked-equals-whole on the GPU (scripts/device_bench.py), inside the reserve.
if [ "$DEVICE" = cuda ] && [ "${BENCH:-1}" = 1 ] && [ -f "$OUT/last.safetensors" ]; then
  rm -f "$WORK/profile.txt"  # an earlier call's, on a machine still warm
  benched=("$OUT/last.safetensors")
  # the bundled default too, unless a lean run left the models' files behind (make device-lean)
  if compgen -G "models/*.safetensors" >/dev/null; then benched+=(default); fi
  "$PYTHON" scripts/device_bench.py --device cuda --seconds 60 --precisions fp32,bf16,fp16 \
    --batch-sizes 1,16 --profile "$WORK/profile.txt" "${benched[@]}" 2>&1 \
    | tee -a "$OUT/train.log" || true
  # the profiler's table of one pass goes into the log (at most 8 files come back)
  if [ -f "$WORK/profile.txt" ]; then tee -a "$OUT/train.log" < "$WORK/profile.txt"; fi
fi
echo "done in $(( $(date +%s) - started )) s (exit $status); results in $OUT:"
ls -l "$OUT"
exit "$status"
