"""Recipes: version-controlled YAML files that mirror a paper's result table.

A recipe names the paper, the table it mirrors and, per row, the paper's numbers with
their source; it says how to train every row at three scales:

- ``paper``: the paper's dataset, model and hyperparameters (needs GPUs and the data);
- ``mini``: a CPU proxy on the bundled digits (minutes on a laptop; checks the direction
  of each effect, never the paper's absolute numbers);
- ``smoke``: synthetic data, one epoch, a few batches (for tests).

One run config is built for every row x scale x step by layering, last wins::

    base -> steps[k] -> scales[s].set -> scales[s].steps[k]
         -> row.set -> row.steps[k] -> row.scales[s].set -> row.scales[s].steps[k]
         -> --set overrides (and the seed)

``set`` maps are dotted keys (``optim.lr: 0.01``); a mapping value is merged into the
section it names, an empty mapping (``model.options: {}``) clears it. ``base`` and the
steps hold the paper's hyperparameters, scales the size of the run (data, epochs,
widths), rows the method difference, so a mini proxy keeps every row's switch. Rows pick
optional steps with ``use_steps``; a scale drops steps with ``skip_steps`` (the paper
scale reads a teacher from a file where the mini scale trains it as an earlier step), and
``{data_dir}`` in a checkpoint path is the run's data folder. Every expanded config is validated as a
:class:`~bnnlab.config.StepConfig` when the recipe loads, with model, quantizer and
dataset names checked against the registries, so a typo in any row fails at once.

    >>> recipe = load_recipe("bireal-imagenet")
    >>> plan = recipe.plan("mini", rows=["bireal18"], seeds=2)
    >>> plan[0].row_id, plan[0].seed, [s.name for s in plan[0].steps]
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bnnlab.config import (
    StepConfig,
    _format_validation_error,
    apply_overrides,
    deep_merge,
    validate_config,
)
from bnnlab.errors import BnnlabError, UnknownNameError

__all__ = ["SCALES", "Recipe", "RecipeRow", "PlannedRun", "PaperMetrics", "load_recipe", "list_recipes",
           "recipe_names", "expand_sets"]

SCALES = ("paper", "mini", "smoke")
Scale = Literal["paper", "mini", "smoke"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaperRef(_Strict):
    title: str
    arxiv: str | None = None
    year: int = Field(ge=1950, le=2100)
    venue: str | None = None
    authors: str | None = None
    url: str | None = None


class PaperMetrics(BaseModel):
    """The paper's numbers for one row: any metric (``top1``, ``top5``, ...) as a number or
    ``null`` (unconfirmed or not reported), the ``source`` they come from and ``notes``."""

    model_config = ConfigDict(extra="allow")

    source: str | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _numbers(self):
        for k, v in (self.model_extra or {}).items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"metric '{k}' must be a number or null, got {v!r}")
        if self.metrics() and not self.source:
            raise ValueError("a paper number needs a 'source' (paper table, README, ...)")
        return self

    def values(self) -> dict[str, float | None]:
        """Every metric, including the null ones."""
        return dict(self.model_extra or {})

    def metrics(self) -> dict[str, float]:
        """The metrics that have a number."""
        return {k: float(v) for k, v in self.values().items() if v is not None}


class ScaleSpec(_Strict):
    """What a scale changes: ``set`` for every step, ``steps`` per step name, default seeds,
    and ``skip_steps`` this scale does not run (e.g. the paper scale takes a teacher from a
    file where the mini scale trains it as an earlier step)."""

    set: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    skip_steps: list[str] = Field(default_factory=list)
    seeds: int = Field(default=1, gt=0)
    notes: str | None = None


class RowScale(_Strict):
    set: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RecipeRow(_Strict):
    id: str = Field(pattern=_ID)
    label: str
    set: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    use_steps: list[str] | None = None
    scales: dict[Scale, RowScale] = Field(default_factory=dict)
    paper: PaperMetrics = Field(default_factory=PaperMetrics)
    notes: str | None = None


class Recipe(_Strict):
    """A validated recipe; :meth:`plan` expands it into runs."""

    name: str = Field(pattern=_ID)
    title: str
    paper: PaperRef | None = None
    table: str = ""

    description: str = ""
    dataset: str = ""
    follows: str | None = None
    notes: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "train"}])
    rows: list[RecipeRow] = Field(min_length=1)
    scales: dict[Scale, ScaleSpec]
    targets: dict[str, Any] = Field(default_factory=dict)
    source_file: str = Field(default="", exclude=True)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not v:
            raise ValueError("needs at least one step")
        names = []
        for i, s in enumerate(v):
            if not isinstance(s.get("name"), str) or not re.match(_ID, s["name"]):
                raise ValueError(f"step {i} needs a 'name' (letters, digits, - _ .)")
            if "optional" in s and not isinstance(s["optional"], bool):
                raise ValueError(f"step '{s['name']}': 'optional' must be true or false")
            names.append(s["name"])
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate step name(s): {', '.join(sorted(dup))}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        missing = [s for s in SCALES if s not in self.scales]
        if missing:
            raise ValueError(f"scales: missing {', '.join(missing)} (every recipe has paper, mini, smoke)")
        ids = [r.id for r in self.rows]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate row id(s): {', '.join(sorted(dup))}")
        names = self.step_names()
        for r in self.rows:
            for n in r.use_steps or []:
                if n not in names:
                    raise ValueError(f"row '{r.id}': use_steps names unknown step '{n}' (steps: {', '.join(names)})")
            for where, keys in [("steps", r.steps), *((f"scales.{s}.steps", rs.steps) for s, rs in r.scales.items())]:
                for n in keys:
                    if n not in names:
                        raise ValueError(f"row '{r.id}': {where} names unknown step '{n}'")
        for s, spec in self.scales.items():
            for n in [*spec.steps, *spec.skip_steps]:
                if n not in names:
                    raise ValueError(f"scales.{s}.steps names unknown step '{n}'")
        return self

    # ------------------------------------------------------------------ helpers

    def step_names(self) -> list[str]:
        return [s["name"] for s in self.steps]

    def row(self, row_id: str) -> RecipeRow:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise UnknownNameError(f"row of recipe '{self.name}'", row_id, [r.id for r in self.rows])

    def row_steps(self, row: RecipeRow, scale: str | None = None) -> list[str]:
        """The steps a row runs at ``scale``, in recipe order (default: every non-optional
        step, less the scale's ``skip_steps``)."""
        if row.use_steps is not None:
            names = [n for n in self.step_names() if n in row.use_steps]
        else:
            names = [s["name"] for s in self.steps if not s.get("optional", False)]
        skip = self.scales[scale].skip_steps if scale in self.scales else []
        return [n for n in names if n not in skip]

    def step_dict(self, row: RecipeRow, scale: str, step: str, overrides: dict[str, Any] | None = None,
                  seed: int | None = None) -> dict[str, Any]:
        """The layered (unvalidated) config dict of one row x scale x step."""
        spec = next(s for s in self.steps if s["name"] == step)
        data = deep_merge(copy.deepcopy(self.base), {k: v for k, v in spec.items() if k != "optional"})
        sc = self.scales[scale]
        data = expand_sets(data, sc.set)
        data = expand_sets(data, sc.steps.get(step, {}))
        data = expand_sets(data, row.set)
        data = expand_sets(data, row.steps.get(step, {}))
        rs = row.scales.get(scale)
        if rs is not None:
            data = expand_sets(data, rs.set)
            data = expand_sets(data, rs.steps.get(step, {}))
        data = expand_sets(data, overrides or {})
        data["name"] = step
        if seed is not None:
            data["seed"] = seed
        return data

    def default_seeds(self, scale: str) -> int:
        return self.scales[_scale(scale)].seeds

    def plan(self, scale: str, rows: list[str] | None = None, seeds: int | None = None,
             overrides: dict[str, Any] | None = None) -> list[PlannedRun]:
        """Expand to runs: every selected row x seed (0..seeds-1), each a list of validated steps.

        ``rows`` picks row ids (unknown ids raise :class:`UnknownNameError` with a
        suggestion), ``overrides`` are dotted keys applied to every step last.
        """
        scale = _scale(scale)
        selected = [self.row(r) for r in rows] if rows else list(self.rows)
        n = seeds if seeds is not None else self.default_seeds(scale)
        if n < 1:
            raise BnnlabError(f"--seeds must be >= 1, got {n}")
        out: list[PlannedRun] = []
        for row in selected:
            for seed in range(n):
                steps = [self._validated(row, scale, step, overrides, seed)
                         for step in self.row_steps(row, scale)]
                if not steps:
                    raise BnnlabError(f"{self.source_file or self.name}: row '{row.id}' has no step at "
                                      f"scale '{scale}'")
                out.append(PlannedRun(index=len(out) + 1, row_id=row.id, row_label=row.label, seed=seed,
                                      scale=scale, steps=steps, paper=row.paper.values(),
                                      paper_source=row.paper.source, notes=row.notes))
        for r in out:
            r.total = len(out)
        return out

    def _validated(self, row: RecipeRow, scale: str, step: str, overrides: dict[str, Any] | None,
                   seed: int | None) -> StepConfig:
        where = f"{self.source_file or self.name}: row '{row.id}', scale '{scale}', step '{step}'"
        if overrides:
            where += " (with --set overrides)"
        data = self.step_dict(row, scale, step, overrides, seed)
        cfg = validate_config(data, source=where)
        cfg = _drop_unused(cfg, where)
        _check_names(cfg, where)
        _check_refs(cfg, self.row_steps(row, scale), where)
        return cfg

    def validate_all(self) -> None:
        """Validate every row x scale x step (called on load)."""
        for row in self.rows:
            for scale in SCALES:
                if not self.row_steps(row, scale):
                    raise BnnlabError(f"{self.source_file or self.name}: row '{row.id}' has no step at "
                                      f"scale '{scale}'")
                for step in self.row_steps(row, scale):
                    self._validated(row, scale, step, None, None)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (for ``bnnlab recipes``)."""
        return {
            "name": self.name, "title": self.title,
            "paper": self.paper.model_dump(exclude_none=True) if self.paper else None,
            "table": self.table, "follows": self.follows, "steps": self.step_names(),
            "rows": [{"id": r.id, "label": r.label, "steps": self.row_steps(r, "paper"),
                      "paper": r.paper.values(), "source": r.paper.source, "notes": r.notes}
                     for r in self.rows],
            "scales": {s: {"seeds": spec.seeds, "notes": spec.notes} for s, spec in self.scales.items()},
            "targets": self.targets, "file": self.source_file,
        }


@dataclass
class PlannedRun:
    """One row x seed of a plan: the validated steps it trains, and the paper's numbers."""

    index: int
    row_id: str
    row_label: str
    seed: int
    scale: str
    steps: list[StepConfig]
    paper: dict[str, float | None] = field(default_factory=dict)
    paper_source: str | None = None
    notes: str | None = None
    total: int = 0


# --------------------------------------------------------------------------- layering


def expand_sets(data: dict, sets: dict[str, Any]) -> dict:
    """Apply dotted-key ``sets`` to a copy of ``data``, merging mappings into their sections
    (see :func:`bnnlab.config.apply_overrides` with ``merge=True``)."""
    return apply_overrides(data, sets, merge=True)


def _drop_unused(cfg: StepConfig, where: str) -> StepConfig:
    """Drop helper networks a step does not use (a teacher under ``loss: ce``, an extractor
    without Attentive CutMix), and fill ``{data_dir}`` in checkpoint paths."""
    data = cfg.model_dump(by_alias=True)
    changed = False
    for section, key, used in (("loss", "teacher", cfg.loss.name == "kd"), ("cmim", "teacher", cfg.cmim.alpha > 0),
                               ("augment", "extractor", cfg.augment.name == "attentive")):
        spec = data[section].get(key)
        if spec is not None and not used:
            data[section][key] = None
            changed = True
        elif spec is not None and spec.get("checkpoint") and "{data_dir}" in spec["checkpoint"]:
            from bnnlab.data import default_data_dir

            root = cfg.data.data_dir or str(default_data_dir())
            spec["checkpoint"] = spec["checkpoint"].replace("{data_dir}", str(root).rstrip("/"))
            changed = True
    if not changed:
        return cfg
    return validate_config(data, source=where)


def _scale(scale: str) -> str:
    if scale not in SCALES:
        raise UnknownNameError("scale", scale, SCALES)
    return scale


# --------------------------------------------------------------------------- name checks


def _check_names(cfg: StepConfig, where: str) -> None:
    """Model, quantizer, dataset and teacher names exist; model options are accepted."""
    from bnnlab.binary.quantizers import ACTIVATIONS, WEIGHTS
    from bnnlab.data import list_datasets
    from bnnlab.models import MODELS

    def bad(fieldname: str, err: BnnlabError) -> BnnlabError:
        return BnnlabError(f"{where}: field '{fieldname}': {err}")

    def model(name: str, options: dict[str, Any], fieldname: str) -> None:
        try:
            entry = MODELS.get(name)
        except UnknownNameError as err:
            raise bad(fieldname, err) from None
        for k in options:
            if k not in entry.options:
                raise bad(f"{fieldname.rsplit('.', 1)[0]}.options.{k}",
                          BnnlabError(f"model '{name}' has no option '{k}'; options: {', '.join(entry.options)}"))

    model(cfg.model.name, cfg.model.options, "model.name")
    for fieldname, reg, value in (("model.activation", ACTIVATIONS, cfg.model.activation),
                                  ("model.weight", WEIGHTS, cfg.model.weight),
                                  ("model.options.activation", ACTIVATIONS, cfg.model.options.get("activation")),
                                  ("model.options.weight", WEIGHTS, cfg.model.options.get("weight"))):
        if value is not None:
            try:
                reg.get(value)
            except UnknownNameError as err:
                raise bad(fieldname, err) from None
    if cfg.data.name not in list_datasets():
        raise bad("data.name", UnknownNameError("dataset", cfg.data.name, list_datasets()))
    for fieldname, spec in (("loss.teacher", cfg.loss.teacher), ("cmim.teacher", cfg.cmim.teacher),
                            ("augment.extractor", cfg.augment.extractor)):
        if spec is not None:
            model(spec.model, spec.options, f"{fieldname}.model")


def _check_refs(cfg: StepConfig, order: list[str], where: str) -> None:
    """``previous`` / ``step:NAME`` references point at earlier steps of the same row."""
    earlier = order[: order.index(cfg.name)]
    refs = [("init.from", cfg.init.from_)]
    refs += [(f"{f}.checkpoint", s.checkpoint) for f, s in (
        ("loss.teacher", cfg.loss.teacher), ("cmim.teacher", cfg.cmim.teacher),
        ("augment.extractor", cfg.augment.extractor)) if s is not None]
    for fieldname, ref in refs:
        if not ref:
            continue
        if ref == "previous" and not earlier:
            raise BnnlabError(f"{where}: field '{fieldname}': 'previous' but this is the row's first step")
        if ref.startswith("step:") and ref[5:] not in earlier:
            raise BnnlabError(f"{where}: field '{fieldname}': '{ref}' names no earlier step of this row "
                              f"(earlier: {', '.join(earlier) or 'none'})")


# --------------------------------------------------------------------------- loading


#: The package that ships the YAML files of ``recipes/``. It cannot be called
#: ``bnnlab.recipes``: that name is this module.
RECIPES_PACKAGE = "bnnlab.recipe_files"


def recipes_dir():
    """The folder of shipped recipes: the ``bnnlab.recipe_files`` package data when
    installed, else ``recipes/`` beside the ``bnnlab`` package (a source checkout)."""
    try:
        root = resources.files(RECIPES_PACKAGE)
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "recipes", here / "recipe_files"):
        if cand.is_dir():
            return cand
    raise BnnlabError(f"cannot find the shipped recipes (package {RECIPES_PACKAGE} or {here.parent / 'recipes'})")


