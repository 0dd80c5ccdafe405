"""Command line interface: `python -m review --help` is the reference for every command.

Settings come from the environment (REVIEW_DATA_DIR, REVIEW_DATABASE_URL, REVIEW_SD15_PATH);
errors print one readable line and exit with status 1 (2 for usage errors): every command runs
inside `ReviewCommands.invoke`, the one place a `ReviewError` becomes that line.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from review.enums import JobStatus
from review.errors import ReviewError, regular_file_problem
from review.performance import exit_without_teardown, without_gc
from review.policy import typed_roles

if TYPE_CHECKING:  # imported where used: the CLI starts without numpy and scipy
    from review.media.degrade import BlurSpec


class ReviewCommands(click.Group):
    """The command group: a domain refusal from any command (sub-groups included) is printed as
    `Error: <message>` with exit status 1, without a traceback; other exceptions are bugs and
    keep theirs."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReviewError as exc:
            raise click.ClickException(str(exc)) from exc


def _regular_file(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An input file must be a regular file: reading a FIFO given by mistake waits forever."""
    if value is not None and (problem := regular_file_problem(value)) is not None:
        raise click.BadParameter(f"{problem}; give the path of the file itself.", param=param)
    return value


@click.group(cls=ReviewCommands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Fidelity review lab: generate restorations of blurred photos, have people rate their
    fidelity, and measure how far restoration can go.

    Settings: REVIEW_DATA_DIR (default ./data), REVIEW_DATABASE_URL (default SQLite file in the
    data folder), REVIEW_SD15_PATH (local SD1.5 weights; unset = SD1.5 unavailable).
    """


@cli.command()
def init() -> None:
    """Create or upgrade the database schema in place (keeps all data) and load the guidelines."""
    from review.database import open_lab
    from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all

    lab = open_lab(migrate=True)
    with lab.write() as s:
        versions = sync_all(s, GUIDELINES_DIR, authored_dir(lab.settings.data_dir))
    click.echo(
        f"Database ready at {lab.settings.database_url.render_as_string()} "
        f"({len(versions)} guideline versions loaded)."
    )


@cli.command()
@click.option("--password", default="demo-pass", show_default=True,
              help="Password for the demo users (demo only; never use in production).")
def demo(password: str) -> None:
    """Seed the demo study from scikit-image's sample photos (idempotent: safe to rerun)."""
    from review.database import open_lab
    from review.demo import seed_demo

    lab = open_lab(migrate=True)
    summary = seed_demo(lab, password=password, echo=click.echo)
    click.echo(summary)


@cli.group()
def users() -> None:
    """Manage accounts: roles are admin, reviewer and qa."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(typed_roles()), required=True)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--password", default=None,
              help="Password (at least 8 characters); prompted for when omitted.")
def users_add(username: str, role: str, display_name: str, password: str | None) -> None:
    """Add a user."""
    from review.accounts.users import add_user
    from review.database import open_lab

    if password is None:
        password = getpass.getpass("Password: ")
    lab = open_lab()
    with lab.write() as s:
        user = add_user(s, username, password, role, display_name, actor="cli")
        click.echo(f"Added {user.username} ({user.role}).")


@users.command("list")
def users_list() -> None:
    """List users with their role and status."""
    from review.accounts.users import list_users
    from review.database import open_lab

    lab = open_lab()
    with lab.read() as s:
        rows = list_users(s)
        click.echo(f"{'username':<20} {'role':<9} {'active':<7} name")
        for u in rows:
            click.echo(f"{u.username:<20} {u.role:<9} {'yes' if u.active else 'no':<7} {u.display_name}")


def _set_active(username: str, active: bool) -> None:
    from review.accounts.users import set_active
    from review.database import open_lab

    lab = open_lab()
    with lab.write() as s:
        set_active(s, username, active, actor="cli")
    click.echo(f"{'Activated' if active else 'Deactivated'} {username}.")


@users.command("deactivate")
@click.argument("username")
def users_deactivate(username: str) -> None:
    """Deactivate a user: they can no longer log in; their ratings stay."""
    _set_active(username, False)


@users.command("activate")
@click.argument("username")
def users_activate(username: str) -> None:
    """Re-activate a deactivated user."""
    _set_active(username, True)


@users.command("reset-password")
@click.argument("username")
@click.option("--password", default=None, help="New password; prompted for when omitted.")
def users_reset_password(username: str, password: str | None) -> None:
    """Set a new password for a user."""
    from review.accounts.users import reset_password
    from review.database import open_lab

    if password is None:
        password = getpass.getpass("New password: ")
    lab = open_lab()
    with lab.write() as s:
        reset_password(s, username, password, actor="cli")
    click.echo(f"Password reset for {username}.")


@users.command("unlock")
@click.argument("username")
def users_unlock(username: str) -> None:
    """Forget a user's failed logins (login throttling), from every address."""
    from review.accounts.users import unlock
    from review.database import open_lab

    with open_lab().write() as s:
        unlock(s, username)
    click.echo(f"Failed logins of {username} cleared.")


@cli.group()
def studies() -> None:
    """Create and list studies (then fill them with `generate`)."""


@studies.command("create")
@click.argument("name")
@click.option("--guideline", default="fidelity:1", show_default=True,
              help="Guideline version as SLUG:VERSION (see guidelines/).")
@click.option("--raters-per-item", type=int, default=3, show_default=True)
@click.option("--gold-rate", type=float, default=0.1, show_default=True,
              help="Share of gold items mixed into each reviewer's queue.")
@click.option("--max-per-reviewer", type=int, default=None,
              help="Cap on items per reviewer (default: no cap, whoever asks gets work).")
@click.option("--description", default="")
def studies_create(name: str, guideline: str, raters_per_item: int, gold_rate: float,
                   max_per_reviewer: int | None, description: str) -> None:
    """Create an empty study."""
    from review.database import open_lab
    from review.labeling.study import StudyConfig, create_study

    lab = open_lab()
    with lab.write() as s:
        study = create_study(s, StudyConfig(name=name, description=description,
                                            raters_per_item=raters_per_item, gold_rate=gold_rate),
                             guideline, max_items_per_reviewer=max_per_reviewer)
        guideline_version = study.guideline_version
        assert guideline_version is not None  # create_study gives every study its guideline
        click.echo(f"Created study {name!r} (id {study.id}) under "
                   f"{guideline_version.slug} v{guideline_version.version}.")


@studies.command("list")
def studies_list() -> None:
    """List studies with their item counts."""
    from review.database import open_lab
    from review.labeling.study import count_items, list_studies

    lab = open_lab()
    with lab.read() as s:
        for study in list_studies(s):
            click.echo(f"{study.id:>4}  {study.name}  ({count_items(s, study)} items, "
                       f"{study.raters_per_item} raters per item)")


class _StudyRatings(NamedTuple):
    frame: Any  # the study's whole ratings frame (review.analysis.export.ratings_frame)
    which: str  # "used" or "all": the ratings an analysis reads
    scale: tuple[int, int]
    costs: dict[str, Any]  # pool name -> PoolCosts (review.analysis.crowd_cleansing.pool_costs)

    @property
    def in_use(self) -> Any:
        from review.analysis.export import ratings_in_use

        return ratings_in_use(self.frame, self.which)


def _study_ratings(study_name: str, which: str | None, include_history: bool = False) -> _StudyRatings:
    """A study's ratings and which of them to read (`--ratings`; by default the used ones once
    data cleansing leaves some out)."""
    from review.analysis.crowd_cleansing import pool_costs
    from review.analysis.export import default_ratings, ratings_frame
    from review.database import open_lab
    from review.labeling.study import get_study

    lab = open_lab()
    with lab.read() as s:
        study = get_study(s, study_name)
        frame = ratings_frame(s, study, include_history=include_history)
        costs = pool_costs(s, study.id)
        return _StudyRatings(frame, which or default_ratings(frame), (study.scale_min, study.scale_max),
                             costs)


#: --ratings for the commands that analyse a study (review.analysis.export.RATINGS_CHOICES).
_ratings_option = click.option(
    "--ratings", "which", type=click.Choice(["used", "all"]), default=None,
    help="Read only the ratings data cleansing uses, or all of them (default: used ones once "
         "cleansing leaves any out, else all).")


@cli.command()
@click.option("--study", "study_name", default=None, help="Analyse this study's active ratings.")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False), default=None,
              callback=_regular_file,
              help="Analyse a long-format ratings file instead (CSV, JSON Lines or Parquet with "
                   "columns item, rater, score, plus optional breakdown columns).")
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default="md", show_default=True)
@click.option("--bootstrap", type=click.IntRange(min=0), default=0, show_default=True,
              help="Bootstrap resamples over items for confidence intervals (0 = none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--scale", default="1-5", show_default=True, help="Score scale for --input, as MIN-MAX.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the report to this file instead of standard output.")
