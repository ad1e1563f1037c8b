"""The ``jaxvae`` command: train, eval, sample, plot, encode, bench, study, configs.

User mistakes (a bad flag or config value, missing data, a wrong workdir) end with one line on stderr
and exit code 2, never a traceback, and never after anything in an existing workdir was changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import warnings

import jax

from jaxvae import __version__, api, bench, latents, layout, shipped, storage, summary, trackers
from jaxvae.studies import cli as studies_cli

USAGE_ERROR = 2
_CONFIG_HELP = "a shipped config's name (`jaxvae configs`) or a config file with get_config()"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr."""

    def error(self, message: str) -> None:  # noqa: D102
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(USAGE_ERROR)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxvae", description="Train and evaluate autoencoders and VAEs.")
    parser.add_argument("--version", action="version", version=f"jaxvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train (or resume) a run")
    train.add_argument("--config", required=True, help=_CONFIG_HELP)
    train.add_argument("--workdir", help="run directory (default: runs/<config name>)")
    train.add_argument("--coordinator-address", default="", help="HOST:PORT of process 0")
    train.add_argument("--num-processes", type=int, default=0, help="processes in the run")
    train.add_argument("--process-id", type=int, default=-1, help="this process's index")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run that JAX detects by itself (TPU pod slice, SLURM, MPI)",
    )

    ev = _run_parser(
        sub, "eval", "evaluate a run (its best checkpoint under early stopping, else the newest)"
    )
    ev.add_argument("--iwae-k", type=int, default=5000, help="importance samples (default 5000)")
    ev.add_argument("--num-examples", type=int, default=0, help="first N test images (0 = all)")
    ev.add_argument("--batch-size", type=int, default=10, help="images per IWAE batch")
    ev.add_argument("--disentanglement", action="store_true", help="the disentanglement metrics")
    ev.add_argument("--disentanglement-seed", type=int, default=0, help="their sampling seed")
    ev.add_argument("--disentanglement-points", type=int, default=0, help="0: the full protocol")
    ev.add_argument("--disentanglement-jobs", type=int, default=1, help="DCI's processes (-1: all)")

    sample = _run_parser(sub, "sample", "decode samples from the prior")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument("--out", default="", help="PNG path (default: WORKDIR/samples.png)")
    sample.add_argument("--seed", type=int, default=0)

    _run_parser(sub, "plot", "redraw curves.png, traversals.png and the other pictures of a run")
    enc = _run_parser(sub, "encode", "write the latent codes of a split's images (.npz)")
    enc.add_argument("--out", required=True, help="the .npz file to write")
    enc.add_argument("--split", choices=("test", "train", "validation"), default="test")

    timing = sub.add_parser("bench", help="measure training and evaluation speed (JSON on stdout)")
    timing.add_argument("--config", required=True, help=_CONFIG_HELP)
    timing.add_argument("--steps", type=int, default=0, help="timed steps (default: one epoch)")
    timing.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    timing.add_argument("--iwae-k", type=int, default=5000)
    timing.add_argument("--iwae-num", type=int, default=20, help="test images for the IWAE rate")
    timing.add_argument("--iwae-batch", type=int, default=10, help="images per IWAE batch")

    studies_cli.add_parser(sub)
    sub.add_parser("configs", help="list the shipped configs and studies, by name")
    return parser


def _run_parser(sub, name: str, description: str) -> argparse.ArgumentParser:
    """The parser of a command that reads the run in ``--workdir`` (at ``--checkpoint``)."""
    parser = sub.add_parser(name, help=description)
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--checkpoint",
        choices=("best", "newest"),
        default=None,
        help="the state to use: best (kept under early stopping) or newest "
        "(default: best when the run has one)",
    )
    return parser


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates ``--config.KEY=VALUE`` (or ``--config.KEY VALUE``) from the other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            item = arg[len("--config.") :]
            if "=" not in item and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                item = f"{item}={argv[i + 1]}"
                i += 1
            overrides.append(item)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _quiet_logs() -> None:
    """Keeps library chatter (absl, Orbax) off stderr so errors and progress stay readable."""
    from absl import logging as absl_logging  # Orbax's dependency

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in ("absl", "orbax", "jax", "tensorflow_datasets", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="orbax")


def _load_config(path: str, overrides: list[str]):
    from jaxvae import config as config_lib

    config = config_lib.load_config_file(path)
    config_lib.apply_overrides(config, overrides)
    config_lib.validate(config)
    return config


