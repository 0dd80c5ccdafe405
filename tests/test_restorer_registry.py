"""One restorer registry: a restorer is its class and its registry row, and every list of the lab
derives from it. A trivial restorer registered here appears in the plan form's choices, the
generation plan and its job, the simulated panel, the answer's words and the CLI's choices, and
leaves them all when unregistered; no module outside review/media/restore spells a restorer's name.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter
from sqlalchemy import select

from db.models import Study
from review.analysis.export import ratings_frame
from review.answer.sentences import sentences, study_answer
from review.cli import cli
from review.config import Settings
from review.database import Lab
from review.generation.plan import GenerationPlan, create_job
from review.generation.workers import run_job
from review.labeling.guidelines.files import sync_all
from review.labeling.simulated_panel import simulate_study, truth_for
from review.labeling.study import StudyConfig, ensure_study
from review.media import catalog
from review.media.restore import RESTORERS, RestoreInput, Restorer, register, title, unregister
from review.media.restore.base import Params, param
from review.media.restore.registry import runnable_on_a_file
from review.ui.plan_form import PlanFields, restorer_choices
from tests.support import picture

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BoxParams(Params):
    size: int = param(3, lo=1, hi=9, doc="box side in px (odd)")


class BoxBlur(Restorer):
    """A deliberately poor restorer: blurs again with a box. Its class and one register() call are
    all it takes to join the lab."""

    name = "box_blur"
    title = "a 3 x 3 box blur (test restorer)"
    Params = BoxParams
    simulated_truth = {"boundary": 3.0, "width": 1.0}

    def _run(self, inp: RestoreInput, params: BoxParams) -> tuple[Image.Image, dict]:
        return inp.degraded.filter(ImageFilter.BoxBlur(params.size // 2)), {"dtype": "uint8"}


def _everywhere(settings: Settings) -> dict[str, bool]:
    """Whether box_blur is among each list's choices."""
    offered, _default = restorer_choices(weights_run=False)
    help_text = CliRunner().invoke(cli, ["restore", "--help"]).output
    return {"plan form": BoxBlur.name in offered, "CLI": BoxBlur.name in help_text,
            "CLI list": BoxBlur.name in runnable_on_a_file(), "words": title(BoxBlur.name) == BoxBlur.title,
            "panel": truth_for(BoxBlur.name, "motion_line").boundary == 3.0}


def test_a_registered_restorer_joins_every_list_and_leaves_them(lab: Lab, settings: Settings,
                                                                tmp_path: Path) -> None:
    assert not any(_everywhere(settings).values())
    register(BoxBlur)
    try:
        assert all(_everywhere(settings).values()), _everywhere(settings)

        # the plan form turns the choice into a plan; the job runs it into a study
        fields = PlanFields(source_ids=[1], level_text={"defocus": "2, 5, 8"}, methods=[BoxBlur.name],
                            strengths="0.3", steps=20, seeds="0, 1", model="", named=[])
        plan, errors = fields.plan(settings)
        assert errors == [] and plan is not None
        assert plan.restorers == [{"method": BoxBlur.name, "params": {}}]
        assert len(plan.units()) == 3  # deterministic: the seeds do not multiply it
        with lab.write() as s:
            source_id = catalog.add_source(s, lab.store, picture(1, (40, 32)), title="box").id
            guideline = next(v for v in sync_all(s) if (v.slug, v.version) == ("fidelity", 3))
            ensure_study(s, StudyConfig(name="box", raters_per_item=6, gold_rate=0.0), guideline)
        planned = GenerationPlan([source_id], plan.blurs, plan.restorers)
        assert run_job(lab, create_job(lab, "box", planned)) == "done"

        # a simulated panel rates it by its class's truth; the answer names it in its words
        with lab.write() as s:
            study = s.scalar(select(Study).where(Study.name == "box"))
            simulate_study(s, study, raters=6, seed=1)
            df = ratings_frame(s, study)
        assert set(df["restorer"]) == {BoxBlur.name}
        answer = study_answer(df, "box")
        words = " ".join(w for c in answer.curves for w in sentences(c, answer.options))
        assert BoxBlur.title in words

        # the CLI runs it on a file
        photo, out = tmp_path / "in.png", tmp_path / "out.png"
        picture(2, (40, 32)).save(photo)
        result = CliRunner().invoke(cli, ["restore", str(photo), str(out), "--method", BoxBlur.name,
                                          "--param", "size=5"])
        assert result.exit_code == 0, result.output
        assert Image.open(out).size == (40, 32) and '"size": 5' in result.output
    finally:
        unregister(BoxBlur.name)
    assert not any(_everywhere(settings).values())
    assert BoxBlur.name not in RESTORERS


# ----------------------------------------------------------------------------- no name spelt twice

#: Strings that equal a restorer's name but name something else: the Rate page's and the viewer's
#: panel showing the blurred input (a panel role, shared with viewer.js), not the restorer.
NOT_A_RESTORER_NAME = {("review/ui/rate.py", "blurred")}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def name_literals(path: Path, source: str) -> list[str]:
    """`file:line: 'text'` for each string in `source` that spells a restorer's name: equal to one,
    or holding a many-word name (sd15_img2img) as a word; docstrings are prose and left out."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    many_words = [re.compile(rf"(?<![\w]){re.escape(n)}(?![\w])") for n in RESTORERS if "_" in n]
    rel = path.relative_to(ROOT).as_posix()
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docs:
            continue
        text = node.value
        if (text in RESTORERS and (rel, text) not in NOT_A_RESTORER_NAME) or any(
                p.search(text) for p in many_words):
            out.append(f"{rel}:{node.lineno}: {text[:60]!r}")
    return out


def test_no_restorer_name_is_spelt_outside_its_class() -> None:
    """Each list of restorers derives from the registry: a name written elsewhere in review/ (a new
    list, a `method == "..."` branch) is a second place to change."""
    found = [hit for path in sorted((ROOT / "review").rglob("*.py"))
             if "media/restore" not in path.relative_to(ROOT).as_posix()
             for hit in name_literals(path, path.read_text(encoding="utf-8"))]
    assert found == [], "restorer names outside review/media/restore:\n" + "\n".join(found)


@pytest.mark.parametrize("planted", [
    'STRENGTH_METHODS = ("sd15_img2img",)\n',
    'if method == "wiener":\n    pass\n',
    'MESSAGE = f"restore it with sd15_img2img at {1}"\n',
])
def test_a_planted_name_is_found(planted: str) -> None:
    path = ROOT / "review" / "answer" / "planted.py"
    assert name_literals(path, '"""A docstring may say wiener and sd15_img2img."""\n' + planted)