@click.option("--all-pairs", is_flag=True,
              help="List Cohen's kappa for every rater pair sharing an item (default: the pairs "
                   "sharing at least 5 items, at most 1,000 of them; both within a memory budget).")
@_ratings_option
def stats(study_name: str | None, input_path: str | None, fmt: str, bootstrap: int, seed: int,
          scale: str, output: str | None, all_pairs: bool, which: str | None) -> None:
    """Agreement statistics: Krippendorff's alpha, Fleiss' kappa, pairwise Cohen's kappa, ICC,
    MOS/DMOS per item, rater bias/inconsistency, BT.500 screening, Dawid-Skene, breakdowns."""
    # Only the options are checked here; a ratings file that does not fit and a missing study are
    # ReviewErrors (one line, from the command group), anything else is a bug and keeps its
    # traceback.
    from review.analysis.agreement import check_scale
    from review.analysis.markdown_report import report_to_markdown
    from review.analysis.ratings_file import read_ratings_file
    from review.analysis.report import build_report
    from review.analysis.report_json import report_json

    if (study_name is None) == (input_path is None):
        raise click.UsageError("Give exactly one of --study NAME or --input FILE.")
    if input_path and which:
        raise click.UsageError("--ratings applies to --study: a ratings file is read as it is.")
    try:
        lo, hi = (int(x) for x in scale.split("-"))
    except ValueError as exc:
        raise click.UsageError("--scale must look like 1-5.") from exc
    try:
        check_scale((lo, hi))
    except ValueError as exc:
        raise click.ClickException(f"--scale {scale}: {exc}.") from exc
    with without_gc():
        missing_scores = None
        if input_path:
            read = read_ratings_file(input_path, scale=(lo, hi))
            df, rng, missing_scores = read.frame, (lo, hi), read.missing_scores
        else:
            assert study_name is not None  # exactly one of the two, checked above
            study = _study_ratings(study_name, which)
            df, rng = study.in_use, study.scale
        report = build_report(df, bootstrap=bootstrap, seed=seed, scale=rng, all_pairs=all_pairs,
                              missing_scores=missing_scores)
        if not input_path:
            from review.analysis.pools_report import with_crowd_parts

            report = with_crowd_parts(report, study.frame, study.which, study.costs, bootstrap=bootstrap,
                                      seed=seed)
        text = report_json(report) if fmt == "json" else report_to_markdown(report)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"Wrote {output}.")
    else:
        click.echo(text)
    if _process_is_ours and input_path:
        # a study's report leaves normally: its database connection is closed properly
        exit_without_teardown()