def _check_flags(args, **least: int) -> None:
    """Refuses an integer flag below its least value."""
    for name, low in least.items():
        if getattr(args, name) < low:
            flag = name.replace("_", "-")
            raise ValueError(f"--{flag} must be an integer >= {low}, got {getattr(args, name)}")


def _check_out(out: str) -> None:
    """Refuses an output file whose local directory does not exist."""
    parent = os.path.dirname(storage.abspath(out))
    if not (storage.is_remote(out) or os.path.isdir(parent)):
        raise ValueError(f"--out {out!r}: directory {parent!r} does not exist")


def _cmd_train(args, overrides) -> None:
    from jaxvae import sharding

    _check_flags(args, num_processes=0)
    config = _load_config(args.config, overrides)
    workdir = args.workdir or os.path.join("runs", pathlib.Path(args.config).stem)
    sharding.initialize_distributed(
        args.coordinator_address, args.num_processes, args.process_id, auto=args.distributed
    )
    result = api.train(config, workdir)
    if jax.process_index() == 0:
        keys = ("steps", "wall_s", "train_images_per_sec")
        shown = {k: v for k, v in result.items() if k.startswith("test_") or k in keys}
        print(json.dumps({k: v for k, v in shown.items() if k != "test_kl_per_dim"}))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_run(args):
    """The run of ``--workdir`` at the checkpoint ``--checkpoint`` asks for."""
    return api.load_run(
        args.workdir, checkpoint=args.checkpoint, warn=lambda m: _say(f"warning: {m}")
    )


def _say_which(args, run) -> None:
    """Says which state was used (once the user's input is known to be good, so that an error
    stays one line)."""
    _say(f"{args.workdir}: the {run.checkpoint} checkpoint (step {run.step})")


def _report(args, run, **what) -> None:
    """A command's figures or pictures, to the tracked runs of the run's training, if any."""
    trackers.report(args.workdir, run.experiment.logging, **what)


def _cmd_eval(args) -> None:
    from jaxvae import data as data_lib
    from jaxvae import evaluate, io
    from jaxvae.models import capabilities as caps

    if args.disentanglement:  # the metrics only (docs/disentanglement.md)
        from jaxvae import disentangle  # scikit-learn: imported where the metrics are asked for

        disentangle.reduced_protocol(args.disentanglement_points)  # checks it before loading
        run = _load_run(args)
        _say_which(args, run)
        options = {k: getattr(args, f"disentanglement_{k}") for k in ("seed", "points", "jobs")}
        found = disentangle.evaluate_run(args.workdir, run, **options)
        drawn = (layout.DISENTANGLEMENT_MATRICES, layout.FACTOR_TRAVERSALS)
        _report(args, run, figures=found, pictures=[layout.path(args.workdir, n) for n in drawn])
        print(json.dumps({k: v for k, v in found.items() if k != "disentanglement"}))
        return
    _check_flags(args, iwae_k=1, num_examples=0, batch_size=1)
    run = _load_run(args)
    model = run.model
    dataset = data_lib.load_from_config(run.config.data, run.config.seed, test_only=True)
    available = len(dataset.test_images)
    n = min(args.num_examples or available, available)
    test = {"image": dataset.test_images[:n], "label": dataset.test_labels[:n]}
    protocol = dict(dataset.protocol)
    if protocol and n < available:
        protocol["test"] += f"; its first {n} examples (--num-examples)"
    key = run.experiment.keys["eval"]
    trained = (model, *jax.device_put((run.params, run.state)))
    # the test figures as the run computed them (the same batches, hence the same keys)
    figures = evaluate.evaluate_model(*trained, test, key, batch_size=run.config.eval.batch_size)
    result = {f"test_{k}": v for k, v in figures.items() if k != "kl_per_dim"}
    _say_which(args, run)
    if caps.has(model, caps.ImportanceWeighted):
        progress = evaluate.EvalProgress(sys.stderr, f"IWAE bound (k={args.iwae_k})")
        options = {"k": args.iwae_k, "batch_size": args.batch_size, "progress": progress}
        try:
            iw = evaluate.evaluate_iwae(*trained, test, key, **options)
        finally:
            progress.close()
        result |= {"test_nll": iw["nll"], "test_nll_se": iw["nll_se"], "iwae_k": args.iwae_k}
    else:
        result["note"] = f"model kind {model.name!r} has no likelihood: no NLL bound"
    result |= summary.nats_in_bits(model, result)
    result |= {"num_examples": n, "step": run.step, "checkpoint": run.checkpoint}
    result["params_digest"] = summary.params_digest(run.params)
    if protocol:
        result["data_protocol"] = protocol | {"num_test": n}
    io.write_json(layout.path(args.workdir, layout.EVAL), result)
    _report(args, run, figures=result)
    print(json.dumps(result))


