#!/usr/bin/env bash
# The CPU study of docs/RESULTS.md, every part resumable:
#
#   bash scripts/reproduce_cpu.sh                          # from the repo root, after setup
#   PARTS="budget variant" bash scripts/reproduce_cpu.sh   # only some parts
#   OUT=/some/dir bash scripts/reproduce_cpu.sh            # a study of one's own, from nothing
#
# OUT defaults to docs/results/cpu_study, the study this repository reports: each finished run keeps
# its settings, its per-step record and its scores there (RUN/record.json, RUN/eval/*.json; the
# weights, features and mirrors are git-ignored), and those are committed, so a fresh clone
# continues the study where it stopped: a run with a record is reused, not trained again.
# That study's parts still and pan run side by side at one thread each (THREADS=1: 1.2x the steps
# per second of one part at two threads on 2 cores, BENCHMARKS.md), as docs/RESULTS.md says how.
# The pre-registered paired comparison (docs/RESULTS.md, "Pre-registered comparison"), the
# default PARTS, in the order they are meant to run (each an ordinary s2vc command; a killed part
# continues where it stopped when the script is started again with the same OUT; finished runs
# and cached scores are reused; runs are trained once per set and scored on val and on test):
#   starts    s2vc pretrain --max-steps 0 for moco, s2vc and tfd, seed 0: the initial checkpoints,
#             identical by construction (compare their encoder_q weights)
#   budget    moco and oracle, seeds 0-2, 800 steps with snapshots every 100, scored on the
#             still set's validation split: the budget is the first snapshot where the oracle beats
#             MoCo by >= 10 R@1 there, chosen by code (scripts/choose.py, training/experiments/choices.py) into
#             paired_still/budget_choice.json, which the later parts read (PAIRED_STEPS overrides it)
#   variant   the paper's key and the project's candidates (s2vc-keys, s2vc-dynamic, s2vc-topk),
#             seeds 0-2, at PAIRED_STEPS, on both sets' validation splits: the best (chosen by code
#             into paired_still/variant_choice.json; BEST overrides it) is the project's variant
#   still     the paired comparison on the still set: moco s2vc-keys tfd-keys fame be oracle and
#             BEST, PAIRED_SEEDS (0-5), at PAIRED_STEPS, scored on the test split once; oracle, be and
#             fame take only the first 3 of PAIRED_SEEDS (the pre-registration's allowance when CPU
#             time runs short, taken 2026-12-07 before any test number was read; ALL_SEEDS=1: every
#             arm every seed); the deciding pairs take all
#   pan       the same on the pan set (--synthetic-camera pan)
# A follow-up registered after those parts had started (docs/RESULTS.md, "Follow-up: the variant made
# as the paper's key is"), not in the default PARTS; run it after still and pan:
#   keyed     s2vc-topk read from a mirror made once (s2vc-topk-keys), paired with the paper's key and
#             TFD (both read from mirrors) and with s2vc-topk (made each step), PAIRED_SEEDS, at
#             PAIRED_STEPS, test split, on both sets; the finished runs of still and pan are
#             hard-linked in (cp -al: no copy, never trained or scored again), so only the new arm trains;
#             KEYED_SETS=still / =pan: one set (the two can run at once, one thread each)
# Both sets have 10 validation videos per class (--synthetic-val-per-class 10; train and test are
# the built-in set's, byte for byte for still). Cost on the 2-core dev VM, measured in part budget
# (2026-12-07, idle): 800 steps of moco or oracle 975-1042 s, a snapshot's scoring about 5 s; so
# still or pan, 7 arms x 6 seeds at the chosen 300 steps, about 5 h each (estimate; arms that make
# their key each step take longer).
#
# History (the runs of the tables under "History" in docs/RESULTS.md; their arms did not share a
# start, and their alpha was calibrated on consecutive frames): by name only.
#   main      moco, oracle, tfd, be, fame and s2vc on pre-generated keys (the mirror of the
#             training split, made once), 3 seeds, on the built-in set with its fitted flow;
#             plus s2vc with keys made each step, seed 0 (the same method, checked equivalent)
#   set2      the same arms (s2vc made each step) on a second set nothing was tuned on: set seed 1,
#             bias mild, seed 0 (its own fitted flow, built once); MoCo also seeds 1 and 2
#   keybands  the look and motion probes of every arm's key per spatial band, on both sets (and of
#             the dynamic-detail s2vc key)
#   preserve  the alpha sweep by the fraction of latents kept (Fig. 3), seed 0, 400 steps (the
#             paper's 22.7% is strategy's zero run: its alpha is the flow's own calibration)
#   strategy  the suppression strategies (Table 4), seed 0, 400 steps
#   detail    the fine-detail variant (detail dynamic) against the paper's key, on both sets, seeds 0-2
#   longer    the six arms of main resumed to 400 steps (the schedule is constant after warm-up,
#             so a resumed run is a 400-step run); rewrites main's tables
#   flow64    a 64x64 flow (the paper's resolution, the frames' own) fitted to the set's training
#             frames from scratch (on crops, then on whole frames), then s2vc on keys each generated,
#             3 seeds, and the keys' bands
# strategy zero and detail keep are main's / set2's s2vc run of seed 0 (the same settings): when
# that run has finished it is copied in instead of being trained again.
# Measured on the 2-core dev VM (2026-12-01): a run of 200 steps takes 3-4 min (s2vc made each
# step: about 8), the evaluation about 1.5 min per run; main is about 2 h, set2 about 40 min.
set -u
set -o pipefail
OUT="${OUT:-docs/results/cpu_study}"
PY="${PYTHON:-python3}"
PARTS="${PARTS:-starts budget variant still pan}"
THREADS="${THREADS:-2}"
BUDGET=(--steps 200 --snapshot-every 50 --threads "$THREADS" --no-progress)
# the budget that decides (docs/RESULTS.md): the ablations and part longer run to 400 steps; a run
# that stopped at 200 (an earlier OUT) resumes from there
LONG=(--steps 400 --snapshot-every 100 --threads "$THREADS" --no-progress)
SET2=(--synthetic-seed 1 --synthetic-bias mild)
# the pre-registered comparison: its sets, budget (chosen on val by part budget), variant (part variant), seeds
STILL=(--synthetic-val-per-class 10)
PAN=(--synthetic-camera pan --synthetic-val-per-class 10)
read -r -a PAIRED_SEEDS <<< "${PAIRED_SEEDS:-0 1 2 3 4 5}"
FEW_SEEDS=()        # --seeds-of for parts still and pan: oracle, be, fame at the first 3 seeds
if [ "${ALL_SEEDS:-0}" != 1 ]; then
    few="$(IFS=,; echo "${PAIRED_SEEDS[*]:0:3}")"
    FEW_SEEDS=(--seeds-of "oracle=$few" "be=$few" "fame=$few")
