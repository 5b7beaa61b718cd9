"""Fine-tuning, linear probing and multi-view evaluation of a SIGMA (or VideoMAE) encoder.

One process (a CPU, or one GPU):
    python run_class_finetuning.py --model vit_base_patch16_224 --data_set SSV2 --nb_classes 174 \\
        --data_path LIST_DIR --finetune output/ssv2_mlp/checkpoint-800.pth --output_dir output/ssv2_mlp_ft

One node with 8 GPUs (add --enable_deepspeed for DeepSpeed, which also needs torchrun for one process):
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=8 run_class_finetuning.py ... --dist_eval

Several nodes: the same torchrun on every node with --nnodes, --rdzv_backend=c10d and
--rdzv_endpoint=FIRST_NODE:29500, or `srun torchrun` under SLURM.

LIST_DIR holds train.csv, val.csv and test.csv (`path label` per line). The published
configurations are in scripts/finetune_*.sh and scripts/linprobe_*.sh; FINETUNE.md
says what each should print. --lr, --min_lr and --warmup_lr are given per 256 clips and
scaled by --batch_size x --update_freq x processes / 256. A run restarted with the same
--output_dir resumes from its newest complete checkpoint.

--linear_probing trains only fc_norm and head on the frozen encoder. Without training
augmentation (--mixup 0 --cutmix 0 --aa none --reprob 0) the encoder's pooled features
of every clip are computed once and the probe trains on them (--cache_features), which
makes a probe hundreds of times cheaper. --eval only tests a trained classifier: the
views of every test video (--test_num_segment x --test_num_crop) are classified, their
softmax averaged per video, and the per-view logits saved to OUTPUT_DIR/test_predictions.pt
(re-score with `python engine_for_finetuning.py OUTPUT_DIR/test_predictions.pt`).
"""
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler

import dist_utils
import preemption
import training_state
import user_errors
import utils
from checkpoint import load_checkpoint
from encoder_geometry import adopt_geometry
from datasets import CUSTOM_DATASET, DATASET_NUM_CLASSES, build_dataset, check_bad_fraction, training_loader
from engine_for_finetuning import (FeatureDataset, FeatureProbe, VideoMixup, describe_scores, eval_loader,
                                   eval_view_dataset, evaluate, freeze_backbone, gather_outputs, is_sharded,
                                   merge_views, pooled_tokens, run_inference, save_predictions, train_one_epoch)
from flags import (FRACTION, NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_INT, BoolFlag,
                   add_finetuning_augmentation_flags, check_paths, checked, parent_parser)
from modeling_finetune import MODELS, create_classifier, load_pretrained_encoder
from optim_factory import create_optimizer, scaled_schedules
from progress import LOG_EVERY_KEY, Progress

# The published few-shot subsets (--examples) draw their videos with this seed.
EXAMPLES_SEED = 99999
PREDICTIONS_FILE = "test_predictions.pt"
# Training augmentation flags that cached features cannot honour, with their "off" values.
AUGMENTATION_OFF = {"mixup": 0.0, "cutmix": 0.0, "cutmix_minmax": None, "aa": "none", "reprob": 0.0}