@cli.command()
@click.argument("study_name")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="export",
              show_default=True, help="Folder to write into.")
@click.option("--format", "fmts", type=click.Choice(["csv", "jsonl", "parquet"]), multiple=True,
              default=("csv", "jsonl", "parquet"), show_default=True,
              help="Long-format file types (repeat the option for several).")
@click.option("--history/--active-only", default=False, show_default=True,
              help="Include superseded and retracted rating rows (the audit trail).")
@_ratings_option
def export(study_name: str, out_dir: str, fmts: tuple[str, ...], history: bool, which: str | None) -> None:
    """Export a study: long-format ratings, the wide item x rater matrix, and the statistics
    report as JSON and Markdown (each of the used ratings or all, --ratings)."""
    from review.analysis.export import matrix_csv, write_frame
    from review.analysis.markdown_report import report_to_markdown
    from review.analysis.pools_report import with_crowd_parts
    from review.analysis.report import build_report
    from review.analysis.report_json import report_json

    study = _study_ratings(study_name, which, include_history=history)
    df = study.in_use
    out = Path(out_dir)
    written = [write_frame(df, out / f"ratings.{fmt}", fmt) for fmt in fmts]
    whole = study.frame[study.frame["active"].astype(bool)] if history and not df.empty else study.frame
    active = df[df["active"].astype(bool)] if history and not df.empty else df
    matrix = out / "matrix.csv"
    matrix.write_bytes(matrix_csv(active))
    report = with_crowd_parts(build_report(active, scale=study.scale), whole, study.which, study.costs)
    (out / "report.json").write_text(report_json(report), "utf-8")
    (out / "report.md").write_text(report_to_markdown(report), "utf-8")
    for path in [*written, matrix, out / "report.json", out / "report.md"]:
        click.echo(f"Wrote {path}")


@cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False), callback=_regular_file)
@click.option("--study", "study_name", required=True, help="Name of the new study to create.")
@click.option("--scale", default="1-5", show_default=True, help="Score scale, as MIN-MAX.")
def import_cmd(path: str, study_name: str, scale: str) -> None:
    """Import long-format ratings (CSV, JSON Lines, Parquet) as a new study of external items."""
    from review.analysis.ratings_file import read_ratings_file
    from review.analysis.ratings_import import import_ratings
    from review.database import open_lab

    lo, hi = (int(x) for x in scale.split("-"))
    try:
        df = read_ratings_file(path, scale=(lo, hi)).frame
    except ValueError as exc:  # the file does not fit the format or the scale
        raise click.ClickException(str(exc)) from exc
    lab = open_lab()
    with lab.write() as s:
        study = import_ratings(s, df, study_name, (lo, hi))
        click.echo(f"Imported {len(df)} ratings into study {study.name!r}.")


def _parse_blur(text: str) -> BlurSpec:
    from review.media.degrade import BlurSpec

    parts = text.split(":")
    try:
        kind, level = parts[0], float(parts[1])
        angle = float(parts[2]) if len(parts) > 2 else 0.0
        seed = int(parts[3]) if len(parts) > 3 else 0
    except (IndexError, ValueError) as exc:
        raise click.BadParameter("use KIND:LEVEL[:ANGLE[:SEED]], e.g. defocus:4 or "
                                 "motion_line:15:30", param_hint="--blur") from exc
    try:
        return BlurSpec(kind, level, angle=angle, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--blur") from exc


def _list_models(ctx: click.Context) -> None:
    from review.config import load_settings
    from review.media.restore import list_models

    for name, path in list_models(load_settings().sd15_path).items():
        click.echo(f"{name}\t{path}")
    click.echo("tiny\t(built-in smoke-test model: not a restoration)")
    ctx.exit()


def _check_output(output: Path) -> None:
    """Refuse an OUTPUT that could not be written, before any work: its folder must exist and be
    writable, and its suffix name an image format Pillow can save."""
    from PIL import Image

    folder = output.parent
    if not folder.is_dir():
        raise click.BadParameter(f"the folder {folder} does not exist: create it first, or "
                                 "choose an OUTPUT in an existing folder.", param_hint="OUTPUT")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"the folder {folder} is not writable: choose an OUTPUT in a "
                                 "folder you can write to.", param_hint="OUTPUT")
    Image.init()
    fmt = Image.registered_extensions().get(output.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise click.BadParameter(f"{output.name} has no image suffix Pillow can write: end OUTPUT "
                                 "in .png (lossless), or e.g. .jpg or .webp.", param_hint="OUTPUT")


class RestorerChoice(click.Choice):
    """The restorers `restore` runs on a file, read from the registry when the option is used (the
    CLI starts without importing numpy, and a registered restorer is a choice at once)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from review.media.restore.registry import runnable_on_a_file

        return runnable_on_a_file()

    @choices.setter
    def choices(self, _value: tuple[str, ...]) -> None:
        """Click sets its own list on construction; the registry's is the one used."""


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False),
                callback=_regular_file)
@click.argument("output_path", metavar="OUTPUT", type=click.Path(dir_okay=False))
@click.option("--method", required=True,
              type=RestorerChoice(),
              help="Restorer to run.")
@click.option("--model", default=None,
              help="SD1.5 weights: a model NAME from --list-models, a diffusers folder or a "
                   ".safetensors/.ckpt file, or 'tiny' for the built-in smoke-test model "
                   "(default: REVIEW_SD15_PATH when it names one model).")
@click.option("--list-models", is_flag=True, is_eager=True, expose_value=False,
              callback=lambda ctx, _p, value: _list_models(ctx) if value else None,
              help="List the SD1.5 models REVIEW_SD15_PATH names (a models folder or several "
                   "paths joined by the path separator) and exit.")
@click.option("--blur", "blur_text", default=None,
              help="Blur the (sharp) INPUT first with KIND:LEVEL[:ANGLE[:SEED]] and restore that; "
                   "the classical restorers need this known kernel. The blurred input is saved "
                   "beside OUTPUT as *_blurred.png.")
