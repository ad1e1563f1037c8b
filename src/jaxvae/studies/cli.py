"""``jaxvae study run | status | report``: the subcommands, wired into :mod:`jaxvae.cli`.

Importing this module imports neither JAX nor matplotlib; each command does when it needs them.
"""

from __future__ import annotations

import argparse
import sys

FAILED_RUNS = 1  # exit code of `study run` when a run failed (usage errors are 2)


def add_parser(sub) -> None:
    """Adds ``study`` and its subcommands to the ``jaxvae`` subparsers ``sub``."""
    study = sub.add_parser("study", help="run a grid of configs x seeds and report on it")
    cmds = study.add_subparsers(
        dest="study_command",
        metavar="{run,status,report,export}",
        required=True,
        parser_class=type(study),
    )
    run = cmds.add_parser(
        "run",
        help="train the study's runs that are not done (resumable, shardable)",
        description=(
            "Trains every run of the study (a shipped study's name or a file with get_study()) that "
            "is not done yet into DIR/runs/. "
            "--config.KEY=VALUE overrides apply to every run and are part of the study."
        ),
    )
    run.add_argument(
        "file", metavar="STUDY", help="a shipped study's name (`jaxvae configs`) or a study file"
    )
    run.add_argument("--workdir", metavar="DIR", required=True, help="the study directory")
    run.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="I/N: take the runs whose index is I mod N (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)",
    )
    run.add_argument(
        "--runs",
        metavar="PATTERNS",
        help=(
            "train only the runs whose name matches one of these comma-separated shell patterns "
            "(e.g. 'dipvae_*-seed0'); --shard then splits those"
        ),
    )
    run.add_argument("--seeds", type=int, metavar="N", help="keep the study's first N seeds")
    run.add_argument(
        "--seeds-at-once",
        type=int,
        metavar="S",
        help=(
            "train up to S seeds of a variant in one vectorized program (vmap); 1: one run at "
            "a time; default: the backend's measured choice (1 on CPU)"
        ),
    )
    helps = {
        "status": "per run: done / running / failed / pending, steps done of planned, time left",
        "report": "write DIR/report/ (report.md, results.csv, figures); print where it stands",
    }
    for name, text in helps.items():
        command = cmds.add_parser(name, help=text)
        command.add_argument("dir", metavar="DIR", help="the study directory")
    export = cmds.add_parser(
        "export",
        help="copy the done runs' record (configs, summaries, metrics; no checkpoints) to DEST",
        description=(
            "Makes DEST a study directory of the same study holding the record of every run of "
            "DIR that is done: config.json, run.json, summary.json, eval.json, metrics.jsonl. "
            "`study report DEST` reports them; `study run` on DEST (or on DIR restored from it) "
            "counts them done. Exporting again into DEST adds the runs done since."
        ),
    )
    export.add_argument("dir", metavar="DIR", help="the study directory")
    export.add_argument("dest", metavar="DEST", help="a new directory, or an earlier export")


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    """Runs ``jaxvae study ...``; ``ValueError`` for user mistakes (the caller prints one line)."""
    from jaxvae.studies import definition, execute, export, progress, report, runs

    if args.study_command == "run":
        shard = runs.parse_shard(args.shard)
        study = definition.load_study(args.file)
        options = {"seeds": args.seeds, "overrides": overrides, "seeds_at_once": args.seeds_at_once}
        outcome = execute.run_study(study, args.workdir, shard=shard, select=args.runs, **options)
        if outcome.failed:
            failed = f"{len(outcome.failed)} run(s) failed"
            print(f"{failed}; see `jaxvae study status {args.workdir}`", file=sys.stderr)
            return FAILED_RUNS
        print(f"next: jaxvae study report {args.workdir}", file=sys.stderr)
        return 0
    if overrides:
        raise ValueError(f"--config.{overrides[0]}: config overrides apply to `study run` only")
    if args.study_command == "export":
        names = export.export_study(args.dir, args.dest)
        print(f"{len(names)} done runs exported to {args.dest}")
        return 0
    if args.study_command == "report":
        paths = report.write_report(args.dir)
        print("\n".join([*report.results_table(report.collect(args.dir)), *paths.values()]))
    print(progress.format_status(progress.progress(args.dir)))
    return 0