def get_args_parser():
    parser, groups = parent_parser(
        "SIGMA fine-tuning and evaluation", __doc__, lists="the directory of train.csv, val.csv and test.csv",
        models=MODELS, training=True, data_sets=[*DATASET_NUM_CLASSES, CUSTOM_DATASET])
    parser.set_defaults(
        data_set="Kinetics-400", num_sample=2, batch_size=64, max_bad_fraction=0.01, model="vit_base_patch16_224",
        use_mean_pooling=True, drop_path=0.1, epochs=30, opt_betas=[0.9, 0.999], lr=1e-3, min_lr=1e-6,
        warmup_lr=1e-6, warmup_epochs=5, save_ckpt_freq=100, run_name="sigma_finetune")
    data = groups["data"]
    data.add_argument("--nb_classes", type=POSITIVE_INT, default=400, help="classes of --data_set (checked against it)")
    data.add_argument("--examples", type=NON_NEGATIVE_INT, default=0,
                      help="train on this many videos, an equal share per class drawn with a fixed seed (the "
                           "few-shot settings of SEVERE, e.g. 1000 for UCF101 and Gym99); 0: all")

    aug = parser.add_argument_group("training augmentation")
    add_finetuning_augmentation_flags(aug)
    aug.add_argument("--mixup", type=NON_NEGATIVE_FLOAT, default=0.8, help="mixup alpha (0: off)")
    aug.add_argument("--cutmix", type=NON_NEGATIVE_FLOAT, default=1.0,
                     help="cutmix alpha (0: off); one box through all frames")
    aug.add_argument("--cutmix_minmax", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                     help="cutmix box area range; overrides --cutmix")
    aug.add_argument("--mixup_prob", type=FRACTION, default=1.0, help="probability of mixing a batch")
    aug.add_argument("--mixup_switch_prob", type=FRACTION, default=0.5, help="probability of cutmix over mixup")
    aug.add_argument("--mixup_mode", default="batch", choices=["batch", "pair", "elem"],
                     help="one mixing draw per batch, per pair of clips or per clip")
    aug.add_argument("--smoothing", type=NON_NEGATIVE_FLOAT, default=0.1, help="label smoothing")

    model = groups["model"]
    model.add_argument("--init_scale", type=float, default=0.001,
                       help="the new head starts at this fraction of its random init: uniform predictions")
    model.add_argument("--drop", type=NON_NEGATIVE_FLOAT, default=0.0, help="dropout in the blocks")
    model.add_argument("--attn_drop_rate", type=NON_NEGATIVE_FLOAT, default=0.0, help="attention dropout")
    model.add_argument("--fc_drop_rate", type=NON_NEGATIVE_FLOAT, default=0.0, help="dropout before the head")
    model.add_argument("--linear_probing", action=BoolFlag, default=False,
                       help="train only fc_norm and head on the frozen encoder")
    model.add_argument("--cache_features", action=BoolFlag, default=None,
                       help="linear probing on the encoder's features computed once per clip (default: on when "
                            "linear probing without training augmentation, i.e. --mixup 0 --cutmix 0 --aa none "
                            "--reprob 0)")
    model.add_argument("--model_ema", action=BoolFlag, default=False, help="also keep an EMA of the weights")
    model.add_argument("--model_ema_decay", type=FRACTION, default=0.9999, help="EMA decay per optimiser step")
    model.add_argument("--model_ema_force_cpu", action=BoolFlag, default=False, help="keep the EMA on the CPU")

    optim = groups["optimisation"]
    optim.add_argument("--update_freq", type=POSITIVE_INT, default=1, help="micro-batches per optimiser step")
    optim.add_argument("--layer_decay", type=checked(float, lambda v: 0 < v <= 1, "be in (0, 1]"), default=0.75,
                       help="block i learns at layer_decay ** (depth - i) of the head's rate: pretrained early "
                            "layers move least; 1: off")

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval", action="store_true",
                            help="only run the multi-view test of a trained classifier (--resume, else the best "
                                 "or newest checkpoint in --output_dir, else --finetune)")
    evaluation.add_argument("--dist_eval", action=BoolFlag, default=False,
                            help="spread the evaluation over the processes (each video counted once); off: "
                                 "every process evaluates everything")
    evaluation.add_argument("--disable_eval_during_finetuning", action=BoolFlag, default=False,
                            help="skip the validation after every epoch")
    evaluation.add_argument("--test_num_segment", type=POSITIVE_INT, default=5, help="test clips along time per video")
    evaluation.add_argument("--test_num_crop", type=POSITIVE_INT, default=3, help="test crops along the long side")

    run = groups["run"]
    run.add_argument("--save_ckpt", action=BoolFlag, default=True, help="write checkpoints")

    ds = parser.add_argument_group("DeepSpeed")
    ds.add_argument("--enable_deepspeed", action="store_true",
                    help="train inside DeepSpeed (ZeRO, bf16/fp16 weights); start with torchrun, also for one "
                         "process; --resume then names a run folder (its newest checkpoint) or a checkpoint folder "
                         "in it")
    ds.add_argument("--zero_stage", type=int, default=1, choices=[0, 1, 2],
                    help="ZeRO stage: 1 partitions the optimizer state over the processes, 2 also the gradients")
    return parser