@click.option("--strength", type=float, default=None, help="SD1.5 img2img strength (0-1].")
@click.option("--steps", type=int, default=None, help="SD1.5 denoising steps.")
@click.option("--guidance", type=float, default=None, help="SD1.5 classifier-free guidance scale.")
@click.option("--scheduler", default=None, help="SD1.5 scheduler: ddim, dpmpp_2m, euler_a, ...")
@click.option("--prompt", default=None, help="SD1.5 prompt.")
@click.option("--seed", type=int, default=None, help="Seed (same seed, same output).")
@click.option("--param", "extra", multiple=True, metavar="NAME=VALUE",
              help="Any other restorer parameter (repeatable), e.g. --param balance=0.02.")
def restore(input_path: str, output_path: str, method: str, model: str | None,
            blur_text: str | None, strength: float | None, steps: int | None,
            guidance: float | None, scheduler: str | None, prompt: str | None, seed: int | None,
            extra: tuple[str, ...]) -> None:
    """Restore one image file and print the provenance and metrics."""
    import json

    from review.config import load_settings
    from review.media.decode import decode_file
    from review.media.degrade import degrade
    from review.media.restore.runner import run_restorer

    _check_output(Path(output_path))  # before the restoration, not after it
    settings = load_settings()
    image = decode_file(Path(input_path))
    kernel = reference = None
    if blur_text:
        spec = _parse_blur(blur_text)
        reference, degraded = image, degrade(image, spec)
        image, kernel = degraded.image, degraded.kernel
        out = Path(output_path)
        image.save(out.with_name(out.stem + "_blurred.png"))
    params: dict[str, Any] = {k: v for k, v in {
        "strength": strength, "steps": steps, "guidance_scale": guidance, "scheduler": scheduler,
        "prompt": prompt, "seed": seed}.items() if v is not None}
    for item in extra:
        name, _, value = item.partition("=")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    try:
        result = run_restorer(method, image, kernel=kernel, reference=reference, params=params,
                              model=model, settings=settings)
    except ValueError as exc:  # a parameter the restorer does not accept
        raise click.ClickException(str(exc)) from exc
    result.image.save(output_path)
    click.echo(json.dumps({"output": output_path, "provenance": result.provenance,
                           "metrics": result.metrics}, indent=2, default=str))


@cli.command()
@click.argument("study_name", required=False)
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), default=None,
              callback=_regular_file,
              help="A JSON generation plan: {source_ids, blurs, restorers, seeds, model}; creates "
                   "a new job for STUDY.")
@click.option("--job", "job_id", type=int, default=None, help="Run or resume this job id.")
@click.option("--quiet", is_flag=True, help="No progress bar (for background workers).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes to run on this machine at once.")
@click.option("--lease", "lease_s", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds a worker's claim on an item lasts unless renewed (it renews while it "
                   "works): after a worker is killed, its item is claimed again this much later.")
def generate(study_name: str | None, plan_path: str | None, job_id: int | None,
             quiet: bool, workers: int, lease_s: float) -> None:
    """Run a study's generation plan (or resume its unfinished job): degraded images,
    restorations and study items, skipping whatever already exists.

    Several workers can run one job: start `generate --job N` again, here or on other machines
    sharing the database (each claims items through it), or give --workers. A worker that finds
    every unfinished item claimed by a live worker says when it can take over and exits 75."""
    import json
    from datetime import timedelta

    from review.database import open_lab
    from review.generation.plan import GenerationPlan, JobBusy, JobError, create_job
    from review.generation.workers import BUSY_EXIT, run_job, run_workers, unfinished_job

    lab = open_lab()
    if job_id is None:
        if not study_name:
            raise click.UsageError("Give STUDY (with --plan, or to resume) or --job ID.")
        if plan_path:
            try:
                data = json.loads(Path(plan_path).read_text())
            except ValueError as exc:
                raise click.ClickException(f"{plan_path} is not valid JSON: {exc}") from exc
            job_id = create_job(lab, study_name, GenerationPlan.from_json(data))
            click.echo(f"Created job {job_id}.")
        else:
            job_id = unfinished_job(lab, study_name)
            if job_id is None:
                raise JobError(f"Study {study_name!r} has no unfinished job; give --plan FILE.")
            click.echo(f"Resuming job {job_id}.")
    lease = timedelta(seconds=lease_s)
    try:
        if workers > 1:
            status = run_workers(lab, job_id, workers, lease, echo=click.echo)
        elif quiet:
            status = run_job(lab, job_id, lease=lease)
        else:
            with click.progressbar(length=1, label=f"job {job_id}") as bar:
                def progress(done: int, total: int) -> None:
                    bar.length = total
                    bar.update(done - bar.pos)

                status = run_job(lab, job_id, progress, lease=lease)
    except JobBusy as exc:
        click.echo(str(exc), err=True)
        sys.exit(BUSY_EXIT)
    click.echo(f"Job {job_id}: {status}.")
    if status != JobStatus.DONE:
        sys.exit(1 if status == JobStatus.FAILED else 0)


