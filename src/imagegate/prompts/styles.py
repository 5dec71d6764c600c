"""Styles: a named suffix added to the user's prompt to build the full prompt."""

from __future__ import annotations

from dataclasses import dataclass

from imagegate.errors import InvalidField


@dataclass(frozen=True, slots=True)
class Style:
    name: str
    description: str
    suffix: str


STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style("photorealistic", "Like a photograph", "photorealistic, natural light, 35mm"),
        Style("digital_art", "Clean digital illustration", "digital art, vibrant, detailed"),
        Style("anime", "Anime cel shading", "anime style, cel shading, bold outlines"),
        Style("watercolor", "Soft watercolor wash", "watercolor painting, soft edges, paper"),
        Style("oil_painting", "Thick oil paint", "oil painting, impasto, rich colour"),
        Style("pixel_art", "Retro pixel art", "pixel art, 16-bit, limited palette"),
        Style("pencil_sketch", "Graphite pencil drawing", "pencil sketch, graphite, hatching"),
        Style("cinematic", "Film still, wide frame", "cinematic still, anamorphic, graded"),
        Style("cyberpunk", "Neon-lit future", "cyberpunk, neon lights, rain, night city"),
        Style("noir", "Black and white film noir", "film noir, black and white, hard shadows"),
    )
}


def resolve_style(name: str | None) -> Style | None:
    if name is None or name == "":
        return None
    style = STYLES.get(name)
    if style is None:
        allowed = ", ".join(sorted(STYLES))
        raise InvalidField(
            "style",
            "unknown_style",
            f"Unknown style {name!r}; allowed: {allowed}.",
            allowed=sorted(STYLES),
        )
    return style


def build_full_prompt(prompt: str, style: Style | None) -> str:
    return f"{prompt}, {style.suffix}" if style else prompt