def parse_args(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    augmented = {name: getattr(args, name) for name, off in AUGMENTATION_OFF.items()
                 if getattr(args, name) not in (off, None) and not (name == "aa" and args.aa in ("", "none"))}
    if args.cache_features is None:
        args.cache_features = args.linear_probing and not augmented and not args.eval
    elif args.cache_features:
        if not args.linear_probing:
            parser.error("argument --cache_features: only a linear probe (--linear_probing) can train on features "
                         "of a frozen encoder")
        if augmented:
            parser.error("argument --cache_features: features are computed once per clip, so they cannot be "
                         "augmented; add " + " ".join(f"--{name} {AUGMENTATION_OFF[name] or 0}" for name in augmented))
        if args.enable_deepspeed:
            parser.error("argument --cache_features: a probe on cached features is one small layer; "
                         "drop --enable_deepspeed")
    if mixes(args) and args.batch_size * args.num_sample % 2:
        parser.error(f"mixup/cutmix pair every clip with another: --batch_size {args.batch_size} x --num_sample "
                     f"{args.num_sample} must be even (or switch them off with --mixup 0 --cutmix 0)")
    if args.enable_deepspeed and args.model_ema:
        parser.error("argument --model_ema: not with --enable_deepspeed, whose weights are half precision (an "
                     "EMA of them rounds every update away) and whose fp32 weights are split over the processes")
    return args


def mixes(args):
    """Whether training mixes clips (mixup or cutmix); never with cached features, which parse_args keeps
    free of augmentation."""
    return not args.cache_features and (args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None)


def main(args):
    dist_utils.launch(run, args, "fine-tuning")


def run(args, env):
    device = env.device
    check_paths(args)
    if args.enable_deepspeed and not args.eval and not torch.distributed.is_initialized():
        raise RuntimeError("--enable_deepspeed needs a process group: start with torchrun, also for one process "
                           "(torchrun --standalone --nproc_per_node=1 run_class_finetuning.py ...)")
    utils.start_run(args, env, written="prediction")
    training_state.clean_output_dir(args, env, also=[PREDICTIONS_FILE])

    dist_utils.seed_everything(args.seed)  # the same initial weights on every rank
    test_set, args.nb_classes = build_dataset(is_train=False, test_mode=True, args=args)
    pretrained = load_checkpoint(args.finetune) if args.finetune else None
    adopt_geometry(args, pretrained, args.finetune, only=("patch_size", "depth"))
    classifier = create_classifier(args)
    args.window_size = tuple(classifier.patch_embed.grid_size)
    has_head = load_finetune_checkpoint(classifier, pretrained, args) if args.finetune else False
    if args.linear_probing:
        print(f"linear probing: training {', '.join(freeze_backbone(classifier))}; the encoder is frozen")
    classifier.to(device)
    if args.eval:
        print(utils.describe_run(args))
        evaluate_only(classifier, test_set, has_head, args, env)
        return

    train_set, _ = build_dataset(is_train=True, test_mode=False, args=args)
    if args.examples:
        train_set.clips = few_shot_subset(train_set.clips, args.examples)
    val_set = None if args.disable_eval_during_finetuning else build_dataset(False, False, args)[0]
    print(f"train: {train_set}\nval: {val_set}\ntest: {test_set}")
    if args.cache_features:
        data = CachedFeatures(classifier, train_set, val_set, test_set, args, env)
    else:
        data = Clips(train_set, val_set, test_set, args, env)

    steps_per_epoch = len(data.train_loader) // args.update_freq
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data.train_loader.dataset)} training videos are fewer than one step of --batch_size "
                         f"{args.batch_size} x --update_freq {args.update_freq} on {env.world_size} process(es)")
    args.num_training_steps_per_epoch = steps_per_epoch
    # The published rule: the lr scales with the videos per step, not with --num_sample.
    args.global_batch_size = args.batch_size * args.update_freq * env.world_size
    lr_schedule, wd_schedule = scaled_schedules(
        args, steps_per_epoch, f" videos = {args.batch_size} per process x {args.update_freq} accumulated x "
                               f"{env.world_size} process(es)", unit="videos")

    optimizer = create_optimizer(args, classifier, device, layer_decay=args.layer_decay)
    model_ema = None
    if args.model_ema:
        model_ema = ModelEmaV3(classifier, decay=args.model_ema_decay,
                               device=torch.device("cpu") if args.model_ema_force_cpu else None)
    model, optimizer, scaler, input_dtype = data.backend(classifier, optimizer, args, env)
    start_epoch, max_accuracy, saved = resume(model, classifier, optimizer, scaler, model_ema, args, env)
    position = saved.get(preemption.POSITION_KEY)
    if start_epoch >= args.epochs:
        # A finished run reports its test instead of testing (and logging) it again; every rank decides alike.
        tested = dist_utils.broadcast_object(training_state.saved_test_record(args.output_dir) if env.is_main else None)
        if tested is not None:
            print(f"nothing to train: {args.output_dir} has finished all {args.epochs} epochs and was tested: top-1 "
                  f"{tested['test_acc1']:.2f}%, top-5 {tested['test_acc5']:.2f}% on {tested['test_videos']} videos "
                  f"(log.txt); raise --epochs to train on, or --eval to test again")
            return

    n_parameters = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
    print(utils.describe_run(args))
    print(f"model {args.model}: {n_parameters:,} trained parameters, token grid {args.window_size}, "
          f"precision {args.precision}{', DeepSpeed ZeRO stage %d' % args.zero_stage if args.enable_deepspeed else ''}"
          f", {steps_per_epoch} steps per epoch, device {device}")
    scalar_logger = utils.start_records(args, env)
    training_state.warn_if_little_room_at_start(args.output_dir if args.save_ckpt else "", classifier, env)

    mixup_fn, criterion = None, nn.CrossEntropyLoss(label_smoothing=args.smoothing)
    if mixes(args):
        mixup_fn = VideoMixup(Mixup(
            mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax, prob=args.mixup_prob,
            switch_prob=args.mixup_switch_prob, mode=args.mixup_mode, label_smoothing=args.smoothing,
            num_classes=args.nb_classes))
        criterion = SoftTargetCrossEntropy()  # the smoothing is in the mixed targets

    start_time = time.time()
    progress = Progress(args.print_freq, calibrated=saved.get(LOG_EVERY_KEY))
    saving = bool(args.output_dir and args.save_ckpt)
    with preemption.StopSignal(args.stop_signals if saving else []) as stop:
        for epoch in range(start_epoch, args.epochs):
            resumed = data.start_epoch(epoch, position, env)
            try:
                stats = train_one_epoch(
                    model, classifier, criterion, data.train_loader, optimizer, scaler, epoch=epoch,
                    epochs=args.epochs, start_step=epoch * steps_per_epoch, num_steps=steps_per_epoch,
                    update_freq=args.update_freq, lr_schedule=lr_schedule, wd_schedule=wd_schedule, device=device,
                    precision=args.precision, input_dtype=input_dtype, deepspeed=args.enable_deepspeed,
                    mixup_fn=mixup_fn, model_ema=model_ema, clip_grad=args.clip_grad,
                    frozen_backbone=args.linear_probing, num_sample=args.num_sample,
                    max_bad_fraction=args.max_bad_fraction, progress=progress, scalar_logger=scalar_logger,
                    # A probe on cached features stops at the end of its epoch, a matter of seconds.
                    stop=stop.agreed if saving and data.saves_every_epoch else None, resumed=resumed)
            except preemption.EpochInterrupted as interrupted:
                position = preemption.stopped_position(interrupted.state, epoch, data.train_loader.sampler,
                                                       args.batch_size * args.update_freq, device)
                where = save_checkpoints(model, classifier, optimizer, scaler, model_ema, args, env, None,
                                         max_accuracy, False, False, progress.every, position=position)
                raise preemption.preempted(stop, where, epoch, position["step"], steps_per_epoch) from None
            record = {**{f"train_{k}": v for k, v in stats.items()}, "epoch": epoch, "n_parameters": n_parameters}

            is_best = False
            if val_set is not None:
                val = evaluate(data.evaluated(classifier), data.val_loader, device, args.precision, input_dtype,
                               max_bad_fraction=args.max_bad_fraction)
                is_best = val["acc1"] > max_accuracy
                max_accuracy = max(max_accuracy, val["acc1"])
                print(f"Accuracy of the network on the {val['videos']} val videos: top-1 {val['acc1']:.2f}%, "
                      f"top-5 {val['acc5']:.2f}%, loss {val['loss']:.4f}; best top-1 {max_accuracy:.2f}%")
                record.update({f"val_{k}": v for k, v in val.items()})
                if model_ema is not None:
                    ema = evaluate(data.evaluated(model_ema.module), data.val_loader, device, args.precision)
                    print(f"EMA weights: top-1 {ema['acc1']:.2f}%, top-5 {ema['acc5']:.2f}%")
                    record.update({f"val_ema_{k}": v for k, v in ema.items()})
                if scalar_logger is not None:
                    scalar_logger.log({"val/acc1": val["acc1"], "val/acc5": val["acc5"], "val/loss": val["loss"]},
                                      (epoch + 1) * steps_per_epoch)
            keep = (epoch + 1) % args.save_ckpt_freq == 0 or epoch + 1 == args.epochs
            stopping = epoch + 1 < args.epochs and stop.agreed()  # a signal during the epoch's last step or val
            if saving and (keep or data.saves_every_epoch or stopping):
                where = save_checkpoints(model, classifier, optimizer, scaler, model_ema, args, env, record,
                                         max_accuracy, is_best and data.saves_every_epoch, keep, progress.every)
            # After the checkpoint, which holds the line too: a kill in between loses it only until the resume.
            utils.log_epoch(record, args, env)
            if stopping:
                raise preemption.preempted(stop, where, epoch)

    print(f"training done: epochs {start_epoch}-{args.epochs - 1} in {(time.time() - start_time) / 60:.1f} min")
    scores = multi_view_test(data.evaluated(classifier), data.test_loader, test_set, args, env, input_dtype)
    utils.log_epoch({f"test_{k}": scores[k] for k in ("acc1", "acc5", "mean_class_acc1", "videos")}, args, env)
    if scalar_logger is not None:
        scalar_logger.close()


