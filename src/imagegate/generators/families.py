"""Per-family defaults for steps and guidance, by model name. No heavy imports: the API
uses them to fill in requests that leave steps or guidance out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagegate.settings import Settings


@dataclass(frozen=True, slots=True)
class FamilyDefaults:
    steps: int
    guidance: float


# First match wins, so distilled variants ("sdxl-turbo") come before their base ("xl").
FAMILIES = (
    ("turbo", FamilyDefaults(steps=1, guidance=0.0)),  # SD-Turbo, SDXL-Turbo: no CFG
    ("lightning", FamilyDefaults(steps=4, guidance=0.0)),
    ("schnell", FamilyDefaults(steps=4, guidance=0.0)),  # FLUX.1-schnell
    ("lcm", FamilyDefaults(steps=4, guidance=1.0)),
    ("xl", FamilyDefaults(steps=30, guidance=5.0)),
)


def family_defaults(model: str) -> FamilyDefaults:
    """Sensible steps and guidance for a model, from its name (SD 1.x/2.x otherwise)."""
    name = model.lower()
    return next((d for key, d in FAMILIES if key in name), FamilyDefaults(30, 7.5))


def with_family_defaults(settings: Settings) -> Settings:
    """The settings with the model family's default steps and guidance, where the operator
    set none (a Turbo model then runs 1 step without guidance unless a request asks)."""
    if settings.backend != "diffusers":
        return settings
    defaults = family_defaults(settings.model_name)
    update: dict[str, object] = {}
    if "default_steps" not in settings.model_fields_set:
        update["default_steps"] = defaults.steps
    if "default_guidance" not in settings.model_fields_set:
        update["default_guidance"] = defaults.guidance
    return settings.model_copy(update=update)
