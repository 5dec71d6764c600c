"""The price table: what a job costs, in integer micro-units of one currency.

Money is held as integer micros (1 USD = 1_000_000 micros) so that sums never drift. Rates
are kept exact (as ``Decimal`` micros, which may hold fractions of a micro) and only a job's
cost is rounded, half up, to a whole micro.

The table is a YAML file (the bundled one is ``data/prices.yaml``)::

    currency: USD                     # ISO 4217, upper case
    models:
      sketch-v1:
        per_image: 0.001              # one image at the reference size
        reference_size: 512x512       # optional, default 512x512
        scale_with_pixels: true       # other sizes cost in proportion to their pixels
      dall-e-2:
        sizes: {"256x256": 0.016, "512x512": 0.018, "1024x1024": 0.02}
        per_image: 0.02               # optional: sizes not listed (default: the dearest size)
      some-diffusion-model:
        per_megapixel_step: 0.00002   # width * height / 1e6 * steps * n
      stabilityai/sd-turbo:
        per_gpu_second: 0.0004        # the job's generation time * this
        estimate_gpu_s: 0.5           # GPU seconds per image, for estimates before it runs
      "*":                            # any model not listed; without it they cost 0
        per_gpu_second: 0.0005
        estimate_gpu_s: 2.0

Each model has exactly one rule: ``per_image`` and/or ``sizes``, ``per_megapixel_step``, or
``per_gpu_second`` with ``estimate_gpu_s``. Costs are for the whole job of ``n`` images. A job
priced per GPU-second is estimated as ``estimate_gpu_s * n * per_gpu_second``; once it has
run, it costs its measured generation time (which covers the whole batch) times the price.

A malformed file (not a mapping, unknown keys, negative prices, no currency, a model with no
price or two, a bad size key) raises ``ValueError`` naming the file and the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

__all__ = [
    "MICROS",
    "ModelPrice",
    "PriceTable",
    "Usage",
    "from_micros",
    "load_prices",
    "to_micros",
]

MICROS = 1_000_000
_DEFAULT_MODEL = "*"

_Rule = Literal["per_image", "per_megapixel_step", "per_gpu_second"]
_Size = tuple[int, int]
_SIZE_KEY = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")


def to_micros(amount: Decimal | float | str | int) -> int:
    """``amount`` of the currency in whole micros, rounded half up."""
    return _round(_decimal(amount) * MICROS)


def from_micros(micros: int) -> float:
    return round(micros / 1e6, 6)


def _decimal(value: object) -> Decimal:
    """A number from YAML or a caller, through its text so that 0.1 stays 0.1."""
    if isinstance(value, bool) or not isinstance(value, Decimal | float | str | int):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _round(micros: Decimal) -> int:
    return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Usage:
    """What a job asked for, and (once it ran) what it used."""

    model: str
    width: int
    height: int
    steps: int
    n: int
    generation_ms: int | None = None  # None before it ran


def _no_sizes() -> Mapping[_Size, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's pricing rule.

    ``rate_micros`` is in micros per image (at ``reference_size``, for sizes not in
    ``sizes``), per megapixel-step, or per GPU-second, as ``rule`` says.
    """

    rule: _Rule
    rate_micros: Decimal
    sizes: Mapping[_Size, Decimal] = field(default_factory=_no_sizes)  # micros per image
    reference_size: _Size = (512, 512)
    scale_with_pixels: bool = False
    estimate_gpu_s: Decimal = Decimal(0)  # per image

    def estimate(self, usage: Usage) -> int:
        """Micros for the whole job, before it runs."""
        if self.rule == "per_image":
            return _round(self._image_price(usage.width, usage.height) * usage.n)
        if self.rule == "per_megapixel_step":
            pixel_steps = usage.width * usage.height * usage.steps * usage.n
            return _round(self.rate_micros * pixel_steps / 1_000_000)
        return _round(self.rate_micros * self.estimate_gpu_s * usage.n)

    def actual(self, usage: Usage) -> int:
        """Micros for the whole job once it ran: its GPU time, where priced by it."""
        if self.rule != "per_gpu_second" or usage.generation_ms is None:
            return self.estimate(usage)
        return _round(self.rate_micros * usage.generation_ms / 1000)

    def _image_price(self, width: int, height: int) -> Decimal:
        listed = self.sizes.get((width, height))
        if listed is not None:
            return listed
        if not self.scale_with_pixels:
            return self.rate_micros
        reference_width, reference_height = self.reference_size
        return self.rate_micros * width * height / (reference_width * reference_height)