def _shipped() -> dict[str, Any]:
    """Shipped recipe name -> file."""
    root = recipes_dir()
    return {p.name[: -len(".yaml")]: p for p in root.iterdir() if p.name.endswith(".yaml")}


def recipe_names() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(_shipped())


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BnnlabError(f"{source}:{where} malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise BnnlabError(f"{source}: a recipe must be a YAML mapping (name, title, paper, rows, scales, ...)")
    return data


def parse_recipe(text: str, source: str) -> Recipe:
    """Validate recipe text; any problem is a one-line :class:`BnnlabError` naming ``source``."""
    data = _parse_yaml(text, source)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise BnnlabError(_format_validation_error(err, source)) from None
    recipe.source_file = source
    recipe.validate_all()
    return recipe


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name, or a user's recipe file by path, validated."""
    text_name = str(name_or_path)
    shipped = _shipped()
    if text_name in shipped:
        res = shipped[text_name]
        return parse_recipe(res.read_text(encoding="utf-8"), f"recipes/{res.name}")
    path = Path(text_name).expanduser()
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text_name or path.is_file()
    if not looks_like_path:
        raise UnknownNameError("recipe", text_name, shipped)
    if not path.is_file():
        raise BnnlabError(f"recipe file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BnnlabError(f"cannot read recipe {path}: {err}") from None
    return parse_recipe(text, str(path))


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, validated, sorted by name."""
    return [load_recipe(n) for n in recipe_names()]
