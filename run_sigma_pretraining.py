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
import os
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import dist_utils
import model_pictures
import preemption
import training_state
import user_errors
import utils
from datasets import build_pretraining_dataset, check_bad_fraction, training_loader
from dino_teacher import DINO_TEACHERS
from encoder_geometry import checkpoint_geometry
from engine_for_pretraining import train_one_epoch
from flags import (NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, UNIT_INTERVAL_OPEN, BoolFlag,
                   add_pretraining_augmentation_flags, check_paths, parent_parser)
from masking_generator import MASK_GENERATORS, build_masking_generator
from modeling_pretrain import (ARCHITECTURE_ARGS, LOSS_FUNCS, MODELS, TARGET_TYPES, TEACHER_PRECISIONS,
                               create_pretrain_model, pretrain_model_config)
from optim_factory import create_optimizer, scaled_schedules
from progress import LOG_EVERY_KEY, Progress


def get_args_parser():
    parser, groups = parent_parser("SIGMA pretraining", __doc__, lists="a clip list (`path label` per line)",
                                   models=MODELS, training=True)
    parser.set_defaults(
        num_sample=1, batch_size=16, max_bad_fraction=0.05, model="pretrain_videomae_base_patch16_224",
        drop_path=0.0, patch_size=16, epochs=801, opt_betas=[0.9, 0.95], lr=1.5e-4, min_lr=1e-5, warmup_lr=0.0, warmup_epochs=40,
        save_ckpt_freq=20, run_name="sigma_pretrain")
    data = groups["data"]
    add_pretraining_augmentation_flags(data)

    masking = parser.add_argument_group("masking")
    masking.add_argument("--mask_type", default="tube", choices=sorted(MASK_GENERATORS),
                         help="tube: the same spatial positions in every frame, so a masked patch cannot be "
                              "copied from a neighbouring frame; random: anywhere")
    masking.add_argument("--mask_ratio", type=UNIT_INTERVAL_OPEN, default=0.9,
                         help="share of tokens hidden from the encoder (video is redundant, so 0.9)")

    model = groups["model"]
    model.add_argument("--decoder_depth", type=POSITIVE_INT, default=4, help="decoder blocks")
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
    model.add_argument("--teacher_precision", default=None, choices=TEACHER_PRECISIONS,
                       help="compute dtype of the frozen DINO teacher, whatever --precision (default: bf16 when "
                            "--precision is bf16, else fp32)")
    model.add_argument("--num_prototypes", type=POSITIVE_INT, default=3000, help="prototypes K of the SWAV loss")
    model.add_argument("--sinkhorn_eps", type=POSITIVE_FLOAT, default=0.05,
                       help="Sinkhorn entropy regularisation: smaller is closer to hard assignments")
    model.add_argument("--sinkhorn_iterations", type=POSITIVE_INT, default=10, help="Sinkhorn-Knopp iterations")
    model.add_argument("--soft_targets", action=BoolFlag, default=False,
                       help="predict the full Sinkhorn distribution instead of its argmax (published: argmax)")
    model.add_argument("--queue_length", type=NON_NEGATIVE_INT, default=0,
                       help="masked tubes per process kept from past steps, per side, that Sinkhorn balances together "
                            "with the batch (SwAV's queue for small batches; not saved, so a resumed run refills it; "
                            "published: 0)")
    model.add_argument("--queue_start_epoch", type=NON_NEGATIVE_INT, default=0,
                       help="first epoch whose steps fill and use the queue: SwAV starts it once the features have "
                            "settled (its epoch 15), since a queue of the first steps' near-identical features "
                            "balances against noise")
    model.add_argument("--freeze_prototypes_niters", type=NON_NEGATIVE_INT, default=0,
                       help="steps at the start during which the prototypes are not updated (SwAV's remedy for "
                            "prototypes that chase the first, uninformative assignments; published: 0)")
    model.add_argument("--freeze_projection_niters", type=NON_NEGATIVE_INT, default=0,
                       help="steps at the start during which the MLP projection phi is not updated, so the video "
                            "model first learns the clusters of a fixed random projection (published: 0)")

    optim = groups["optimisation"]
    groups["run"].add_argument(
        "--log_images_every", type=NON_NEGATIVE_INT, default=0,
        help="every N epochs, draw what the model predicts for the first video of the list (validation view, a "
             "fixed mask) into TensorBoard, as run_videomae_vis.py draws it (0: never)")
    optim.add_argument("--compile", action=BoolFlag, default=False,
                       help="torch.compile the model: fused kernels, faster steps after a compilation of minutes")
    optim.add_argument("--steps_per_epoch", type=POSITIVE_INT, default=None,
                       help="cap on the steps of an epoch, for quick runs (default: the whole clip list)")
    return parser