@dataclass(frozen=True, slots=True)
class PriceTable:
    currency: str  # ISO 4217, upper case
    models: Mapping[str, ModelPrice]
    default: ModelPrice | None  # the "*" entry; None: models not listed cost 0

    def price_of(self, model: str) -> ModelPrice | None:
        return self.models.get(model, self.default)

    def estimate(self, usage: Usage) -> int:
        price = self.price_of(usage.model)
        return price.estimate(usage) if price else 0

    def actual(self, usage: Usage) -> int:
        price = self.price_of(usage.model)
        return price.actual(usage) if price else 0


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table in ``path``, or the bundled one; a malformed file raises ``ValueError``."""
    source = path or Path(str(resources.files("imagegate.usage") / "data" / "prices.yaml"))
    parsed = _read(source)
    models = {name: _model_price(rule) for name, rule in parsed.models.items()}
    default = models.pop(_DEFAULT_MODEL, None)
    return PriceTable(parsed.currency, MappingProxyType(models), default)


# The file's schema. Amounts stay in the currency here; _model_price turns them into micros.


def _size(value: object) -> object:
    match = _SIZE_KEY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"a size is WIDTHxHEIGHT, such as 512x512, not {value!r}")
    return (int(match[1]), int(match[2]))


def _currency(code: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(f"currency is an upper-case ISO 4217 code such as USD, not {code!r}")
    return code


_Amount = Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0)]
_SizeField = Annotated[_Size, BeforeValidator(_size)]


class _RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_image: _Amount | None = None
    sizes: dict[_SizeField, _Amount] = Field(default_factory=dict)
    reference_size: _SizeField = (512, 512)
    scale_with_pixels: StrictBool = False
    per_megapixel_step: _Amount | None = None
    per_gpu_second: _Amount | None = None
    estimate_gpu_s: _Amount | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> Self:
        rules = {
            "per_image or sizes": self.per_image is not None or bool(self.sizes),
            "per_megapixel_step": self.per_megapixel_step is not None,
            "per_gpu_second": self.per_gpu_second is not None,
        }
        chosen = [rule for rule, present in rules.items() if present]
        if len(chosen) != 1:
            raise ValueError(f"needs exactly one price of {list(rules)}, has {chosen or 'none'}")
        return self

    @model_validator(mode="after")
    def _options_fit_rule(self) -> Self:
        if (self.per_gpu_second is None) != (self.estimate_gpu_s is None):
            raise ValueError("per_gpu_second and estimate_gpu_s go together")
        if self.scale_with_pixels and self.per_image is None:
            raise ValueError("scale_with_pixels needs per_image, the price at reference_size")
        if "reference_size" in self.model_fields_set and not self.scale_with_pixels:
            raise ValueError("reference_size is only for scale_with_pixels: true")
        return self


class _TableFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    currency: Annotated[str, AfterValidator(_currency)]
    models: dict[str, _RuleFile] = Field(default_factory=dict)


def _read(path: Path) -> _TableFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the price table: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a price table is a mapping with currency and models")
    try:
        return _TableFile.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"{path}: {_describe(error)}") from None


def _describe(error: ValidationError) -> str:
    """Pydantic's errors on one line, each led by the model it is about."""
    problems = error.errors()
    return "; ".join(_where(p["loc"]) + p["msg"].removeprefix("Value error, ") for p in problems)


def _where(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "models":
        rest = ".".join(str(part) for part in loc[2:])
        return f"model {loc[1]!r}: " + (f"{rest}: " if rest else "")
    return ".".join(str(part) for part in loc) + ": " if loc else ""


def _model_price(rule: _RuleFile) -> ModelPrice:
    if rule.per_megapixel_step is not None:
        return ModelPrice("per_megapixel_step", rule.per_megapixel_step * MICROS)
    if rule.per_gpu_second is not None:
        estimate_gpu_s = rule.estimate_gpu_s or Decimal(0)
        return ModelPrice(
            "per_gpu_second", rule.per_gpu_second * MICROS, estimate_gpu_s=estimate_gpu_s
        )
    sizes = {size: amount * MICROS for size, amount in rule.sizes.items()}
    # Sizes not listed cost the dearest listed size unless per_image says otherwise: an
    # estimate that errs high keeps a budget safe.
    fallback = rule.per_image * MICROS if rule.per_image is not None else max(sizes.values())
    return ModelPrice(
        "per_image",
        fallback,
        MappingProxyType(sizes),
        rule.reference_size,
        rule.scale_with_pixels,
    )