@cli.command()
@click.option("--study", "study_name", required=True, help="The study to add simulated raters to.")
@click.option("--raters", type=int, default=8, show_default=True,
              help="Simulated raters (each rates every item).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated panel.")
@click.option("--remove", is_flag=True, help="Remove the study's simulated ratings and raters instead.")
def simulate(study_name: str, raters: int, seed: int, remove: bool) -> None:
    """Add a simulated rating panel (P.910 raters over a known ground truth, guideline and QA
    effects) to a study, or remove it; its ratings are marked simulated everywhere."""
    from review.database import open_lab
    from review.labeling.simulated_panel import remove_simulated, simulate_study
    from review.labeling.study import get_study

    lab = open_lab()
    with lab.write() as s:
        study = get_study(s, study_name)
        if remove:
            n = remove_simulated(s, study)
            click.echo(f"Removed {n} simulated ratings from study {study.name!r}.")
        else:
            click.echo(simulate_study(s, study, raters=raters, seed=seed).line())


@cli.command()
@click.option("--study", "study_name", required=True, help="The study to answer for.")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
@click.option("--threshold", type=float, default=0.8, show_default=True,
              help="h: a blur level is usable when at least this share of ratings is faithful.")
@click.option("--faithful-min", type=int, default=4, show_default=True,
              help="A score at or above this counts as faithful.")
@click.option("--beta", type=float, default=1.96, show_default=True,
              help="Width of the uncertain zone: mean +- beta * sd against the threshold.")
@click.option("--simulated/--no-simulated", "include_simulated", default=True, show_default=True,
              help="Include the ratings of a simulated panel.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the curves and boundaries as CSV to this file.")
@_ratings_option
def answer(study_name: str, fmt: str, threshold: float, faithful_min: int, beta: float,
           include_simulated: bool, csv_path: str | None, which: str | None) -> None:
    """How far can it go: per restorer the blur level up to which restorations stay faithful,
    with its 95 % interval, what it rests on, and the next levels worth rating."""
    from review.answer.boundary import Options
    from review.answer.sentences import answer_csv, answer_json, answer_markdown, study_answer

    try:
        options = Options(faithful_min=faithful_min, threshold=threshold, beta=beta)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    study = _study_ratings(study_name, which)
    result = study_answer(study.frame, study_name, options, include_simulated=include_simulated,
                          which=study.which)
    click.echo(answer_json(result) if fmt == "json" else answer_markdown(result))
    if csv_path:
        Path(csv_path).write_bytes(answer_csv(result))
        click.echo(f"Wrote {csv_path}", err=True)


def _pool_line(s: Any, pool: Any) -> str:
    from review.labeling.pools import participant_count, places_left

    left = places_left(s, pool)
    pay = f", {pool.pay_per_item:g} {pool.currency}/item" if pool.pay_per_item else ""
    return (f"{pool.id:>4}  {pool.name}  [{pool.kind}, {pool.platform}, {pool.status}] "
            f"{participant_count(s, pool.id)} participants"
            + (f", {left} places left" if left is not None else "") + pay)


@cli.group()
def pool() -> None:
    """Rater pools of a study: add, list, give out the recruitment link, close, open, void links."""


@pool.command("add")
@click.option("--study", "study_name", required=True, help="The study the pool recruits for.")
@click.option("--name", required=True, help="The pool's name (unique in the study).")
@click.option("--kind", type=click.Choice(["crowd", "company", "in_house"]), default="crowd",
              show_default=True)
@click.option("--platform", type=click.Choice(["prolific", "mturk", "plain", "custom"]), default="plain",
              show_default=True, help="Whose participant parameters the link reads.")
