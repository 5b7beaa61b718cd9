"""SIGMA pretraining: Sinkhorn-guided masked video modelling (ECCV 2024), VideoMAE style.

One process (a CPU, or one GPU):
    python run_sigma_pretraining.py --data_path VIDEO_ROOT --data_path_csv train.csv \\
        --model pretrain_videomae_base_patch16_224 --target_type mlp --output_dir output/k400_mlp

One node with 8 GPUs:
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=8 run_sigma_pretraining.py \\
        --data_path VIDEO_ROOT --data_path_csv train.csv --batch_size 32 --output_dir output/k400_mlp

Several nodes: the same torchrun on every node, meeting at the first node,
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv_id=JOB_ID --rdzv_backend=c10d \\
        --rdzv_endpoint=FIRST_NODE:29500 run_sigma_pretraining.py ...
or under SLURM `sbatch scripts/slurm_pretrain.sbatch ...`, which runs `srun torchrun`.

The published configurations are in scripts/pretrain_*.sh; PRETRAIN.md says what
their logs show. The global batch is --batch_size x --num_sample x processes;
--lr, --min_lr and --warmup_lr are given per 256 clips and scaled to it. A run
restarted with the same --output_dir resumes from its newest complete checkpoint.
"""
import argparse
import os
import time

from torch.nn.parallel import DistributedDataParallel

import dist_utils
import training_state
import utils
from datasets import build_pretraining_dataset, check_bad_fraction, training_loader
from dino_teacher import DINO_TEACHERS
from engine_for_pretraining import train_one_epoch
from masking_generator import MASK_GENERATORS
from modeling_pretrain import (ARCHITECTURE_ARGS, LOSS_FUNCS, MODELS, TARGET_TYPES, create_pretrain_model,
                               pretrain_model_config)
from optim_factory import create_optimizer, scaled_schedules

BoolFlag = utils.BoolFlag


