"""Templates: a prompt with named inputs and a style, for callers who fill in the blanks.

The built-in templates live in ``templates.yaml`` beside this module; more can come from
the file named by ``IMAGEGATE_TEMPLATES_FILE``. Inputs are put in literally (braces in an
input are text, never a placeholder), and each input is refused if it holds one of the
template's forbidden terms as a whole word, after the safety pipeline's folding.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from imagegate.errors import InvalidField
from imagegate.safety.normalize import normalize
from imagegate.safety.terms import whole_words

MAX_INPUT_CHARS = 500
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class TemplateInput:
    name: str
    description: str = ""
    required: bool = True
    default: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    description: str
    template: str  # with a {placeholder} per input
    style: str  # added after the filled-in template
    forbidden: tuple[str, ...]
    inputs: tuple[TemplateInput, ...]


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    template: str  # the template's name
    prompt: str  # the template with its inputs filled in
    full_prompt: str  # the prompt and the template's style


def load_templates(path: Path | None = None) -> dict[str, Template]:
    """The built-in templates, plus (replacing any of the same name) those in ``path``."""
    templates = dict(_builtin_templates())
    if path is not None:
        templates |= read_templates(path)
    return templates


def list_templates(templates: Mapping[str, Template] | None = None) -> list[Template]:
    return sorted((templates or load_templates()).values(), key=lambda t: t.name)


def render_template(
    name: str, inputs: Mapping[str, Any], templates: Mapping[str, Template] | None = None
) -> RenderedPrompt:
    """The full prompt for ``name`` with ``inputs``; refuses bad input by field."""
    template = _resolve(name, templates or load_templates())
    values = _checked_inputs(template, inputs)
    prompt = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template.template)
    full_prompt = f"{prompt}, {template.style}" if template.style else prompt
    return RenderedPrompt(template.name, prompt, full_prompt)


def _resolve(name: str, templates: Mapping[str, Template]) -> Template:
    template = templates.get(name)
    if template is None:
        known = sorted(templates)
        raise InvalidField(
            "template",
            "unknown_template",
            f"Unknown template {name!r}; known templates: {', '.join(known)}.",
            allowed=known,
        )
    return template


def _checked_inputs(template: Template, inputs: Mapping[str, Any]) -> dict[str, str]:
    declared = {spec.name for spec in template.inputs}
    for name in inputs:
        if name not in declared:
            raise InvalidField(
                f"inputs.{name}",
                "unknown_input",
                f"The template {template.name!r} has no input {name!r}; "
                f"its inputs are: {', '.join(sorted(declared))}.",
            )
    forbidden = whole_words(template.forbidden)
    return {
        spec.name: _checked_value(spec, inputs.get(spec.name), forbidden)
        for spec in template.inputs
    }


def _checked_value(spec: TemplateInput, value: Any, forbidden: re.Pattern[str]) -> str:
    field = f"inputs.{spec.name}"
    if value is None or (isinstance(value, str) and not value.strip()):
        if spec.required:
            raise InvalidField(field, "missing_input", f"The input {spec.name!r} is required.")
        return spec.default
    if not isinstance(value, str):
        raise InvalidField(field, "invalid_input", f"The input {spec.name!r} must be a string.")
    text = unicodedata.normalize("NFC", value).strip()
    if len(text) > MAX_INPUT_CHARS or any(_is_control(ch) for ch in text):
        raise InvalidField(
            field,
            "invalid_input",
            f"The input {spec.name!r} must be at most {MAX_INPUT_CHARS} characters "
            "of text without control characters.",
        )
    _refuse_forbidden(spec.name, text, forbidden)
    return text


def _refuse_forbidden(name: str, text: str, forbidden: re.Pattern[str]) -> None:
    for reading in normalize(text).readings:
        found = forbidden.search(reading)
        if found:
            raise InvalidField(
                f"inputs.{name}",
                "forbidden_term",
                f"The input {name!r} may not mention {found.group(1)!r} in this template.",
                term=found.group(1),
            )


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"


class _InputFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    required: bool = True
    default: str = ""


class _TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    template: str = Field(min_length=1)
    style: str = ""
    forbidden: list[str] = Field(default_factory=list)
    inputs: dict[str, _InputFile] = Field(default_factory=dict)


class _TemplatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    templates: dict[str, _TemplateFile]


def read_templates(path: Path) -> dict[str, Template]:
    """The templates of one YAML file; a malformed file raises ``ValueError``."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    parsed = _TemplatesFile.model_validate(raw)  # pydantic's ValidationError is a ValueError
    return {name: _template(name, spec, path) for name, spec in parsed.templates.items()}


def _template(name: str, spec: _TemplateFile, path: Path) -> Template:
    inputs = tuple(TemplateInput(key, **value.model_dump()) for key, value in spec.inputs.items())
    placeholders = set(_PLACEHOLDER.findall(spec.template))
    undeclared = placeholders - set(spec.inputs)
    stray_brace = re.search(r"[{}]", _PLACEHOLDER.sub("", spec.template))
    if undeclared or stray_brace or placeholders != set(spec.inputs):
        raise ValueError(
            f"{path}: template {name!r} must have exactly one {{placeholder}} per input "
            f"and no other braces (placeholders {sorted(placeholders)}, "
            f"inputs {sorted(spec.inputs)})"
        )
    return Template(
        name, spec.description, spec.template, spec.style, tuple(spec.forbidden), inputs
    )


@functools.cache
def _builtin_templates() -> Mapping[str, Template]:
    return read_templates(Path(str(resources.files("imagegate.prompts") / "templates.yaml")))
