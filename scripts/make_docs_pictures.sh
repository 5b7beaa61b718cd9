#!/usr/bin/env bash
# Makes the pictures of PRETRAIN.md ("Looking at what a model predicts") from a finished demo:
#
#   bash scripts/make_docs_pictures.sh DEMO_DIR        # e.g. demo_output, after scripts/demo.sh
#
# Reads DEMO_DIR/pretrain_videomae_pixel and DEMO_DIR/pretrain_sigma_mlp (their
# checkpoint-latest.pth and args.json) and the first video of DATA/val.csv
# (DATA [DEMO_DIR/data]), and writes into docs/pictures/:
#   reconstruction.png   run_videomae_vis.py on the VideoMAE (pixel) checkpoint
#   prototype_maps.png   run_videomae_vis.py on the SIGMA checkpoint
#   prototype.png        visualize_prototypes.py: the SIGMA prototype used most on that video
#   masks.png            visualize_masks.py: the demo's masks over that video
#   augmentations.png    visualize_augmentations.py: the demo's pretraining augmentation and
#                        the fine-tuning one at the demo's clip size
# Every geometry (frame side, frames, patch, tubelet) comes from the checkpoints, so the
# pictures follow the demo's settings, whatever they are. The full outputs of each tool
# stay in DEMO_DIR/pictures.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    [ $# -eq 1 ] && exit 0 || exit 2
fi
DEMO_DIR=$1
DATA=${DATA:-${DEMO_DIR}/data}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "${PYTHON}" ] || PYTHON=python3
PIXEL="${DEMO_DIR}/pretrain_videomae_pixel"
SIGMA="${DEMO_DIR}/pretrain_sigma_mlp"
for needed in "${PIXEL}/checkpoint-latest.pth" "${SIGMA}/checkpoint-latest.pth" "${SIGMA}/args.json" \
              "${DATA}/val.csv"; do
    [ -f "${needed}" ] || { echo "make_docs_pictures.sh: ${needed} is missing: run scripts/demo.sh first" >&2; exit 2; }
done
VIDEO="${DATA}/$(head -n 1 "${DATA}/val.csv" | cut -d ' ' -f 1)"
WORK="${DEMO_DIR}/pictures"
DOCS=docs/pictures
mkdir -p "${WORK}" "${DOCS}"

# The run's clip settings as flags; the token grid gives patch and tubelet.
read -r -a CLIP < <("${PYTHON}" -c '
import json, sys
print("--num_frames {num_frames} --sampling_rate {sampling_rate} --input_size {input_size} --augmentation "
      "{augmentation} --gray_scale_prob {gray_scale_prob}".format(**json.load(open(sys.argv[1]))))
' "${SIGMA}/args.json")
read -r -a MASKS < <("${PYTHON}" -c '
import json, sys
a = json.load(open(sys.argv[1]))
t, h, w = a["window_size"]
print("--window {},{},{} --patch_size {} --tubelet_size {} --sampling_rate {} --mask_type {} --mask_ratio {}".format(
    t, h, w, a["input_size"] // h, a["num_frames"] // t, a["sampling_rate"], a["mask_type"], a["mask_ratio"]))
' "${SIGMA}/args.json")

"${PYTHON}" run_videomae_vis.py "${VIDEO}" "${WORK}/reconstruction" "${PIXEL}/checkpoint-latest.pth"
cp "${WORK}/reconstruction/grid.png" "${DOCS}/reconstruction.png"
"${PYTHON}" run_videomae_vis.py "${VIDEO}" "${WORK}/sigma" "${SIGMA}/checkpoint-latest.pth"
cp "${WORK}/sigma/grid.png" "${DOCS}/prototype_maps.png"
# Into the same folder: its index.html and the maps' predictions.html link each other.
rm -f "${WORK}"/sigma/prototype_*.png
"${PYTHON}" visualize_prototypes.py --finetune "${SIGMA}/checkpoint-latest.pth" --video "${VIDEO}" \
    --output_dir "${WORK}/sigma" --most_used 1 --top 10
cp "$(ls "${WORK}"/sigma/prototype_*.png | head -n 1)" "${DOCS}/prototype.png"
"${PYTHON}" visualize_masks.py "${DOCS}/masks.png" --video "${VIDEO}" "${MASKS[@]}" --draws 2
"${PYTHON}" visualize_augmentations.py "${DOCS}/augmentations.png" --video "${VIDEO}" "${CLIP[@]}" --draws 2 \
    --data_set custom
echo "pictures in ${DOCS}: $(ls "${DOCS}" | tr '\n' ' ')"