def get_args_parser():
    parser = argparse.ArgumentParser("SIGMA pretraining", description=__doc__,
                                     formatter_class=utils.HelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data_path", required=True,
                      help="clip list (`path label` per line, VideoMAE convention) or, with --data_path_csv, "
                           "the folder the list's paths are relative to (SIGMA convention)")
    data.add_argument("--data_path_csv", default=None, help="clip list whose paths are relative to --data_path")
    data.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    data.add_argument("--sampling_rate", type=int, default=4,
                      help="stride between sampled frames: 4 for Kinetics-400, 2 for SSv2 (shorter videos)")
    data.add_argument("--input_size", type=int, default=224, help="side of the square frames fed to the model")
    data.add_argument("--augmentation", default="multi_scale_crop", choices=["multi_scale_crop", "resize"],
                      help="multi-scale corner/centre crops (all published runs) or a plain resize")
    data.add_argument("--gray_scale_prob", type=float, default=0.0, help="probability of a grayscale clip")
    data.add_argument("--num_sample", type=int, default=1,
                      help="clips cut from each decoded video (repeated augmentation: decoding is the cost)")
    data.add_argument("--max_bad_fraction", type=float, default=0.05,
                      help="stop when more than this share of sampled videos cannot be decoded")
    data.add_argument("--num_workers", type=int, default=10, help="data loader processes per GPU")
    data.add_argument("--pin_mem", action=BoolFlag, default=True,
                      help="page-locked batches for faster copies to the GPU")

    masking = parser.add_argument_group("masking")
    masking.add_argument("--mask_type", default="tube", choices=sorted(MASK_GENERATORS),
                         help="tube: the same spatial positions in every frame, so a masked patch cannot be "
                              "copied from a neighbouring frame; random: anywhere")
    masking.add_argument("--mask_ratio", type=float, default=0.9,
                         help="share of tokens hidden from the encoder (video is redundant, so 0.9)")

    model = parser.add_argument_group("model and objective")
    model.add_argument("--model", default="pretrain_videomae_base_patch16_224", choices=sorted(MODELS),
                       metavar="NAME", help="pretrain_videomae_SIZE_patch16_224, SIZE: tiny, small, base, large, huge")
    model.add_argument("--decoder_depth", type=int, default=4, help="decoder blocks")
    model.add_argument("--drop_path", type=float, default=0.0, help="stochastic depth rate")
    model.add_argument("--target_type", default="mlp", choices=TARGET_TYPES,
                       help="pixel: VideoMAE; mlp: SIGMA with a learned projection; dino_v1/dino_v2: SIGMA "
                            "with a frozen DINO projection")
    model.add_argument("--loss_func", default="SWAV", choices=LOSS_FUNCS,
                       help="SWAV: swapped prediction of Sinkhorn assignments; L2: regression")
    model.add_argument("--normlize_target", action=BoolFlag, default=True,
                       help="normalise every target tube by its own mean and std (sic, the published name)")
    model.add_argument("--distillation_teacher", default="dino_b", choices=sorted({t for _, t in DINO_TEACHERS}),
                       help="DINO ViT-S/B/L for the dino targets (dino_l: dino_v2 only)")
    model.add_argument("--teacher_weights", default=None,
                       help="local file with the DINO teacher's weights (never downloaded during training)")
    model.add_argument("--num_prototypes", type=int, default=3000, help="prototypes K of the SWAV loss")
    model.add_argument("--sinkhorn_eps", type=float, default=0.05,
                       help="Sinkhorn entropy regularisation: smaller is closer to hard assignments")
    model.add_argument("--sinkhorn_iterations", type=int, default=10, help="Sinkhorn-Knopp iterations")
    model.add_argument("--soft_targets", action=BoolFlag, default=False,
                       help="predict the full Sinkhorn distribution instead of its argmax (published: argmax)")
    model.add_argument("--queue_length", type=int, default=0,
                       help="masked tubes per process kept from past steps, per side, that Sinkhorn balances together "
                            "with the batch (SwAV's queue for small batches; not saved, so a resumed run refills it; "
                            "published: 0)")
    model.add_argument("--freeze_prototypes_niters", type=int, default=0,
                       help="steps at the start during which the prototypes are not updated (SwAV's remedy for "
                            "prototypes that chase the first, uninformative assignments; published: 0)")
    model.add_argument("--freeze_projection_niters", type=int, default=0,
                       help="steps at the start during which the MLP projection phi is not updated, so the video "
                            "model first learns the clusters of a fixed random projection (published: 0)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch_size", type=int, default=16, help="clips per process and step")
    optim.add_argument("--epochs", type=int, default=801, help="the published scripts say 801 for 800")
    optim.add_argument("--steps_per_epoch", type=int, default=None,
                       help="cap on the steps of an epoch, for quick runs (default: the whole clip list)")
    optim.add_argument("--opt", default="adamw", choices=["adamw"], help="optimiser")
    optim.add_argument("--opt_betas", type=float, nargs=2, default=[0.9, 0.95], metavar=("BETA1", "BETA2"),
                       help="AdamW betas; 0.95 (not 0.999) adapts faster to the changing targets, as in MAE")
    optim.add_argument("--opt_eps", type=float, default=1e-8, help="AdamW epsilon")
    optim.add_argument("--weight_decay", type=float, default=0.05, help="AdamW weight decay")
    optim.add_argument("--weight_decay_end", type=float, default=None,
                       help="final weight decay of a cosine schedule (default: --weight_decay, constant)")
    optim.add_argument("--clip_grad", type=float, default=None, help="gradient norm clip (default: none)")
    optim.add_argument("--lr", type=float, default=1.5e-4, help="peak learning rate per 256 clips")
    optim.add_argument("--min_lr", type=float, default=1e-5, help="final learning rate per 256 clips")
    optim.add_argument("--warmup_lr", type=float, default=0.0,
                       help="learning rate per 256 clips at the first step; the published code accepted 1e-6 "
                            "but never used it, its warm-up starts at 0")
    optim.add_argument("--warmup_epochs", type=int, default=40, help="epochs of linear lr warm-up")
    optim.add_argument("--warmup_steps", type=int, default=-1, help="steps of warm-up; overrides --warmup_epochs")
    optim.add_argument("--precision", default=None, choices=sorted(utils.AUTOCAST_DTYPES),
                       help="autocast dtype (default: bf16 on a GPU that has it, fp16 with a loss scaler on "
                            "older GPUs, fp32 on CPU)")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default="", help="checkpoints, args.json and log.txt (empty: save nothing)")
    run.add_argument("--log_dir", default=None, help="TensorBoard folder (default: OUTPUT_DIR/tensorboard)")
    run.add_argument("--save_ckpt_freq", type=int, default=20,
                     help="keep checkpoint-EPOCH.pth every N epochs; checkpoint-latest.pth is written every epoch")
    run.add_argument("--resume", default="", help="checkpoint to start from: a path or hf://OWNER/REPO/FILE")
    run.add_argument("--auto_resume", action=BoolFlag, default=True,
                     help="resume from the newest complete checkpoint in --output_dir (before --resume)")
    run.add_argument("--seed", type=int, default=0, help="seeds the model init, data order and augmentations")
    run.add_argument("--print_freq", type=int, default=10,
                     help="steps between log lines; also how often losses are read from the GPU and checked")
    run.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    run.add_argument("--dist_timeout", type=float, default=30,
                     help="minutes a collective may wait for a rank that neither progresses nor exits")
    run.add_argument("--run_name", default="sigma_pretrain", help="run name in Weights & Biases")
    run.add_argument("--wandb", action=BoolFlag, default=False, help="also log to Weights & Biases")
    run.add_argument("--wandb_project", default="SIGMA", help="Weights & Biases project")
    run.add_argument("--local-rank", "--local_rank", type=int, default=None, dest="local_rank",
                     help="passed by the deprecated torch.distributed.launch; LOCAL_RANK from the environment "
                          "is what is used")
    return parser


