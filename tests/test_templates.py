"""Prompt templates: the built-in ones, literal inputs, refusals by field, extra files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from imagegate.errors import InvalidField
from imagegate.prompts.templates import (
    MAX_INPUT_CHARS,
    list_templates,
    load_templates,
    read_templates,
    render_template,
)
from imagegate.settings import Settings

CYRILLIC_ER, CYRILLIC_IE = "\u0440", "\u0435"  # look like "p" and "e"


def refusal(name: str, inputs: dict[str, object], **kwargs: object) -> InvalidField:
    with pytest.raises(InvalidField) as caught:
        render_template(name, inputs, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_the_three_original_templates_keep_their_meaning() -> None:
    templates = load_templates()
    product, portrait, landscape = (
        templates[name] for name in ("product_photography", "portrait", "landscape")
    )
    assert product.template == "professional product photograph of {object}"
    assert product.style == "studio lighting, white background, sharp focus, 8k"
    assert product.forbidden == ("person", "face", "human")
    assert portrait.template == "portrait of {description}"
    assert portrait.style == "professional photography, soft lighting, sharp focus"
    assert portrait.forbidden == ("gore", "violence", "explicit")
    assert landscape.template == "{environment} landscape"
    assert landscape.style == "scenic photography, natural lighting, landscape photography"
    assert landscape.forbidden == ("person", "human")
    required = {t.name: [i.name for i in t.inputs if i.required] for t in templates.values()}
    assert required == {
        "product_photography": ["object"],
        "portrait": ["description"],
        "landscape": ["environment"],
    }


def test_render_builds_the_full_prompt() -> None:
    rendered = render_template("product_photography", {"object": "  a red ceramic mug "})
    assert rendered.template == "product_photography"
    assert rendered.prompt == "professional product photograph of a red ceramic mug"
    assert rendered.full_prompt == (
        "professional product photograph of a red ceramic mug, "
        "studio lighting, white background, sharp focus, 8k"
    )
    assert render_template("landscape", {"environment": "alpine lake"}).prompt == (
        "alpine lake landscape"
    )


@pytest.mark.parametrize(
    "text",
    ["{object.__class__}", "{0}", "{object}", "{{object}}", "{description!r:>10}", "\\1 \\g<0>"],
)
def test_inputs_are_substituted_literally(text: str) -> None:
    rendered = render_template("portrait", {"description": f"a mug {text} on a desk"})
    assert rendered.prompt == f"portrait of a mug {text} on a desk"


def test_an_input_is_not_substituted_twice() -> None:
    # The product's own placeholder name inside the input stays text.
    rendered = render_template("product_photography", {"object": "{object}"})
    assert rendered.prompt == "professional product photograph of {object}"


def test_list_templates_gives_names_and_inputs_in_order() -> None:
    listed = list_templates()
    assert [t.name for t in listed] == ["landscape", "portrait", "product_photography"]
    assert [(i.name, i.required) for i in listed[2].inputs] == [("object", True)]
    assert listed[2].inputs[0].description


def test_unknown_template_names_the_known_ones() -> None:
    error = refusal("pet_portrait", {"pet": "a cat"})
    assert (error.field, error.code, error.status) == ("template", "unknown_template", 422)
    for known in ("landscape", "portrait", "product_photography"):
        assert known in error.message
    assert error.extra["allowed"] == ["landscape", "portrait", "product_photography"]


@pytest.mark.parametrize("inputs", [{}, {"object": ""}, {"object": "   "}, {"object": None}])
def test_missing_input_is_refused_by_name(inputs: dict[str, object]) -> None:
    error = refusal("product_photography", inputs)
    assert (error.field, error.code) == ("inputs.object", "missing_input")


@pytest.mark.parametrize(
    "value", [42, ["a mug"], {"a": "mug"}, "x" * (MAX_INPUT_CHARS + 1), "a mug\x00", "a\x1bmug"]
)
def test_non_string_or_too_long_input_is_invalid(value: object) -> None:
    error = refusal("product_photography", {"object": value})
    assert (error.field, error.code) == ("inputs.object", "invalid_input")


def test_an_input_of_the_maximum_length_is_accepted() -> None:
    value = "m" * MAX_INPUT_CHARS
    assert render_template("product_photography", {"object": value}).prompt.endswith(value)


def test_an_undeclared_input_is_refused() -> None:
    error = refusal("landscape", {"environment": "a lake", "mood": "calm"})
    assert (error.field, error.code) == ("inputs.mood", "unknown_input")


@pytest.mark.parametrize(
    ("template", "field", "value"),
    [
        ("product_photography", "object", "a person holding a mug"),
        ("product_photography", "object", "a mug with a smiling FACE"),
        ("product_photography", "object", "two humans and a mug"),
        ("product_photography", "object", "a p3rs0n with a mug"),
        ("product_photography", "object", "a h-u-m-a-n hand"),
        ("product_photography", "object", f"a {CYRILLIC_ER}{CYRILLIC_IE}rson"),
        ("portrait", "description", "a soldier, extreme gore"),
        ("portrait", "description", "explicit"),
        ("landscape", "environment", "a beach with a person"),
    ],
)
def test_forbidden_terms_are_refused_after_folding(template: str, field: str, value: str) -> None:
    error = refusal(template, {field: value})
    assert (error.field, error.code) == (f"inputs.{field}", "forbidden_term")


@pytest.mark.parametrize(
    "value",
    ["a personal computer", "a humanoid robot toy", "a facet-cut crystal", "a surface cleaner"],
)
def test_forbidden_terms_match_whole_words_only(value: str) -> None:
    rendered = render_template("product_photography", {"object": value})
    assert value in rendered.prompt


def write_templates(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


EXTRA = """
templates:
  pet_portrait:
    description: A pet, posed.
    template: "portrait of a {animal} named {name}"
    style: "warm light"
    forbidden: [gore]
    inputs:
      animal: {description: The animal.}
      name: {required: false, default: "Rex"}
  landscape:
    template: "{environment}, no people"
    inputs:
      environment: {}