# ---------------------------------------------------------------------------------
# Data: decoded clips, or the cached linear probe's features
# ---------------------------------------------------------------------------------

class Clips:
    """Training and evaluation on decoded clips: fine-tuning, and linear probing with augmentation.

    Each rank reads its share of the training videos; the classifier trains plainly, in
    DDP over several processes, or inside DeepSpeed.
    """
    saves_every_epoch = True

    def __init__(self, train_set, val_set, test_set, args, env):
        self.seed, self.rank = args.seed, env.rank
        self.train_loader = training_loader(train_set, args, env)
        self.val_loader = None if val_set is None else eval_loader(val_set, args, env, args.dist_eval)
        self.test_loader = eval_loader(test_set, args, env, args.dist_eval)

    def backend(self, classifier, optimizer, args, env):
        """(what trains, optimizer, loss scaler or None, DeepSpeed's input dtype or None)."""
        if args.enable_deepspeed:
            engine, optimizer, input_dtype = start_deepspeed(classifier, optimizer, args)
            return engine, optimizer, None, input_dtype
        scaler = utils.grad_scaler(args.precision, env.device)
        if env.world_size > 1:
            return DistributedDataParallel(classifier, broadcast_buffers=False), optimizer, scaler, None
        return classifier, optimizer, scaler, None

    def start_epoch(self, epoch, position, env):
        """Sets up the epoch's draws; returns the engine's state where `position` (preemption.py) continues it."""
        self.train_loader.sampler.set_epoch(epoch)
        if position is not None and position["epoch"] == epoch:
            return preemption.restore_rank_position(position, env.rank, env.world_size, self.train_loader.sampler,
                                                    env.device, "the checkpoint in --output_dir")
        # Everything random in an epoch derives from (seed, rank, epoch): data order, augmentations, mixing.
        dist_utils.seed_epoch(self.seed, self.rank, epoch, self.train_loader.generator)
        return None

    def evaluated(self, classifier):
        """What evaluation runs, in eval mode."""
        return classifier.eval()


