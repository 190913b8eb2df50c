"""``catdog quantize MODEL_DIR DATA_DIR...``: int8 copy of a trained model, recalibrated."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from catdog.commands._common import import_training


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="make an int8 copy of a trained model (faster on CPU) and recalibrate it",
        description="Quantise MODEL_DIR (model.onnx + model.json from `catdog train`) to int8 with ONNX "
                    "Runtime static quantisation. Photos from the training split of DATA_DIR fix the "
                    "activation ranges and measure the int8 model's average logit shift, which is removed from "
                    "the head's bias; the held-out split (the same stratified split `catdog train` used) "
                    "refits the calibration temperature on the int8 model's own outputs. Check the result "
                    "with `catdog evaluate VAL_DIR --model OUT` before serving it.",
    )
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    parser.add_argument("data", nargs="+", type=Path, metavar="DATA_DIR", help="the folders the model was trained on")
    parser.add_argument("--others", type=Path, nargs="*", default=[], metavar="DIR",
                        help="the folders of non-pet photos an open-world model was trained with "
                             "(`catdog train --others`)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the int8 model")
    parser.add_argument("--name", default=None, help="model name written to model.json (default: the trained model's name + '-int8')")
    parser.add_argument("--per-class", type=int, default=128,
                        help="calibration photos per class (default 128)")
    parser.add_argument("--float-convs", type=int, default=8,
                        help="keep the first N convolutions in float (default 8); the last convolution "
                             "and the head always stay float")
    parser.add_argument("--uint8-input", action="store_true",
                        help="the int8 model takes the raw uint8 pixels and normalises them inside its graph "
                             "(no per-pixel float work in Python); measured 1.8 ms per photo slower on one "
                             "thread for catdog-lite2, so off by default (docs/benchmarks.md)")
    parser.add_argument("--holdout", type=float, default=0.1, help="held-out fraction used in training (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="split seed used in training (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quantize = import_training("quantize", "quantize")
    if quantize is None:
        return 2
    if not (args.model_dir / "model.onnx").is_file():
        print(f"{args.model_dir} has no model.onnx: point MODEL_DIR at a `catdog train --out` folder")
        return 2
    held_out = quantize.quantize_and_recalibrate(args.model_dir, args.out, args.data, others=args.others,
                                        holdout_fraction=args.holdout,
                                        seed=args.seed, per_class=args.per_class,
                                        float_convs=args.float_convs, name=args.name,
                                        uint8_input=args.uint8_input)
    print(json.dumps({"held_out": held_out}))
    print(f"int8 model written to {args.out}; check it with: catdog evaluate VAL_DIR --model {args.out}")
    return 0
