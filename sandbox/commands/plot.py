"""`sandbox plot RUN_DIR...`: overlay the training and validation curves of any runs.

    sandbox plot runs/bigram-mosaic-seed0 runs/bigram-gpt-seed0 --out plots/bigram
    sandbox plot runs/* --metrics loss,in_context_accuracy --tensorboard tb/

Writes OUT.png, OUT.pdf and OUT.json (the plotted numbers); one panel per metric the runs report
(the loss first), training solid, validation dashed. `--tensorboard DIR` also writes the metrics as
TensorBoard events (needs the optional `tensorboard` package; `tensorboard --logdir DIR` shows them).
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (each with metrics.jsonl)")
    parser.add_argument("--out", default="curves", help="output path without suffix (default: ./curves)")
    parser.add_argument("--metrics", help="comma-separated metrics to draw (default: the loss and every task metric)")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files under DIR")


def run(args) -> int:
    from sandbox.curves import export_tensorboard, plot_curves

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    paths = plot_curves(args.run_dirs, args.out, metrics)
    for path in paths.values():
        print(f"wrote {path}")
    if args.tensorboard:
        for path in export_tensorboard(args.run_dirs, args.tensorboard):
            print(f"wrote TensorBoard events to {path}")
    return 0