fi
mkdir -p "$OUT"
# each set's fitted flow as the study keeps it (OUT/flows/SET.pt, tracked in docs/results/cpu_study):
# given as --flow where it is there, so a clone trains with the very flow its recorded runs used
# (compared by its weights' hash, not its path); elsewhere the set's own fitted flow, fitted once
if [ -f "$OUT/flows/still.pt" ]; then STILL+=(--flow "$OUT/flows/still.pt"); fi
if [ -f "$OUT/flows/pan.pt" ]; then PAN+=(--flow "$OUT/flows/pan.pt"); fi
CHOOSE=("$PY" "$(dirname "$0")/choose.py")

choice() {  # choice NAME FIELD ENV: FIELD of OUT/paired_still/NAME_choice.json (a part's pre-registered choice)
    local file="$OUT/paired_still/$1_choice.json"
    if [ ! -f "$file" ]; then echo "no $file yet: run part $1 first (or set $3)" >&2; return 2; fi
    "$PY" -c "import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print('none' if v is None else v)" \
        "$file" "$2"
}

set_choices() {  # STEPS and BEST: the environment's PAIRED_STEPS / BEST, else the parts' choices
    STEPS="${PAIRED_STEPS:-}"
    if [ -z "$STEPS" ]; then STEPS="$(choice budget step PAIRED_STEPS)" || exit 2; fi
    if [ "$STEPS" = none ]; then
        echo "the oracle never beat MoCo by 10 R@1 on validation within 800 steps: the pre-registered comparison" \
             "stops here (docs/RESULTS.md)" >&2; exit 3
    fi
    PAIRED=(--steps "$STEPS" --snapshot-every 100 --threads "$THREADS" --no-progress)
    if [ "$1" = best ]; then
        BEST="${BEST:-}"
        if [ -z "$BEST" ]; then BEST="$(choice variant arm BEST)" || exit 2; fi
    fi
}

reuse() {  # reuse FROM TO: a finished run with the same settings (or its record), copied instead of trained again
    if { [ -f "$1/checkpoint.pt" ] || [ -f "$1/record.json" ]; } && [ ! -e "$2" ]; then
        mkdir -p "$(dirname "$2")" && cp -a "$1" "$2"
    fi
}

link() {  # link FROM TO: a finished run (or a mirror) hard-linked in: its files are replaced by rename, never
    # rewritten in place, so the two folders share nothing a later write could change in both
    if [ -e "$1" ] && [ ! -e "$2" ]; then mkdir -p "$(dirname "$2")" && cp -al "$1" "$2"; fi
}

