#!/usr/bin/env bash
# The tuning runs and the long figure presets on one lent machine (a GPU and 16 cores), in two lanes
# that run side by side so that the whole script ends within its limit. Run from the repository root:
#
#     OUT=/some/dir PYTHONPATH=. bash bench/device_figures.sh          # PRESET=tiny for a dry run
#
# Lane A: the induction comparison's lr tuning (quick, then paper), then its paper preset.
# Lane B: the three-moons and regular-languages lr tuning (quick), then the three-moons paper preset.
# The tuned choices land in figures/tuned/ (committed files); the figure results, logs and tuned files
# are packed into $OUT/device_figures.tar.gz.
set -u
OUT="${OUT:-bench/results/device}"
PRESET="${PRESET:-}"          # empty: the real presets; tiny: a dry run of every command
LIMIT="${LIMIT:-500}"         # seconds for each lane
mkdir -p "$OUT/logs" "$OUT/figures"
export PYTHONPATH="${PYTHONPATH:-.}"
PY="${PYTHON:-python3}"
export OUT PY quick="${PRESET:-quick}" paper="${PRESET:-paper}"
tune() { "$PY" -m figures.tune "$@" --no-progress --out "$OUT/tuning-runs"; }
figure() { "$PY" -m sandbox figures "$@" --out "$OUT/figures" --no-progress; }

lane_a() {
  tune induction-heads --preset "$quick" --jobs 12
  tune induction-heads --preset "$paper" --jobs 12
  figure induction-heads --preset "$paper"
}
lane_b() {
  tune three-moons --preset "$quick" --jobs 8
  tune regular-languages --preset "$quick" --jobs 8
  figure three-moons --preset "$paper" --jobs 10
}
start=$SECONDS
timeout --kill-after=5 "$LIMIT" bash -c "$(declare -f tune figure lane_a); lane_a" > "$OUT/logs/lane_a.log" 2>&1 &
timeout --kill-after=5 "$LIMIT" bash -c "$(declare -f tune figure lane_b); lane_b" > "$OUT/logs/lane_b.log" 2>&1 &
wait
echo "both lanes done after $((SECONDS - start)) s"
tail -n 30 "$OUT/logs/lane_a.log" "$OUT/logs/lane_b.log"
cp figures/tuned/*.json "$OUT/logs/" 2>/dev/null
tar -czf "$OUT/device_figures.tar.gz" --exclude='*.pt' --exclude='tuning-runs' -C "$OUT" logs figures
rm -rf "$OUT/logs" "$OUT/figures" "$OUT/tuning-runs"
ls -la "$OUT"