class CachedFeatures:
    """The cached linear probe: the frozen encoder's pooled features of every clip, computed once on every
    rank, and the classifier's top (fc_norm, head) trained on them.

    Training videos are read as validation views (central clip, centre crop): without
    augmentation every epoch would see the same clips anyway. Training videos that
    cannot be decoded are left out. Every rank trains the same probe on all features,
    a global batch per step: no gradient exchange, and the same steps and lr as the
    run on clips.
    """
    # An epoch of a probe on cached features takes a second: it is cheaper to run again than to write the
    # whole encoder every epoch, so it saves only the kept epochs, and no best checkpoint.
    saves_every_epoch = False

    def __init__(self, classifier, train_set, val_set, test_set, args, env):
        self.seed = args.seed
        classifier.eval()
        features = {}
        for name, dataset in (("train", eval_view_dataset(train_set.clips, args)), ("val", val_set),
                              ("test", test_set)):
            if dataset is None:
                continue
            start = time.time()
            outputs = run_inference(lambda videos: pooled_tokens(classifier, videos), eval_loader(dataset, args, env),
                                    env.device, args.precision)
            features[name] = gather_outputs(outputs, env.device)
            # Judged here, before an epoch is trained or saved, as the runs on clips judge theirs; per video,
            # as the test reads several views of each.
            videos = features[name].get("video_id", features[name]["index"])
            bad = len(videos[features[name]["num_bad"] > 0].unique())
            check_bad_fraction(bad, len(videos.unique()) - bad, args.max_bad_fraction, where=f"in the {name} list")
            print(f"cached the encoder's pooled features of {len(dataset)} {name} clips in {time.time() - start:.0f} s")
        decoded = features["train"]["num_bad"] == 0
        train = FeatureDataset({key: value[decoded] for key, value in features["train"].items()})
        self.train_loader = DataLoader(train, batch_size=args.batch_size * env.world_size, drop_last=True,
                                       sampler=RandomSampler(train, generator=torch.Generator()))
        self.val_loader = None if val_set is None else eval_loader(FeatureDataset(features["val"]), args, env,
                                                                   args.dist_eval)
        self.test_loader = eval_loader(FeatureDataset(features["test"]), args, env, args.dist_eval)

    def backend(self, classifier, optimizer, args, env):
        return FeatureProbe(classifier), optimizer, utils.grad_scaler(args.precision, env.device), None

    def start_epoch(self, epoch, position, env):
        # The same draws on every rank (rank 0's), as every rank trains the same probe. It never stops mid-epoch.
        dist_utils.seed_epoch(self.seed, 0, epoch, self.train_loader.sampler.generator)

    def evaluated(self, classifier):
        return FeatureProbe(classifier.eval())