@click.option("--id-param", default="", help="custom platform: the participant id's parameter name.")
@click.option("--completion-code", default="", help="The code shown at the end (crowd pools need one).")
@click.option("--screened-out-code", default="", help="Shown to those screened out.")
@click.option("--no-places-code", default="", help="Shown when the pool is closed or full.")
@click.option("--return-url", default="", help="https:// link back to the platform after the code.")
@click.option("--quota", type=click.IntRange(min=1), default=None,
              help="Participants admitted (none = no limit).")
@click.option("--pay-per-item", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--pay-per-session", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--items-per-session", type=int, default=20, show_default=True)
@click.option("--training-items", type=int, default=3, show_default=True)
@click.option("--qualification-items", type=int, default=4, show_default=True)
@click.option("--pass-share", type=float, default=0.8, show_default=True,
              help="Qualification: share of gold items right (within the tolerance) to pass.")
@click.option("--pass-tolerance", type=int, default=1, show_default=True)
@click.option("--trap-rate", type=float, default=0.1, show_default=True)
@click.option("--viewing-check/--no-viewing-check", default=True, show_default=True)
@click.option("--min-width", type=int, default=1024, show_default=True)
def pool_add(study_name: str, name: str, kind: str, platform: str, id_param: str, completion_code: str,
             screened_out_code: str, no_places_code: str, return_url: str, quota: int | None,
             pay_per_item: float, pay_per_session: float, currency: str, items_per_session: int,
             training_items: int, qualification_items: int, pass_share: float, pass_tolerance: int,
             trap_rate: float, viewing_check: bool, min_width: int) -> None:
    """Add an open pool to a study."""
    from review.database import open_lab
    from review.labeling.pools import PoolSettings, PoolSpec, add_pool
    from review.labeling.study import get_study

    flow = PoolSettings(items_per_session=items_per_session, viewing_check=viewing_check, min_width=min_width,
                        contrast_check=viewing_check, training_items=training_items,
                        qualification_items=qualification_items, pass_share=pass_share,
                        pass_tolerance=pass_tolerance, trap_rate=trap_rate, id_param=id_param)
    spec = PoolSpec(name=name, kind=kind, platform=platform, quota=quota, pay_per_item=pay_per_item,
                    pay_per_session=pay_per_session, currency=currency, completion_code=completion_code,
                    screened_out_code=screened_out_code, no_places_code=no_places_code,
                    return_url=return_url, flow=flow)
    lab = open_lab()
    with lab.write() as s:
        made = add_pool(s, get_study(s, study_name).id, spec)
        click.echo(f"Added pool {made.name!r} (id {made.id}); give out its link with "
                   f"`python -m review pool link {made.id} --base-url https://...`.")


@pool.command("list")
@click.option("--study", "study_name", required=True)
def pool_list(study_name: str) -> None:
    """List a study's pools with their participants and places left."""
    from review.database import open_lab
    from review.labeling.pools import pools_of
    from review.labeling.study import get_study

    lab = open_lab()
    with lab.read() as s:
        for p in pools_of(s, get_study(s, study_name).id):
            click.echo(_pool_line(s, p))


@pool.command("link")
@click.argument("pool_id", type=int)
@click.option("--base-url", required=True, help="The lab's address as participants reach it.")
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True, help="Valid for.")
def pool_link_cmd(pool_id: int, base_url: str, days: int) -> None:
    """Print the pool's recruitment link with its platform's parameter placeholders."""
    from datetime import timedelta

    from review.accounts.links import lab_secret
    from review.analysis.crowd_exports import link_note, pool_link
    from review.database import open_lab
    from review.labeling.pools import get_pool

    lab = open_lab()
    with lab.read() as s:
        click.echo(pool_link(s, lab_secret(lab.settings), pool_id, base_url, timedelta(days=days)))
        click.echo(link_note(get_pool(s, pool_id)), err=True)


def _pool_change(pool_id: int, what: str) -> None:
    from review.database import open_lab
    from review.labeling.pools import set_open, void_links

    lab = open_lab()
    with lab.write() as s:
        if what == "void":
            p = void_links(s, pool_id)
            click.echo(f"Voided every link of pool {p.name!r} given out so far "
                       f"(now version {p.link_version}).")
        else:
            p = set_open(s, pool_id, what == "open")
            click.echo(f"Pool {p.name!r} is {p.status}.")


