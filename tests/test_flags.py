"""flags.py: the parent parser of the four entry points, BoolFlag, checked values."""
import argparse

import pytest

import eval_knn
import extract_features
import run_class_finetuning
import run_sigma_pretraining
from flags import BoolFlag
from utils import default_loader_workers

WORKERS = default_loader_workers()  # depends on the machine: tested in test_utils

# Every flag of every entry point with its default, as they were before the entry points shared a parser:
# one parser for all must not change any of them.
PRETRAIN = dict(
    augmentation='multi_scale_crop', auto_resume=True, batch_size=16, clip_grad=None, compile=False, data_path_csv=None,
    decoder_depth=4, depth=None, device='auto', dist_timeout=30, distillation_teacher='dino_b', drop_path=0.0, epochs=801,
    freeze_projection_niters=0, freeze_prototypes_niters=0, gray_scale_prob=0.0, input_size=224,
    local_rank=None, log_dir=None, log_images_every=0, loss_func='SWAV', lr=0.00015, mask_ratio=0.9, mask_type='tube',
    max_bad_fraction=0.05, min_lr=1e-05, model='pretrain_videomae_base_patch16_224', normlize_target=True,
    num_frames=16, num_prototypes=3000, num_sample=1, num_workers=WORKERS, opt='adamw', opt_betas=[0.9, 0.95],
    opt_eps=1e-08, output_dir='', patch_size=16, pin_mem=True, precision=None, print_freq=None, queue_length=0,
    queue_start_epoch=0,
    resume='',
    run_name='sigma_pretrain', sampling_rate=4, save_ckpt_freq=20, seed=0, sinkhorn_eps=0.05,
    sinkhorn_iterations=10, soft_targets=False, steps_per_epoch=None, target_type='mlp', teacher_precision=None,
    teacher_weights=None,
    wandb=False, wandb_project='SIGMA', warmup_epochs=40, warmup_lr=0.0, warmup_steps=-1, weight_decay=0.05,
    weight_decay_end=None, stop_signals=['USR1', 'TERM']
)
FINETUNE = dict(
    aa='rand-m7-n4-mstd0.5-inc1', attn_drop_rate=0.0, auto_resume=True, batch_size=64, cache_features=False,
    clip_grad=None, cutmix=1.0, cutmix_minmax=None, data_path_csv=None, data_set='Kinetics-400', depth=None,
    device='auto',
    disable_eval_during_finetuning=False, dist_eval=False, dist_timeout=30, drop=0.0, drop_path=0.1,
    enable_deepspeed=False, epochs=30, eval=False, examples=0, fc_drop_rate=0.0, finetune='',
    horizontal_flip=None, init_scale=0.001, input_size=224, layer_decay=0.75, linear_probing=False,
    local_rank=None, log_dir=None, lr=0.001, max_bad_fraction=0.01, min_lr=1e-06, mixup=0.8, mixup_mode='batch',
    mixup_prob=1.0, mixup_switch_prob=0.5, model='vit_base_patch16_224', model_ema=False,
    model_ema_decay=0.9999, model_ema_force_cpu=False, nb_classes=400, num_frames=16, num_sample=2,
    num_workers=WORKERS, opt='adamw', opt_betas=[0.9, 0.999], opt_eps=1e-08, output_dir='', patch_size=None, pin_mem=True,
    precision=None, print_freq=None, recount=1, remode='pixel', reprob=0.25, resume='', run_name='sigma_finetune',
    sampling_rate=4, save_ckpt=True, save_ckpt_freq=100, seed=0, short_side_size=224, smoothing=0.1,
    test_num_crop=3, test_num_segment=5, train_interpolation='bicubic', tubelet_size=2, update_freq=1,
    use_mean_pooling=True, wandb=False, wandb_project='SIGMA', warmup_epochs=5, warmup_lr=1e-06,
    warmup_steps=-1, weight_decay=0.05, weight_decay_end=None, zero_stage=1, stop_signals=['USR1', 'TERM']
)
# The encoder geometry is unset: the --finetune checkpoint's (encoder_geometry.py).
EXTRACT = dict(
    batch_size=32, data_path_csv=None, data_set='custom', depth=None, device='auto', dist_timeout=30, finetune='',
    input_size=None, max_bad_fraction=0.01, model='vit_base_patch16_224', num_frames=None, num_workers=WORKERS,
    patch_size=None, pin_mem=True, precision=None, sampling_rate=4, seed=0, short_side_size=224, tokens=False,
    tubelet_size=None,
    use_mean_pooling=False
)
KNN = dict(
    batch_size=32, data_path_csv=None, data_set='custom', depth=None, device='auto', dist_timeout=30, finetune='',
    input_size=None, max_bad_fraction=0.01, model='vit_base_patch16_224', nb_knn=[200], num_frames=None,
    num_workers=WORKERS, patch_size=None, pin_mem=True, precision=None, sampling_rate=4, seed=0,
    short_side_size=224, temperature=0.07, tubelet_size=None, use_mean_pooling=False
)
# entry point: (its parser, how it parses, the flags it requires besides --data_path, its defaults)
ENTRY_POINTS = {
    "pretraining": (run_sigma_pretraining.get_args_parser, run_sigma_pretraining.parse_args, [], PRETRAIN),
    "fine-tuning": (run_class_finetuning.get_args_parser, run_class_finetuning.parse_args, [], FINETUNE),
    "features": (extract_features.get_args_parser, lambda argv: extract_features.get_args_parser().parse_args(argv),
                 ["--output", "f.pt"], dict(EXTRACT, output="f.pt")),
    "k-NN": (eval_knn.get_args_parser, lambda argv: eval_knn.get_args_parser().parse_args(argv),
             ["--nb_classes", "4"], dict(KNN, nb_classes=4)),
}


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_every_flag_and_default_of_each_entry_point(entry_point):
    build, parse, required, expected = ENTRY_POINTS[entry_point]
    assert vars(parse(["--data_path", "x", *required])) == dict(expected, data_path="x")
    build().format_help()  # every help string formats (a stray % would raise here)


