"""k-NN classification of frozen encoder features (DINO's weighted vote), without any training.

    python eval_knn.py --data_set SSV2 --nb_classes 174 --data_path LIST_DIR --model vit_base_patch16_224 \\
        --finetune hf://SMSD75/SIGMA/pretrain/ssv2/ssv2_vit_b_sigma_with_dino.pth --num_frames 16
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=8 eval_knn.py ...   # spread over GPUs

The bank is the labelled training list LIST_DIR/train.csv, the queries the separate
validation list LIST_DIR/val.csv (the published script matched the test set against
itself, which measures nothing). Every video is read once as a validation view (see
extract_features.py). Features are L2-normalised; each query takes its k most cosine-
similar bank videos (k capped at the bank size), each of which votes for its label with
weight exp(similarity / T); the scores of the classes are the summed votes.
"""
import torch
import torch.nn.functional as F

import dist_utils
import user_errors
import utils
from clip_lists import read_clip_list, split_list
from engine_for_finetuning import topk_correct
from extract_features import build_encoder, compute_features, encoder_parser
from flags import POSITIVE_FLOAT, POSITIVE_INT, check_paths

KNN_CHUNK = 1024  # queries per similarity matrix: 1024 x bank floats at a time


def get_args_parser():
    parser, groups = encoder_parser("SIGMA k-NN evaluation", __doc__,
                                    lists="the directory of train.csv (the bank) and val.csv (the queries)")
    knn = parser.add_argument_group("k-NN")
    knn.add_argument("--nb_classes", type=POSITIVE_INT, required=True, help="number of classes of the lists")
    knn.add_argument("--nb_knn", type=POSITIVE_INT, nargs="+", default=[200], help="neighbour counts k to evaluate")
    knn.add_argument("--temperature", type=POSITIVE_FLOAT, default=0.07, help="T of the vote weights exp(sim / T)")
    return parser


@torch.no_grad()
def knn_classify(bank, bank_labels, queries, num_classes, k=200, temperature=0.07):
    """DINO's weighted k-NN vote.

    Args:
        bank: float (N, D) features of labelled videos; bank_labels: int64 (N,).
        queries: float (Q, D). Both are L2-normalised here, so similarity is cosine.
        k: neighbours per query, capped at N.
    Returns:
        float (Q, num_classes): per class, the summed exp(similarity / temperature) of
        the query's k nearest bank videos of that class.
    """
    bank, queries = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    k = min(k, len(bank))
    scores = []
    for chunk in queries.split(KNN_CHUNK):
        similarity, neighbours = (chunk @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(chunk), num_classes, dtype=torch.float32, device=chunk.device)
        scores.append(votes.scatter_add_(1, bank_labels[neighbours], (similarity / temperature).exp()))
    return torch.cat(scores)


def split_clips(args, split):
    """The clips of a split, in the fine-tuning layout of --data_path / --data_path_csv."""
    return read_clip_list(*split_list(args.data_path, args.data_path_csv, split), num_classes=args.nb_classes)


def main(args):
    dist_utils.launch(evaluate, args, "k-NN evaluation")


def evaluate(args, env):
    """Prints and returns {k as used (capped at the bank size): dict(acc1, acc5, queries, bank)}."""
    check_paths(args)
    args.precision = utils.resolve_precision(args.precision, env.device)
    print(utils.describe_run(args))
    # Both lists before any feature: a missing val.csv is found at once, not after the bank's features.
    bank_clips, query_clips = split_clips(args, "train"), split_clips(args, "val")
    encoder = build_encoder(args).to(env.device)
    bank = compute_features(encoder, bank_clips, args, env, "the bank (train.csv)")
    queries = compute_features(encoder, query_clips, args, env, "the queries (val.csv)")
    results = {}
    for k in args.nb_knn:
        scores = knn_classify(bank["features"], bank["labels"], queries["features"], args.nb_classes, k,
                              args.temperature)
        correct = topk_correct(scores, queries["labels"])
        n, k = len(queries["labels"]), min(k, len(bank["labels"]))
        results[k] = dict(acc1=100 * correct[1] / n, acc5=100 * correct[5] / n, queries=n, bank=len(bank["labels"]))
        print(f"k-NN (k={k}, T={args.temperature}) of {n} val videos against {len(bank['labels'])} train videos: "
              f"top-1 {results[k]['acc1']:.2f}%, top-5 {results[k]['acc5']:.2f}%")
    return results


if __name__ == "__main__":
    user_errors.run_main(main, get_args_parser().parse_args())