@pool.command("close")
@click.argument("pool_id", type=int)
def pool_close(pool_id: int) -> None:
    """Close a pool to new participants (those in it go on)."""
    _pool_change(pool_id, "close")


@pool.command("open")
@click.argument("pool_id", type=int)
def pool_open(pool_id: int) -> None:
    """Open a closed pool again."""
    _pool_change(pool_id, "open")


@pool.command("void")
@click.argument("pool_id", type=int)
def pool_void(pool_id: int) -> None:
    """Void every link of the pool given out so far (a leaked link); make a new one with `link`."""
    _pool_change(pool_id, "void")


@cli.command()
@click.option("--study", "study_name", required=True)
@click.option("--override", "participant", type=int, default=None,
              help="Decide this participant's submission.")
@click.option("--outcome", type=click.Choice(["accept_use", "accept_no_use", "reject"]), default=None)
@click.option("--reason", default="", help="Why (required with --override).")
@click.option("--by", "admin", default=None, help="The admin deciding (username; required with --override).")
@click.option("--reopen", is_flag=True, help="Free the items of not-used submissions for new participants.")
@click.option("--export", "which", type=click.Choice(["report", "approve", "bonus", "blocklist"]),
              default=None, help="Write this file (CSV) instead of cleansing.")
@click.option("--platform", type=click.Choice(["prolific", "mturk", "plain"]), default="plain",
              show_default=True, help="The export's shape.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the export here (default: standard output).")
def cleanse(study_name: str, participant: int | None, outcome: str | None, reason: str, admin: str | None,
            reopen: bool, which: str | None, platform: str, output: str | None) -> None:
    """Data cleansing of a study's finished crowd submissions: run it (default), override one
    decision, reopen not-used submissions' items, or export what goes back to the platform."""
    from review.accounts.users import get_user
    from review.analysis import crowd_cleansing as cc
    from review.analysis import crowd_exports as ce
    from review.database import open_lab
    from review.enums import Role
    from review.labeling.study import get_study

    lab = open_lab()
    if which is not None:
        with lab.read() as s:
            data = ce.export_csv(s, get_study(s, study_name).id, which, platform)
        if output:
            Path(output).write_bytes(data)
            click.echo(f"Wrote {output}", err=True)
        else:
            click.echo(data.decode("utf-8"), nl=False)
        return
    if participant is not None:
        if outcome is None or not reason.strip() or not admin:
            raise click.UsageError("--override needs --outcome, --reason and --by ADMIN.")
        with lab.write() as s:
            user = get_user(s, admin)
            if user.role != Role.ADMIN:
                raise click.UsageError(f"{admin!r} is not an admin.")
            cc.override(s, participant, outcome, reason, actor_id=user.id)
        click.echo(f"Participant {participant}: {outcome} ({reason.strip()}).")
        return
    with lab.write() as s:
        study_id = get_study(s, study_name).id
        if reopen:
            click.echo(ce.reopen_items(s, study_id).line())
            return
        result = cc.run_cleansing(s, study_id)
    if result is None:
        click.echo("No finished crowd submissions to cleanse yet.")
        return
    counts = result.outcome_counts()
    click.echo(f"{len(result.submissions)} submissions: {counts['accept_use']} accept and use, "
               f"{counts['accept_no_use']} accept but do not use, {counts['reject']} reject.")


@cli.command("backup")
@click.argument("dest", type=click.Path(file_okay=False))
def backup_cmd(dest: str) -> None:
    """Back up a running lab to the empty folder DEST: a consistent snapshot of the SQLite
    database, then every image file it refers to and the lab's own guideline versions
    (REVIEW_DATA_DIR/guidelines/), each checked against its sha256; exits 1 naming the files if
    any is missing or damaged. To restore, point REVIEW_DATA_DIR at DEST (or a copy of it)."""
    from review.backup import backup
    from review.config import load_settings

    db_path, images, guidelines = backup(load_settings(), Path(dest))
    click.echo(f"Backed up the database to {db_path}, the {images} image files it refers to and "
               f"{guidelines} guideline files (each checked).")


#: True when `python -m review` runs this module (not a test's CliRunner): commands may then
#: leave the process themselves
_process_is_ours = False


def main() -> None:
    global _process_is_ours
    _process_is_ours = True
    cli(prog_name="python -m review")
