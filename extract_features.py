"""Features of every video of a clip list from a pretrained (or fine-tuned) encoder, written to one file.

    python extract_features.py --data_path LIST --model vit_base_patch16_224 \\
        --finetune hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth --output features.pt
    python extract_features.py ... --tokens          # per-token features instead of pooled ones
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=8 extract_features.py ...   # spread over GPUs

LIST is a clip list (`path label` per line; with --data_path_csv LIST, --data_path is
the video root). Every video is read once as a validation view: the central clip
(--num_frames at --sampling_rate; one frame per segment for --data_set SSV2), short
side resized to --short_side_size, the centre --input_size crop.

The file (torch.save; load it with checkpoint.load_checkpoint or torch.load) holds
    features  float32 (N, D) pooled, or (N, T' * H' * W', D) tokens ordered (t, h, w)
    labels    int64 (N,)          paths  N video paths, in list order
    grid      (T', H', W')        bad_paths  videos that could not be decoded (not in N)
    pooling   how the features were made          args  the settings of this run
"""
import argparse
import os
import time

import dist_utils
import utils
from checkpoint import checkpoint_state_dict, load_checkpoint, save_checkpoint_atomic
from clip_lists import read_clip_list, resolve_clip_list
from datasets import CUSTOM_DATASET, DATASET_NUM_CLASSES
from engine_for_finetuning import eval_loader, eval_view_dataset, gather_outputs, run_inference
from modeling_finetune import MODELS, create_classifier, load_pretrained_encoder

BoolFlag = utils.BoolFlag


def add_encoder_args(parser):
    """The flags that choose an encoder and how clips are read, shared with eval_knn.py."""
    group = parser.add_argument_group("encoder and clips")
    group.add_argument("--model", default="vit_base_patch16_224", choices=sorted(MODELS))
    group.add_argument("--finetune", default="",
                       help="checkpoint whose encoder to use: pretraining or fine-tuned, a path or "
                            "hf://OWNER/REPO/FILE; none: a randomly initialised encoder (a baseline)")
    group.add_argument("--use_mean_pooling", action=BoolFlag, default=False,
                       help="off: the encoder as pretrained, tokens after its final norm, mean-pooled; on: the "
                            "input of a fine-tuned classifier's head (fc_norm of the mean of the last block's "
                            "tokens), for fine-tuned checkpoints")
    group.add_argument("--tubelet_size", type=int, default=2, help="frames per token")
    group.add_argument("--data_set", default=CUSTOM_DATASET, choices=[*DATASET_NUM_CLASSES, CUSTOM_DATASET],
                       help="SSV2 samples one frame per segment, all others a clip at --sampling_rate")
    group.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    group.add_argument("--sampling_rate", type=int, default=4, help="stride between frames")
    group.add_argument("--input_size", type=int, default=224, help="side of the square frames fed to the model")
    group.add_argument("--short_side_size", type=int, default=224, help="short side after resizing")
    group.add_argument("--max_bad_fraction", type=float, default=0.01,
                       help="stop when more than this share of the videos cannot be decoded")

    run = parser.add_argument_group("run")
    run.add_argument("--batch_size", type=int, default=32, help="clips per process and forward pass")
    run.add_argument("--num_workers", type=int, default=10, help="data loader processes per GPU")
    run.add_argument("--pin_mem", action=BoolFlag, default=True, help="page-locked batches for faster copies")
    run.add_argument("--precision", default=None, choices=sorted(utils.AUTOCAST_DTYPES),
                     help="autocast dtype (default: bf16 on a GPU that has it, fp16 on older GPUs, fp32 on CPU)")
    run.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    run.add_argument("--seed", type=int, default=0, help="seeds the weights of a randomly initialised encoder")
    run.add_argument("--dist_timeout", type=float, default=30, help="minutes a collective may wait")
    return parser


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA feature extraction", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True, help="clip list, or with --data_path_csv the video root")
    parser.add_argument("--data_path_csv", default=None, help="clip list whose paths are relative to --data_path")
    parser.add_argument("--output", required=True, help="file to write (.pt)")
    parser.add_argument("--tokens", action=BoolFlag, default=False,
                        help="keep every token's feature (N x T'H'W' x D floats: large) instead of their mean")
    return add_encoder_args(parser)


def build_encoder(args):
    """The encoder of --finetune (random without it: seeded by --seed) as a headless classifier in eval mode."""
    dist_utils.seed_everything(args.seed)
    encoder = create_classifier(args, num_classes=0)
    if args.finetune:
        # A classifier's head (or SIGMA-MLP's projection, also `head.*`) plays no part in the features.
        state = {key: value for key, value in checkpoint_state_dict(load_checkpoint(args.finetune)).items()
                 if not key.startswith("head.")}
        report = load_pretrained_encoder(encoder, state)
        print(f"loaded the encoder of {args.finetune}; not in the checkpoint: "
              f"{', '.join(report['missing']) or 'nothing'}; {len(report['unexpected'])} other tensors left out")
    else:
        print("no --finetune: the encoder is randomly initialised")
    return encoder.eval()


def compute_features(encoder, clips, args, env, tokens=False):
    """Features of every clip [(path, label)], spread over the ranks and gathered on every rank.

    Returns dict: features float32 (n, D) or (n, N, D), labels int64 (n,), paths (n,),
    and bad_paths, the videos left out because they could not be decoded.
    """
    forward = encoder.forward_tokens if tokens else encoder.forward_features
    start = time.time()
    loader = eval_loader(eval_view_dataset(clips, args), args, env)
    outputs = gather_outputs(run_inference(forward, loader, env.device, args.precision), env.device)
    decoded = outputs["num_bad"] == 0
    print(f"features of {int(decoded.sum())} videos in {time.time() - start:.0f} s"
          + (f"; {int((~decoded).sum())} could not be decoded and are left out" if not decoded.all() else ""))
    return {"features": outputs["outputs"][decoded], "labels": outputs["label"][decoded],
            "paths": [clips[i][0] for i in outputs["index"][decoded].tolist()],
            "bad_paths": [clips[i][0] for i in outputs["index"][~decoded].tolist()]}


def main(args):
    dist_utils.launch(extract, args, "feature extraction")


def extract(args, env):
    args.precision = utils.resolve_precision(args.precision, env.device)
    print(utils.describe_run(args))
    list_path, root = resolve_clip_list(args.data_path, args.data_path_csv)
    clips = read_clip_list(list_path, root)
    encoder = build_encoder(args).to(env.device)
    result = compute_features(encoder, clips, args, env, tokens=args.tokens)
    result.update(grid=tuple(encoder.patch_embed.grid_size), args=vars(args),
                  pooling="tokens" if args.tokens else "fc_norm of the mean token" if args.use_mean_pooling
                  else "mean of the final-norm tokens")
    if env.is_main:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        save_checkpoint_atomic(result, args.output)
        print(f"wrote {tuple(result['features'].shape)} features ({result['pooling']}) of {list_path} to {args.output}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