def few_shot_subset(clips, examples):
    """`examples` training videos: ceil(examples / classes) per class (all of a smaller class), drawn with the
    published fixed seed so that every run and every model sees the same subset."""
    labels = np.array([label for _, label in clips])
    classes = sorted(set(labels.tolist()))
    per_class = math.ceil(examples / len(classes))
    rng = np.random.RandomState(EXAMPLES_SEED)
    chosen = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        chosen.extend(members[rng.choice(len(members), min(per_class, len(members)), replace=False)].tolist())
    print(f"--examples {examples}: training on {len(chosen)} of {len(clips)} videos, up to {per_class} per class")
    return [clips[i] for i in sorted(chosen)]


# ---------------------------------------------------------------------------------
# Model, DeepSpeed, checkpoints
# ---------------------------------------------------------------------------------

def load_finetune_checkpoint(classifier, checkpoint, args):
    """Loads the --finetune checkpoint into the classifier; returns whether it held a trained head for these
    classes."""
    report = load_pretrained_encoder(classifier, checkpoint)
    dropped = {}
    for key in report["unexpected"]:
        part = ".".join(key.split(".")[:2]) if key.startswith("encoder.") else key.split(".")[0]
        dropped[part] = dropped.get(part, 0) + 1
    print(f"loaded the encoder of {args.finetune}; not in the checkpoint: {', '.join(report['missing']) or 'nothing'}; "
          f"left out: {', '.join(f'{part} ({n})' for part, n in dropped.items()) or 'nothing'}"
          + (f"; replaced the head {', '.join(report['dropped_head'])}" if "dropped_head" in report else ""))
    saved_grid = getattr(checkpoint.get("args"), "window_size", None)
    if saved_grid is not None and tuple(saved_grid) != args.window_size:
        print(f"note: the checkpoint was trained on a {tuple(saved_grid)} token grid, this model has "
              f"{args.window_size}; its fixed sinusoid position table is rebuilt for the new grid")
    return "head.weight" not in report["missing"]