def _cmd_sample(args) -> None:
    import numpy as np

    from jaxvae import pictures, plots

    _check_flags(args, num=1)
    out = args.out or layout.path(args.workdir, layout.SAMPLES)
    run = _load_run(args)
    _check_out(out)
    model = run.model
    trained = (model, *jax.device_put((run.params, run.state)))
    images = pictures.prior_samples(*trained, jax.random.key(args.seed), args.num)
    if images is None:
        raise ValueError(
            f"model kind {model.name!r} in {args.workdir!r} has no prior to sample from "
            "(its pictures are reconstructions.png and the family's own)"
        )
    title = f"samples of the {model.name} model"
    plots.save_grid(out, np.asarray(images), min(8, args.num), title=title)
    _report(args, run, pictures=[out])
    _say_which(args, run)
    print(out)


def _cmd_plot(args) -> None:
    """Redraws a finished or running run's pictures (from its best or newest checkpoint) and
    curves."""
    import dataclasses

    from jaxvae import data as data_lib

    run = _load_run(args)
    dataset = data_lib.load_from_config(run.config.data, run.config.seed, test_only=True)
    exp = dataclasses.replace(run.experiment, dataset=dataset)  # built for run.json's data
    state = exp.abstract_state()._replace(
        step=run.step, params=jax.device_put(run.params), model_state=jax.device_put(run.state)
    )
    kl = summary.split_metrics(exp, state, "test").get("test_kl_per_dim")  # orders the traversals
    found = summary.disentanglement_found(args.workdir)
    paths = summary.draw(exp, state, args.workdir, kl_per_dim=kl, disentanglement=found)
    _report(args, run, pictures=paths)
    _say_which(args, run)
    print("\n".join(paths))


def _cmd_encode(args) -> None:
    """Writes the codes of ``--split`` (:mod:`jaxvae.latents`) and prints what was written as
    one JSON line."""
    _check_out(args.out)
    run = _load_run(args)
    codes = latents.encode_split(run, args.split)
    latents.write_npz(args.out, codes)
    _say_which(args, run)
    n, dim = codes["mean"].shape[:2]
    written = {"out": args.out, "split": args.split, "num_examples": n, "latent_dim": dim}
    written |= {"arrays": sorted(codes), "checkpoint": run.checkpoint, "step": run.step}
    print(json.dumps(written))


def _cmd_bench(args, overrides) -> None:
    options = ("steps", "repeats", "iwae_k", "iwae_num", "iwae_batch")
    config = _load_config(args.config, overrides)
    print(json.dumps(bench.run(config, **{k: getattr(args, k) for k in options})))


def main(argv: list[str] | None = None) -> int:
    rest, overrides = _split_overrides(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    with_overrides = {"train": _cmd_train, "bench": _cmd_bench, "study": studies_cli.main}
    commands = {"eval": _cmd_eval, "sample": _cmd_sample, "plot": _cmd_plot, "encode": _cmd_encode}
    commands["configs"] = lambda args: print(shipped.listing())
    try:
        args = parser.parse_args(rest)
        if overrides and args.command not in with_overrides:
            parser.error(
                f"--config.{overrides[0]}: config overrides apply to train, bench and study run only"
            )
    except SystemExit as e:  # argparse's usage errors (one line, see _Parser) and --help
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    _quiet_logs()
    from jaxvae.preemption import EXIT_PREEMPTED, Preempted

    try:
        if args.command in with_overrides:
            return with_overrides[args.command](args, overrides) or 0
        return commands[args.command](args) or 0
    except Preempted as e:
        sys.stderr.write(f"jaxvae {args.command}: {e}\n")
        return EXIT_PREEMPTED
    except (ValueError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"jaxvae {args.command}: error: {message}\n")
        return USAGE_ERROR
    except KeyboardInterrupt:
        sys.stderr.write(f"jaxvae {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