def parse_args(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    positive = ["batch_size", "epochs", "num_frames", "sampling_rate", "input_size", "num_sample",
                "num_prototypes", "sinkhorn_iterations", "save_ckpt_freq", "print_freq", "decoder_depth",
                "steps_per_epoch"]
    for name in positive:
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"argument --{name}: must be positive, got {value}")
    for name in ["num_workers", "warmup_epochs", "weight_decay", "lr", "min_lr", "warmup_lr", "drop_path",
                 "freeze_prototypes_niters", "freeze_projection_niters", "queue_length"]:
        if getattr(args, name) < 0:
            parser.error(f"argument --{name}: must not be negative, got {getattr(args, name)}")
    if not 0 <= args.mask_ratio < 1:
        parser.error(f"argument --mask_ratio: must be in [0, 1), got {args.mask_ratio}")
    for name in ["gray_scale_prob", "max_bad_fraction"]:
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"argument --{name}: must be in [0, 1], got {getattr(args, name)}")
    if args.sinkhorn_eps <= 0:
        parser.error(f"argument --sinkhorn_eps: must be positive, got {args.sinkhorn_eps}")
    if args.clip_grad is not None and args.clip_grad <= 0:
        parser.error(f"argument --clip_grad: must be positive, got {args.clip_grad}")
    if args.local_rank is not None and args.local_rank != int(os.environ.get("LOCAL_RANK", args.local_rank)):
        parser.error(f"argument --local-rank: {args.local_rank} disagrees with "
                     f"LOCAL_RANK={os.environ['LOCAL_RANK']}")
    return args


def main(args):
    dist_utils.launch(train, args, "pretraining")


