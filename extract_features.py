"""Features of every video of a clip list from a pretrained (or fine-tuned) encoder, written to one file.

    python extract_features.py --data_path LIST --model vit_base_patch16_224 \\
        --finetune hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth --output features.pt
    python extract_features.py ... --tokens          # per-token features instead of pooled ones
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=8 extract_features.py ...   # spread over GPUs

LIST is a clip list (`path label` per line; with --data_path_csv LIST, --data_path is
the video root). Every video is read once as a validation view: the central clip
(--num_frames at --sampling_rate; one frame per segment for --data_set SSV2), short
side resized to --short_side_size, the centre --input_size crop. --input_size, --num_frames,
--tubelet_size and the patch size are the --finetune checkpoint's (224, 16, 2 and 16
without one); a flag that asks for other values is refused (encoder_geometry.py).

The file (torch.save; load it with checkpoint.load_checkpoint or torch.load) holds
    features  float32 (N, D) pooled, or (N, T' * H' * W', D) tokens ordered (t, h, w)
    labels    int64 (N,)          paths  N video paths, in list order
    grid      (T', H', W')        bad_paths  videos that could not be decoded (not in N)
    pooling   how the features were made          args  the settings of this run
"""
import os
import time

import dist_utils
import user_errors
import utils
from checkpoint import checkpoint_state_dict, load_checkpoint, save_checkpoint_atomic, strip_prefixes
from clip_lists import read_clip_list, resolve_clip_list
from datasets import CUSTOM_DATASET, DATASET_NUM_CLASSES, check_bad_fraction
from encoder_geometry import adopt_geometry
from engine_for_finetuning import eval_loader, eval_view_dataset, gather_outputs, run_inference
from flags import BoolFlag, check_paths, parent_parser
from modeling_finetune import MODELS, create_classifier, load_pretrained_encoder


def encoder_parser(name, description, lists):
    """The parser of an entry point that reads every video of lists once through an encoder (this one and
    eval_knn.py): the shared flags with the defaults of such a run."""
    parser, groups = parent_parser(name, description, lists=lists, models=MODELS,
                                   data_sets=[*DATASET_NUM_CLASSES, CUSTOM_DATASET])
    parser.set_defaults(data_set=CUSTOM_DATASET, batch_size=32, max_bad_fraction=0.01, model="vit_base_patch16_224",
                        use_mean_pooling=False, input_size=None, num_frames=None, tubelet_size=None)
    return parser, groups


def get_args_parser():
    parser, groups = encoder_parser("SIGMA feature extraction", __doc__, lists="a clip list")
    run = groups["run"]
    run.add_argument("--output", required=True, help="file to write (.pt)")
    run.add_argument("--tokens", action=BoolFlag, default=False,
                     help="keep every token's feature (N x T'H'W' x D floats: large) instead of their mean")
    return parser


def build_encoder(args, clip_size_from_flags=False):
    """The encoder of --finetune (random without it: seeded by --seed) as a headless classifier in eval mode,
    in the checkpoint's geometry (encoder_geometry.adopt_geometry)."""
    checkpoint = load_checkpoint(args.finetune) if args.finetune else None
    adopt_geometry(args, checkpoint, args.finetune, clip_size_from_flags)
    if checkpoint is not None and "fc_norm.weight" in strip_prefixes(checkpoint_state_dict(checkpoint), ("backbone.",)):
        # A fine-tuned classifier has no final norm: its features are what its head reads, fc_norm of the mean token.
        args.use_mean_pooling = True
    dist_utils.seed_everything(args.seed)
    encoder = create_classifier(args, num_classes=0)
    if args.finetune:
        # A classifier's head (or SIGMA-MLP's projection, also `head.*`) plays no part in the features.
        state = {key: value for key, value in checkpoint_state_dict(checkpoint).items()
                 if not key.startswith("head.")}
        report = load_pretrained_encoder(encoder, state)
        print(f"loaded the encoder of {args.finetune}; not in the checkpoint: "
              f"{', '.join(report['missing']) or 'nothing'}; {len(report['unexpected'])} other tensors left out")
    else:
        print("no --finetune: the encoder is randomly initialised")
    return encoder.eval()


def compute_features(encoder, clips, args, env, what, tokens=False):
    """Features of every clip [(path, label)] (`what`, e.g. a list's path, names them in errors), spread
    over the ranks and gathered on every rank.

    Returns dict: features float32 (n, D) or (n, N, D), labels int64 (n,), paths (n,),
    and bad_paths, the videos left out because they could not be decoded; more than
    --max_bad_fraction of them, counted over the whole list, raise BadDataError.
    """
    forward = encoder.forward_tokens if tokens else encoder.forward_features
    start = time.time()
    loader = eval_loader(eval_view_dataset(clips, args), args, env)
    outputs = gather_outputs(run_inference(forward, loader, env.device, args.precision), env.device)
    decoded = outputs["num_bad"] == 0
    print(f"features of {int(decoded.sum())} videos in {time.time() - start:.0f} s"
          + (f"; {int((~decoded).sum())} could not be decoded and are left out" if not decoded.all() else ""))
    check_bad_fraction(int((~decoded).sum()), int(decoded.sum()), args.max_bad_fraction, where=f"of {what}")
    return {"features": outputs["outputs"][decoded], "labels": outputs["label"][decoded],
            "paths": [clips[i][0] for i in outputs["index"][decoded].tolist()],
            "bad_paths": [clips[i][0] for i in outputs["index"][~decoded].tolist()]}


def main(args):
    dist_utils.launch(extract, args, "feature extraction")


def extract(args, env):
    check_paths(args)  # an unwritable --output fails now, not after every feature is computed
    args.precision = utils.resolve_precision(args.precision, env.device)
    print(utils.describe_run(args))
    list_path, root = resolve_clip_list(args.data_path, args.data_path_csv)
    clips = read_clip_list(list_path, root)
    encoder = build_encoder(args).to(env.device)
    result = compute_features(encoder, clips, args, env, list_path, tokens=args.tokens)
    result.update(grid=tuple(encoder.patch_embed.grid_size), args=vars(args),
                  pooling="tokens" if args.tokens else "fc_norm of the mean token" if args.use_mean_pooling
                  else "mean of the final-norm tokens")
    if env.is_main:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        save_checkpoint_atomic(result, args.output)
        print(f"wrote {tuple(result['features'].shape)} features ({result['pooling']}) of {list_path} to {args.output}")


if __name__ == "__main__":
    user_errors.run_main(main, get_args_parser().parse_args())