def start_deepspeed(classifier, optimizer, args):
    """Wraps classifier and optimizer in a DeepSpeed engine; returns (engine, optimizer, input dtype)."""
    import deepspeed  # slow to import, and only needed here

    micro_batch = args.batch_size * args.num_sample
    config = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": args.update_freq,
        "train_batch_size": micro_batch * args.update_freq * args.world_size,
        "gradient_clipping": args.clip_grad or 0.0,
        "zero_optimization": {"stage": args.zero_stage},
        "bf16": {"enabled": args.precision == "bf16"},
        "fp16": {"enabled": args.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # Our AdamW with per-layer lr scales, as is; ZeRO partitions its state.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,  # the engine logs; DeepSpeed's own lines would repeat it
    }
    engine, optimizer, _, _ = deepspeed.initialize(model=classifier, optimizer=optimizer, config=config)
    return engine, optimizer, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)


def resume(model, classifier, optimizer, scaler, model_ema, args, env):
    """Restores the newest complete checkpoint in --output_dir, else --resume; returns (start epoch, best acc1,
    the checkpoint (DeepSpeed's: its client state) for what else it holds, or {}).
    Resuming from --output_dir also puts its log.txt in step with the checkpoint."""
    if args.enable_deepspeed:
        checkpoint, own_run = training_state.restore_deepspeed(model, args)
        start = (0, 0.0) if checkpoint is None else (checkpoint["epoch"] + 1, checkpoint["max_accuracy"])
    else:
        path, checkpoint, own_run = training_state.find_start(args, env)
        start = (0, 0.0)
        if path is not None:
            # own_run=True also for --resume: a fine-tuning run continues a run of this code, whose optimizer
            # must fit.
            start = (training_state.restore(checkpoint, path, classifier, optimizer, scaler, model_ema=model_ema),
                     checkpoint.get("max_accuracy", 0.0))
    if own_run and env.is_main:
        training_state.restore_log(args.output_dir, checkpoint)
    # Any checkpoint of this code continues where it stopped (its position, its logging frequency), as --resume
    # continues its run.
    return (*start, checkpoint or {})