def train(args, env):
    device = env.device
    utils.start_run(args, env, written="TensorBoard")

    path, checkpoint, own_run = training_state.find_start(args, env)
    if checkpoint is not None:
        if not own_run and checkpoint.get("args") is not None:
            print(f"settings of {path}:\n{utils.format_args(checkpoint['args'], repr)}")
        training_state.adopt_architecture(checkpoint.get("args"), args, ARCHITECTURE_ARGS)

    dist_utils.seed_everything(args.seed)  # the same initial weights on every rank
    name, kwargs = pretrain_model_config(args)
    model = create_pretrain_model(name, teacher_weights=args.teacher_weights, **kwargs)
    args.window_size = tuple(model.encoder.patch_embed.grid_size)

    dataset = build_pretraining_dataset(args)
    loader = training_loader(dataset, args, env)
    steps_per_epoch = min(len(loader), args.steps_per_epoch or len(loader))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} clips are fewer than one step of --batch_size {args.batch_size} on "
                         f"{env.world_size} process(es)")
    args.num_training_steps_per_epoch = steps_per_epoch
    args.global_batch_size = args.batch_size * args.num_sample * env.world_size
    lr_schedule, wd_schedule = scaled_schedules(
        args, steps_per_epoch, f" = {args.batch_size} per process x {args.num_sample} per video x {env.world_size} "
                               "process(es)", unit="clips")

    model.to(device)
    model_without_ddp = model
    if env.world_size > 1:
        # No device_ids: DDP would move the CPU mask to the GPU; broadcast_buffers off:
        # the model's buffers are fixed tables.
        model = DistributedDataParallel(model, broadcast_buffers=False)
    optimizer = create_optimizer(args, model_without_ddp, device)
    scaler = utils.grad_scaler(args.precision, device)

    start_epoch = 0
    if checkpoint is not None:
        start_epoch = training_state.restore(checkpoint, path, model_without_ddp, optimizer, scaler, own_run)
        training_state.report_changed_settings(checkpoint.get("args"), args)

    print(utils.describe_run(args))
    n_parameters = sum(p.numel() for p in model_without_ddp.parameters() if p.requires_grad)
    print(f"model {args.model}: {n_parameters / 1e6:.2f}M trained parameters, token grid {args.window_size}, "
          f"precision {args.precision}, {steps_per_epoch} steps per epoch, device {device}")
    scalar_logger = utils.start_records(args, env)

    frozen = frozen_at_start(model_without_ddp, args)
    start_time = time.time()
    for epoch in range(start_epoch, args.epochs):
        # Everything random in an epoch derives from (seed, rank, epoch): data order,
        # augmentations, masks.
        loader.sampler.set_epoch(epoch)
        dist_utils.seed_epoch(args.seed, env.rank, epoch, loader.generator)
        stats = train_one_epoch(
            model, loader, optimizer, scaler, epoch=epoch, epochs=args.epochs,
            start_step=epoch * steps_per_epoch, num_steps=steps_per_epoch, lr_schedule=lr_schedule,
            wd_schedule=wd_schedule, device=device, precision=args.precision, clip_grad=args.clip_grad,
            print_freq=args.print_freq, scalar_logger=scalar_logger, frozen=frozen)
        if env.is_main and args.output_dir:
            numbered = (epoch + 1) % args.save_ckpt_freq == 0 or epoch + 1 == args.epochs
            state = dict(model=model_without_ddp.state_dict(), optimizer=optimizer.state_dict(), epoch=epoch,
                         scaler=scaler.state_dict(), args=args, step=(epoch + 1) * steps_per_epoch)
            training_state.save(args.output_dir, state, numbered)
        utils.log_epoch({**{f"train_{k}": v for k, v in stats.items()}, "epoch": epoch, "n_parameters": n_parameters},
                        args, env)
        # After saving, so the epoch is kept; the counts are global, so every rank decides alike.
        check_bad_fraction(stats["bad_videos"], stats["clips"] // args.num_sample, args.max_bad_fraction,
                           where=f"in epoch {epoch}")

    minutes = (time.time() - start_time) / 60
    if start_epoch < args.epochs:
        print(f"pretraining done: epochs {start_epoch}-{args.epochs - 1} in {minutes:.1f} min")
    else:
        print(f"nothing to train: the checkpoint has finished all {args.epochs} epochs")
    if args.output_dir:
        print(f"checkpoints and log.txt in {args.output_dir}")
    if scalar_logger is not None:
        scalar_logger.close()


def frozen_at_start(model, args):
    """(parameters, until_step) pairs for the engine: the prototypes and phi held still at the start."""
    frozen = []
    if args.freeze_prototypes_niters and args.loss_func == "SWAV":
        frozen.append(([model.prototypes], args.freeze_prototypes_niters))
    if args.freeze_projection_niters and args.target_type == "mlp":
        frozen.append((list(model.head.parameters()), args.freeze_projection_niters))
    return frozen


if __name__ == "__main__":
    main(parse_args())