def parse_args(argv=None):
    return get_args_parser().parse_args(argv)


def main(args):
    dist_utils.launch(train, args, "pretraining")


def train(args, env):
    device = env.device
    check_paths(args)
    utils.start_run(args, env, written="TensorBoard")
    training_state.clean_output_dir(args, env)

    path, checkpoint, own_run = training_state.find_start(args, env)
    if checkpoint is not None:
        if not own_run and checkpoint.get("args") is not None:
            print(f"settings of {path}:\n{utils.format_args(checkpoint['args'], repr)}")
        training_state.adopt_architecture(checkpoint.get("args"), args, ARCHITECTURE_ARGS)
        saved = checkpoint_geometry(checkpoint)  # from the weights, which published args do not describe
        current = {"patch_size": args.patch_size, "depth": args.depth or MODELS[args.model]["encoder_depth"]}
        for name, value in current.items():
            if saved[name] != value:
                print(f"using the checkpoint's --{name} {saved[name]} instead of {value}")
                setattr(args, name, saved[name])

    dist_utils.seed_everything(args.seed)  # the same initial weights on every rank
    name, kwargs = pretrain_model_config(args)
    args.teacher_precision = args.teacher_precision or ("bf16" if args.precision == "bf16" else "fp32")
    model = create_pretrain_model(name, teacher_weights=args.teacher_weights,
                                  teacher_precision=args.teacher_precision, **kwargs)
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
    if args.compile:
        # In place (Module.compile, not torch.compile's wrapper): parameter names, and so
        # checkpoints, stay those of the eager model.
        model.compile()
    model_without_ddp = model
    if env.world_size > 1:
        # No device_ids: DDP would move the CPU mask to the GPU; broadcast_buffers off:
        # the model's buffers are fixed tables.
        model = DistributedDataParallel(model, broadcast_buffers=False)
    optimizer = create_optimizer(args, model_without_ddp, device)
    scaler = utils.grad_scaler(args.precision, device)

    start_epoch, position = 0, None
    if checkpoint is not None:
        start_epoch = training_state.restore(checkpoint, path, model_without_ddp, optimizer, scaler, own_run)
        training_state.report_changed_settings(checkpoint.get("args"), args)
        if own_run:
            position = checkpoint.get(preemption.POSITION_KEY)  # stopped mid-epoch: continue where it was
        if own_run and env.is_main:
            training_state.restore_log(args.output_dir, checkpoint)

    print(utils.describe_run(args))
    n_parameters = sum(p.numel() for p in model_without_ddp.parameters() if p.requires_grad)
    print(f"model {args.model}: {n_parameters / 1e6:.2f}M trained parameters, token grid {args.window_size}, "
          f"precision {args.precision}, {steps_per_epoch} steps per epoch, device {device}")
    scalar_logger = utils.start_records(args, env)
    training_state.warn_if_little_room_at_start(args.output_dir, model_without_ddp, env)

    # Without a TensorBoard folder no rank would write them: none is drawn.
    pictured = picture_clip(dataset, args, device) if args.log_images_every and args.log_dir else None
    frozen = frozen_at_start(model_without_ddp, args)
    start_time = time.time()
    progress = Progress(args.print_freq, calibrated=checkpoint.get(LOG_EVERY_KEY) if own_run else None)
    with preemption.StopSignal(args.stop_signals if args.output_dir else []) as stop:
        for epoch in range(start_epoch, args.epochs):
            loader.sampler.set_epoch(epoch)
            model_without_ddp.queue_active = epoch >= args.queue_start_epoch
            resumed = None
            if position is not None and position["epoch"] == epoch:
                resumed = preemption.restore_rank_position(position, env.rank, env.world_size, loader.sampler,
                                                           device, path)
            else:
                # Everything random in an epoch derives from (seed, rank, epoch): data order, augmentations, masks.
                dist_utils.seed_epoch(args.seed, env.rank, epoch, loader.generator)
            try:
                stats = train_one_epoch(
                    model, loader, optimizer, scaler, epoch=epoch, epochs=args.epochs,
                    start_step=epoch * steps_per_epoch, num_steps=steps_per_epoch, lr_schedule=lr_schedule,
                    wd_schedule=wd_schedule, device=device, precision=args.precision, clip_grad=args.clip_grad,
                    progress=progress, scalar_logger=scalar_logger, frozen=frozen,
                    stop=stop.agreed if args.output_dir else None, resumed=resumed)
            except preemption.EpochInterrupted as interrupted:
                position = preemption.stopped_position(interrupted.state, epoch, loader.sampler, args.batch_size,
                                                       device)
                if env.is_main:
                    # Its epoch is the last complete one; the position says how far the next one went.
                    state = dict(model=model_without_ddp.state_dict(), optimizer=optimizer.state_dict(),
                                 epoch=epoch - 1, scaler=scaler.state_dict(), args=args,
                                 step=epoch * steps_per_epoch + position["step"],
                                 **{preemption.POSITION_KEY: position, LOG_EVERY_KEY: progress.every})
                    training_state.save(args.output_dir, state, numbered=False)
                raise preemption.preempted(stop, os.path.join(args.output_dir, training_state.LATEST_CHECKPOINT),
                                           epoch, position["step"], steps_per_epoch) from None
            # Before saving: an epoch trained on too many substitutes for bad videos is not kept, so the rerun
            # after the fix trains it again. The counts are global, so every rank decides alike.
            check_bad_fraction(stats["bad_videos"], stats["clips"] // args.num_sample, args.max_bad_fraction,
                               where=f"in epoch {epoch}")
            record = {**{f"train_{k}": v for k, v in stats.items()}, "epoch": epoch, "n_parameters": n_parameters}
            if env.is_main and args.output_dir:
                numbered = (epoch + 1) % args.save_ckpt_freq == 0 or epoch + 1 == args.epochs
                state = dict(model=model_without_ddp.state_dict(), optimizer=optimizer.state_dict(), epoch=epoch,
                             scaler=scaler.state_dict(), args=args, step=(epoch + 1) * steps_per_epoch,
                             **{training_state.EPOCH_RECORD: record, LOG_EVERY_KEY: progress.every})
                training_state.save(args.output_dir, state, numbered)
            # After the checkpoint: a kill in between loses this line only until the resume restores it.
            utils.log_epoch(record, args, env)
            if pictured is not None and ((epoch + 1) % args.log_images_every == 0 or epoch + 1 == args.epochs):
                # Every rank draws (Sinkhorn all-reduces over the ranks; the copies agree), the main one writes.
                picture, _, _ = model_pictures.clip_picture(model_without_ddp, *pictured)
                if scalar_logger is not None:
                    scalar_logger.log_image("pictures/" + ("reconstruction" if args.loss_func == "L2" else "prototypes"),
                                            np.asarray(picture), epoch + 1)
            if epoch + 1 < args.epochs and stop.agreed():  # a signal during the epoch's last step
                raise preemption.preempted(stop, os.path.join(args.output_dir, training_state.LATEST_CHECKPOINT),
                                           epoch)

    minutes = (time.time() - start_time) / 60
    if start_epoch < args.epochs:
        print(f"pretraining done: epochs {start_epoch}-{args.epochs - 1} in {minutes:.1f} min")
    else:
        print(f"nothing to train: the checkpoint has finished all {args.epochs} epochs")
    if args.output_dir:
        print(f"checkpoints and log.txt in {args.output_dir}")
    if scalar_logger is not None:
        scalar_logger.close()


def picture_clip(dataset, args, device):
    """(video on device, mask) that --log_images_every draws at every such epoch: the validation view of the
    first video of the list under a mask of the run's kind, seeded by --seed, so the pictures compare."""
    video = model_pictures.read_view(dataset.clips[0][0], args.num_frames, args.sampling_rate, args.input_size)
    generator = build_masking_generator(args.mask_type, args.window_size, args.mask_ratio,
                                        rng=np.random.default_rng(args.seed))
    return video.to(device), torch.from_numpy(generator())


def frozen_at_start(model, args):
    """(parameters, until_step) pairs for the engine: the prototypes and phi held still at the start."""
    frozen = []
    if args.freeze_prototypes_niters and args.loss_func == "SWAV":
        frozen.append(([model.prototypes], args.freeze_prototypes_niters))
    if args.freeze_projection_niters and args.target_type == "mlp":
        frozen.append((list(model.head.parameters()), args.freeze_projection_niters))
    return frozen


if __name__ == "__main__":
    user_errors.run_main(main, parse_args())