"""


def test_a_templates_file_adds_templates_and_replaces_same_names(tmp_path: Path) -> None:
    templates = load_templates(write_templates(tmp_path / "more.yaml", EXTRA))
    assert {"pet_portrait", "landscape", "portrait", "product_photography"} == set(templates)
    rendered = render_template("pet_portrait", {"animal": "{dog}"}, templates)
    assert rendered.full_prompt == "portrait of a {dog} named Rex, warm light"
    assert render_template("landscape", {"environment": "a lake"}, templates).full_prompt == (
        "a lake, no people"
    )
    assert refusal("pet_portrait", {"animal": "cat", "name": "g0re"}, templates=templates).code == (
        "forbidden_term"
    )


def test_the_templates_file_setting_is_a_path(tmp_path: Path) -> None:
    path = write_templates(tmp_path / "more.yaml", EXTRA)
    settings = Settings(templates_file=path)
    assert "pet_portrait" in load_templates(settings.templates_file)
    assert Settings().templates_file is None


@pytest.mark.parametrize(
    "body",
    [
        "templates:\n  t:\n    template: 'a {thing}'\n",  # placeholder without an input
        "templates:\n  t:\n    template: 'a cat'\n    inputs: {thing: {}}\n",  # input unused
        "templates:\n  t:\n    template: 'a {thing} {'\n    inputs: {thing: {}}\n",  # stray brace
        "templates:\n  t:\n    template: 'a {thing}'\n    colour: red\n    inputs: {thing: {}}\n",
        "not a mapping",
    ],
)
def test_a_malformed_templates_file_is_refused(tmp_path: Path, body: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        read_templates(write_templates(tmp_path / "bad.yaml", body))


def test_the_builtin_templates_file_ships_inside_the_package() -> None:
    assert (resources.files("imagegate.prompts") / "templates.yaml").is_file()