run() {  # run NAME ARGS...: one s2vc command, its log in $OUT/NAME.log
    local name=$1; shift
    echo "$(date +%H:%M:%S) $name: s2vc $*"
    "$PY" -m s2vc.cli "$@" >>"$OUT/$name.log" 2>&1 || { echo "$name failed, see $OUT/$name.log"; exit 1; }
}

for part in $PARTS; do
    case $part in
    starts)
        for mode in moco s2vc tfd; do
            run starts pretrain --mode "$mode" --max-steps 0 --seed 0 --frames 16 --stride 2 --batch-size 16 \
                --queue 64 --no-progress --out "$OUT/starts/$mode"
        done ;;
    budget)
        run budget reproduce --arms moco oracle --seeds 0 1 2 --steps 800 --snapshot-every 100 --split val \
            --threads "$THREADS" --no-progress "${STILL[@]}" --out "$OUT/paired_still"
        # kept apart: the variant part writes its own results_val.*
        cp "$OUT/paired_still/results_val.json" "$OUT/paired_still/budget_val.json"
        cp "$OUT/paired_still/results_val.md" "$OUT/paired_still/budget_val.md"
        "${CHOOSE[@]}" budget "$OUT/paired_still/budget_val.json" --out "$OUT/paired_still/budget_choice.json" \
            | tee "$OUT/paired_still/budget_choice.md" || exit 2 ;;
    variant)
        set_choices steps
        for set_name in still pan; do
            if [ "$set_name" = still ]; then set_flags=("${STILL[@]}"); else set_flags=("${PAN[@]}"); fi
            run variant reproduce --arms s2vc-keys s2vc-dynamic s2vc-topk --seeds 0 1 2 "${PAIRED[@]}" --split val \
                "${set_flags[@]}" --out "$OUT/paired_$set_name"
            cp "$OUT/paired_$set_name/results_val.json" "$OUT/paired_$set_name/variant_val.json"
            cp "$OUT/paired_$set_name/results_val.md" "$OUT/paired_$set_name/variant_val.md"
        done
        "${CHOOSE[@]}" variant "$OUT/paired_still/variant_val.json" "$OUT/paired_pan/variant_val.json" \
            --step "$STEPS" --out "$OUT/paired_still/variant_choice.json" | tee "$OUT/paired_still/variant_choice.md" \
            || exit 2 ;;
    still|pan)
        set_choices best
        if [ "$part" = still ]; then set_flags=("${STILL[@]}"); else set_flags=("${PAN[@]}"); fi
        run "$part" reproduce --arms moco s2vc-keys tfd-keys fame be oracle "$BEST" --best "$BEST" \
            --seeds "${PAIRED_SEEDS[@]}" "${FEW_SEEDS[@]}" "${PAIRED[@]}" --split test "${set_flags[@]}" --out "$OUT/paired_$part" ;;
    keyed)
        set_choices steps
        for set_name in ${KEYED_SETS:-still pan}; do     # every name checked before any set trains
            case $set_name in still|pan) ;; *) echo "KEYED_SETS: $set_name is not a set (still pan)" >&2; exit 2;; esac
        done
        for set_name in ${KEYED_SETS:-still pan}; do
            if [ "$set_name" = still ]; then set_flags=("${STILL[@]}"); else set_flags=("${PAN[@]}"); fi
            from="$OUT/paired_$set_name"; to="$OUT/keyed_$set_name"
            if [ ! -f "$from/results.json" ]; then   # only finished runs are linked, never one still training
                echo "no $from/results.json yet: run part $set_name first" >&2; exit 2
            fi
            for mode in s2vc tfd; do   # the linked runs name these mirrors: they must be the same keys here
                if [ ! -f "$from/mirrors/$mode/manifest.json" ]; then
                    echo "no $from/mirrors/$mode here (mirrors are not committed): run part $set_name first in this" \
                         "clone (it makes them again and reuses every recorded run)" >&2; exit 2
                fi
            done
            for arm in s2vc-keys tfd-keys s2vc-topk; do
                for seed in "${PAIRED_SEEDS[@]}"; do link "$from/runs/${arm}_seed$seed" "$to/runs/${arm}_seed$seed"; done
            done
            for mode in s2vc tfd; do link "$from/mirrors/$mode" "$to/mirrors/$mode"; done
            run "keyed_$set_name" reproduce --arms s2vc-keys tfd-keys s2vc-topk s2vc-topk-keys --best s2vc-topk-keys \
                --seeds "${PAIRED_SEEDS[@]}" "${PAIRED[@]}" --split test "${set_flags[@]}" --out "$to"
        done ;;
    main)
        run main reproduce --arms moco oracle tfd be fame s2vc-keys --seeds 0 1 2 "${BUDGET[@]}" --out "$OUT/main"
        run main_s2vc reproduce --arms s2vc --seeds 0 "${BUDGET[@]}" --out "$OUT/main_s2vc" ;;
    set2)
        # snapshots every 100 steps (the curves have 3 points): the evaluation is a third of a run
        run set2 reproduce --arms moco oracle tfd s2vc be fame --seeds 0 --steps 200 --snapshot-every 100 \
            --threads "$THREADS" --no-progress "${SET2[@]}" --out "$OUT/set2"
        # MoCo's seeds 1 and 2 there: the spread S²VC's three seeds (part detail) are read against
        run set2 reproduce --arms moco --seeds 1 2 --steps 200 --snapshot-every 100 \
            --threads "$THREADS" --no-progress "${SET2[@]}" --out "$OUT/set2_moco" ;;
    keybands)
        run keybands eval key-bands --no-progress --out "$OUT/keybands/main.json"
        run keybands eval key-bands --no-progress "${SET2[@]}" --out "$OUT/keybands/set2.json"
        run keybands eval key-bands --arms s2vc --detail dynamic --no-progress --out "$OUT/keybands/main_dynamic.json"
        run keybands eval key-bands --arms s2vc --detail dynamic --no-progress "${SET2[@]}" \
            --out "$OUT/keybands/set2_dynamic.json" ;;
    preserve)
        run preserve ablate preserve --values 0.05 0.1 0.4 0.6 --seeds 0 "${LONG[@]}" --out "$OUT/preserve" ;;
    strategy)
        reuse "$OUT/main_s2vc/runs/s2vc_seed0" "$OUT/strategy/runs/strategy_zero_seed0"
        run strategy ablate strategy --values zero noise shuffle_clip shuffle_frame topk --seeds 0 "${LONG[@]}" \
            --out "$OUT/strategy" ;;
    detail)
        reuse "$OUT/main_s2vc/runs/s2vc_seed0" "$OUT/detail/runs/detail_keep_seed0"
        reuse "$OUT/set2/runs/s2vc_seed0" "$OUT/detail_set2/runs/detail_keep_seed0"
        run detail ablate detail --values keep dynamic --seeds 0 "${BUDGET[@]}" --out "$OUT/detail"
        reuse "$OUT/detail/runs/detail_dynamic_seed0" "$OUT/detail3/runs/detail_dynamic_seed0"
        run detail ablate detail --values dynamic --seeds 0 1 2 "${BUDGET[@]}" --out "$OUT/detail3"
        run detail ablate detail --values keep dynamic --seeds 0 1 2 --steps 200 --snapshot-every 100 \
            --threads "$THREADS" --no-progress "${SET2[@]}" --out "$OUT/detail_set2" ;;
    longer)
        run longer reproduce --arms moco oracle tfd be fame s2vc-keys --seeds 0 1 2 "${LONG[@]}" --out "$OUT/main" ;;
    flow64)
        # the fitted flow's recipe (training/flow/fitted.py) at 64x64, from scratch, 4x its steps: first
        # (as measured first in docs/RESULTS.md) on train-flow's default crops of 35-100% of the frame,
        # then on whole frames as the recipe (flow64w); --resume: a killed fit continues, a finished
        # one only recalibrates
        for variant in "flow64 0.35" "flow64w 1"; do
            set -- $variant
            run flow64 train-flow --dataset synthetic --resolution 64 --high-blocks 4 \
                --low-blocks 6 --fc-blocks 6 --hidden 32 --fc-hidden 64 --epochs 12 --steps-per-epoch 100 --batch-size 16 \
                --lr 1e-3 --warmup-steps 50 --decode-size 64 --frames-per-video 32 --holdout 0.1 --frames 16 --seed 0 \
                --crop-scale "$2" 1.0 --threads "$THREADS" --no-progress --resume --out "$OUT/$1/flow64.pt"
            run flow64 reproduce --arms s2vc-keys --seeds 0 1 2 "${BUDGET[@]}" --flow "$OUT/$1/flow64.pt" \
                --out "$OUT/$1"
            run flow64 eval key-bands --arms s2vc --flow "$OUT/$1/flow64.pt" --no-progress \
                --out "$OUT/keybands/main_$1.json"
        done ;;
    *)
        echo "unknown part $part (starts budget variant still pan; follow-up: keyed; history: main set2 keybands preserve strategy" \
             "detail longer flow64)"; exit 2 ;;
    esac
done
echo "$(date +%H:%M:%S) done: tables in $OUT/*/results.md"