def save_checkpoints(model, classifier, optimizer, scaler, model_ema, args, env, record, max_accuracy, is_best, keep,
                     log_every, position=None):
    """checkpoint-latest.pth every epoch, checkpoint-{epoch}.pth when `keep`, checkpoint-best.pth (weights only)
    at a new best validation top-1; a DeepSpeed run writes DeepSpeed's folders instead (training_state.py).
    Each holds the epoch's log line `record` and the logging frequency `log_every`. With `position` (preemption.py; record None), the checkpoint of
    an epoch stopped mid-way instead: checkpoint-latest.pth or DeepSpeed's checkpoint-{epoch}-step{step}/.
    Returns where the checkpoint went."""
    epoch = record["epoch"] if position is None else position["epoch"] - 1  # the last complete epoch
    extra = {training_state.EPOCH_RECORD: record} if position is None else {preemption.POSITION_KEY: position}
    extra[LOG_EVERY_KEY] = log_every
    if args.enable_deepspeed:
        client_state = {"epoch": epoch, "max_accuracy": max_accuracy, **extra}
        # The folder of the last complete epoch before this one goes, unless --save_ckpt_freq keeps it.
        done = epoch if position is not None else epoch - 1
        superseded = None if (done + 1) % args.save_ckpt_freq == 0 else training_state.DEEPSPEED_TAG.format(done)
        tag = training_state.DEEPSPEED_TAG.format(epoch) if position is None else \
            training_state.DEEPSPEED_POSITION_TAG.format(position["epoch"], position["step"])
        training_state.save_deepspeed(model, args.output_dir, client_state, tag, is_best, superseded, env.is_main)
        return os.path.join(args.output_dir, tag)
    if env.is_main:
        state = dict(model=classifier.state_dict(), optimizer=optimizer.state_dict(), epoch=epoch,
                     scaler=scaler.state_dict(), args=args, max_accuracy=max_accuracy, **extra)
        if model_ema is not None:
            state["model_ema"] = model_ema.module.state_dict()
        best = dict(model=classifier.state_dict(), epoch=epoch, args=args, max_accuracy=max_accuracy) if is_best \
            else None
        training_state.save(args.output_dir, state, keep and position is None, best=best)
    return os.path.join(args.output_dir, training_state.LATEST_CHECKPOINT)


# ---------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------

def multi_view_test(forward, loader, test_set, args, env, input_dtype=None):
    """Classifies every view of every test video, prints the merged scores, saves the per-view logits."""
    start = time.time()
    outputs = gather_outputs(run_inference(forward, loader, env.device, args.precision, input_dtype), env.device,
                             sharded=is_sharded(loader))
    scores = merge_views(outputs["outputs"], outputs["video_id"], outputs["view"], outputs["label"],
                         outputs["num_bad"])
    print(describe_scores(scores, test_set.views_per_video) + f" ({time.time() - start:.0f} s)")
    # Before the predictions are saved: a score over a fraction of the list is not the list's score.
    check_bad_fraction(len(scores["unscored_videos"]), scores["videos"], args.max_bad_fraction,
                       where="in the test list")
    if env.is_main and args.output_dir:
        path = os.path.join(args.output_dir, PREDICTIONS_FILE)
        save_predictions(outputs, path, test_set.clips)
        print(f"per-view logits saved to {path}; re-score with: python engine_for_finetuning.py {path}")
    return scores


def evaluate_only(classifier, test_set, has_head, args, env):
    """--eval: the multi-view test of a trained classifier, refused for one without a trained head."""
    source = training_state.trained_weights(args)
    if source is not None:
        report = load_pretrained_encoder(classifier, load_checkpoint(source))
        has_head = "head.weight" not in report["missing"]
        print(f"evaluating the classifier of {source}")
    if not has_head:
        if source is None and not args.finetune:
            raise ValueError("--eval needs a trained classifier: give --resume CHECKPOINT, the --output_dir of a "
                             "fine-tuning run, or --finetune with a fine-tuned checkpoint")
        raise ValueError(
            f"--eval: {source or args.finetune} holds no trained head for {args.nb_classes} classes (a pretraining "
            "checkpoint, or a classifier of another label set), so the test would score a random classifier. "
            "Fine-tune or linear-probe it first (FINETUNE.md), then evaluate that run with its --output_dir or "
            f"--resume OUTPUT_DIR/{training_state.BEST_CHECKPOINT}")
    classifier.to(env.device)
    multi_view_test(classifier.eval(), eval_loader(test_set, args, env, args.dist_eval), test_set, args, env)


if __name__ == "__main__":
    user_errors.run_main(main, parse_args())