def test_a_shared_flag_keeps_each_entry_point_its_own_default():
    # One parent parser, built anew for every entry point: a default one sets does not leak into another.
    assert run_class_finetuning.get_args_parser().parse_args(["--data_path", "x"]).batch_size == 64
    assert run_sigma_pretraining.get_args_parser().parse_args(["--data_path", "x"]).batch_size == 16
    assert run_class_finetuning.get_args_parser().parse_args(["--data_path", "x"]).batch_size == 64


# ---- values checked as they are parsed, in every entry point ------------------------------------

@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "0"], "argument --batch_size: must be positive, got 0"),
    (["--batch_size", "two"], "argument --batch_size: invalid int value: 'two'"),
    (["--max_bad_fraction", "1.5"], "argument --max_bad_fraction: must be in [0, 1], got 1.5"),
    (["--num_workers", "-1"], "argument --num_workers: must not be negative, got -1"),
    (["--dist_timeout", "0"], "argument --dist_timeout: must be positive, got 0.0"),
])
def test_bad_shared_values_fail_naming_the_flag(capsys, entry_point, argv, message):
    _, parse, required, _ = ENTRY_POINTS[entry_point]
    with pytest.raises(SystemExit) as exit_info:
        parse(["--data_path", "x", *required, *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_local_rank_must_agree_with_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert run_sigma_pretraining.parse_args(["--data_path", "x", "--local_rank", "1"]).local_rank == 1
    with pytest.raises(SystemExit):
        run_sigma_pretraining.parse_args(["--data_path", "x", "--local-rank", "0"])
    assert "argument --local-rank: 0 disagrees with LOCAL_RANK=1" in capsys.readouterr().err


# ---- BoolFlag -----------------------------------------------------------------------

def _bool_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--normlize_target", action=BoolFlag, default=True)
    parser.add_argument("--wandb", action=BoolFlag, default=False)
    return parser


@pytest.mark.parametrize("argv, expected", [
    ([], True),
    (["--normlize_target"], True),
    (["--no-normlize_target"], False),
    (["--no_normlize_target"], False),
    (["--normlize_target", "True"], True),    # how the published scripts pass it
    (["--normlize_target", "False"], False),  # type=bool would have read this as True
    (["--normlize_target=false"], False),
    (["--normlize_target", "0"], False),
])
def test_bool_flag_both_ways(argv, expected):
    assert _bool_parser().parse_args(argv).normlize_target is expected


def test_bool_flag_default_off_switches_on():
    assert _bool_parser().parse_args([]).wandb is False
    assert _bool_parser().parse_args(["--wandb"]).wandb is True


@pytest.mark.parametrize("argv, message", [
    (["--normlize_target", "maybe"], "argument --normlize_target: expected true or false, got 'maybe'"),
    (["--no-normlize_target", "True"], "argument --no-normlize_target: takes no value"),
])
def test_bool_flag_rejects_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bool_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
