"""The ``sketch`` renderer's drawing: a placeholder scene, not a learned model.

The prompt's words pick the time of day (sky and light), the terrain, a few elements
(lighthouse, trees, buildings, boats, birds...) and the colours; the style picks a
finish. Everything random comes from one seeded ``random.Random``, so the same inputs
give the same pixels. It draws a 512x512 scene in a few tens of milliseconds on one core.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter, ImageOps

RGB = tuple[int, int, int]

SKIES: dict[str, tuple[RGB, RGB, RGB | None]] = {
    # name: (top colour, horizon colour, disc colour or None)
    "day": ((70, 130, 210), (190, 220, 245), (255, 240, 170)),
    "dusk": ((60, 40, 110), (250, 140, 70), (255, 120, 60)),
    "dawn": ((120, 150, 210), (255, 190, 150), (255, 220, 150)),
    "night": ((8, 12, 40), (35, 45, 90), (235, 235, 215)),
    "storm": ((55, 60, 70), (120, 125, 135), None),
}
SKY_WORDS = {
    "dusk": "dusk",
    "sunset": "dusk",
    "evening": "dusk",
    "twilight": "dusk",
    "dawn": "dawn",
    "sunrise": "dawn",
    "morning": "dawn",
    "night": "night",
    "midnight": "night",
    "moon": "night",
    "stars": "night",
    "starry": "night",
    "storm": "storm",
    "stormy": "storm",
    "rain": "storm",
    "fog": "storm",
    "cloudy": "storm",
}
COLOUR_WORDS: dict[str, RGB] = {
    "red": (200, 40, 40),
    "orange": (240, 130, 30),
    "yellow": (240, 210, 40),
    "gold": (212, 175, 55),
    "golden": (212, 175, 55),
    "green": (50, 160, 70),
    "blue": (40, 90, 200),
    "teal": (30, 150, 150),
    "purple": (130, 60, 170),
    "violet": (140, 80, 200),
    "pink": (240, 120, 170),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
    "brown": (120, 80, 40),
    "silver": (190, 190, 200),
}
TERRAINS = {
    "sea": "water",
    "ocean": "water",
    "lake": "water",
    "beach": "water",
    "lighthouse": "water",
    "harbor": "water",
    "river": "water",
    "boat": "water",
    "ship": "water",
    "coast": "water",
    "mountain": "mountains",
    "mountains": "mountains",
    "hills": "mountains",
    "alps": "mountains",
    "desert": "dunes",
    "dunes": "dunes",
    "sand": "dunes",
    "snow": "snow",
    "winter": "snow",
    "ice": "snow",
    "arctic": "snow",
    "city": "city",
    "skyline": "city",
    "street": "city",
    "town": "city",
    "cyberpunk": "city",
}
GROUND: dict[str, RGB] = {
    "water": (30, 90, 140),
    "mountains": (70, 110, 70),
    "dunes": (220, 180, 110),
    "snow": (235, 240, 250),
    "city": (60, 60, 70),
    "meadow": (80, 150, 60),
}


def words_of(prompt: str) -> list[str]:
    return re.findall(r"[a-z]+", prompt.lower())


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def shade(colour: RGB, factor: float) -> RGB:
    return mix(colour, (0, 0, 0), 1 - factor) if factor < 1 else mix(colour, (255,) * 3, factor - 1)


class Scene:
    def __init__(self, prompt: str, width: int, height: int, rng: random.Random) -> None:
        self.words = set(words_of(prompt))
        self.width, self.height, self.rng = width, height, rng
        self.sky = next((SKY_WORDS[w] for w in words_of(prompt) if w in SKY_WORDS), "day")
        self.terrain = next((TERRAINS[w] for w in words_of(prompt) if w in TERRAINS), "meadow")
        accents = [COLOUR_WORDS[w] for w in words_of(prompt) if w in COLOUR_WORDS]
        self.accent = accents[0] if accents else self._word_colour(prompt)
        self.horizon = round(height * rng.uniform(0.55, 0.68))
        self.image = Image.new("RGB", (width, height))
        self.draw = ImageDraw.Draw(self.image)

    def _word_colour(self, prompt: str) -> RGB:
        """Words with no listed meaning still tint the picture, each its own way."""
        tint = random.Random(" ".join(sorted(self.words)) or prompt)
        return (tint.randrange(40, 230), tint.randrange(40, 230), tint.randrange(40, 230))

    def paint(self) -> Image.Image:
        self._sky()
        self._ground()
        for word, element in ELEMENTS.items():
            if word in self.words:
                element(self)
        return self.image

    def _sky(self) -> None:
        top, bottom, disc = SKIES[self.sky]
        top = mix(top, self.accent, 0.15)
        for y in range(self.horizon):
            self.draw.line([(0, y), (self.width, y)], fill=mix(top, bottom, y / self.horizon))
        if self.sky == "night":
            for _ in range(self.width * self.horizon // 2500):
                x, y = self.rng.randrange(self.width), self.rng.randrange(self.horizon)
                self.draw.point((x, y), fill=(255, 255, 230))
        if disc:
            r = self.width // 12
            cx = round(self.width * self.rng.uniform(0.2, 0.8))
            cy = round(self.horizon * (0.75 if self.sky in ("dusk", "dawn") else 0.3))
            self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=disc)

    def _ground(self) -> None:
        colour = mix(GROUND[self.terrain], self.accent, 0.12)
        if self.sky in ("night", "storm"):
            colour = shade(colour, 0.55)
        TERRAIN_PAINTERS.get(self.terrain, _flat)(self, colour)

    def y_on_ground(self, depth: float) -> int:
        return self.horizon + round((self.height - self.horizon) * depth)


def _flat(scene: Scene, colour: RGB) -> None:
    scene.draw.rectangle((0, scene.horizon, scene.width, scene.height), fill=colour)


def _water(scene: Scene, colour: RGB) -> None:
    _flat(scene, colour)
    for _ in range(scene.width // 8):
        x, y = scene.rng.randrange(scene.width), scene.rng.randrange(scene.horizon, scene.height)
        scene.draw.line([(x, y), (x + scene.width // 25, y)], fill=shade(colour, 1.35), width=2)


def _ridge(scene: Scene, colour: RGB, peaks: int, height: float) -> None:
    step = scene.width / peaks
    points = [(0, scene.horizon)]
    for i in range(peaks + 1):
        peak = scene.horizon - round(scene.height * height * scene.rng.uniform(0.4, 1.0))
        points += [(round(i * step + step / 2), peak), (round((i + 1) * step), scene.horizon)]
    scene.draw.polygon([*points, (scene.width, scene.height), (0, scene.height)], fill=colour)


def _mountains(scene: Scene, colour: RGB) -> None:
    _ridge(scene, shade(colour, 0.8), 3, 0.35)
    _ridge(scene, colour, 5, 0.18)


def _dunes(scene: Scene, colour: RGB) -> None:
    _ridge(scene, shade(colour, 0.9), 4, 0.08)


def _city(scene: Scene, colour: RGB) -> None:
    _flat(scene, colour)
    x = 0
    lit = (255, 220, 120) if scene.sky in ("night", "dusk") else (180, 200, 220)
    while x < scene.width:
        w = scene.rng.randrange(scene.width // 14, scene.width // 7)
        top = scene.horizon - scene.rng.randrange(scene.height // 10, scene.height // 2)
        scene.draw.rectangle((x, top, x + w, scene.horizon), fill=shade(colour, 0.7))
        for wy in range(top + 6, scene.horizon - 6, 14):
            for wx in range(x + 4, x + w - 6, 10):
                if scene.rng.random() < 0.5:
                    scene.draw.rectangle((wx, wy, wx + 4, wy + 6), fill=lit)
        x += w + 2


TERRAIN_PAINTERS: dict[str, Callable[[Scene, RGB], None]] = {
    "water": _water,
    "mountains": _mountains,
    "dunes": _dunes,
    "city": _city,
}


def _lighthouse(scene: Scene) -> None:
    w, base = scene.width // 14, scene.horizon + scene.height // 40
    x, top = round(scene.width * 0.72), scene.horizon - scene.height // 3
    for i, y in enumerate(range(top, base, max(1, (base - top) // 6))):
        band = (230, 50, 50) if i % 2 == 0 else (245, 245, 245)
        scene.draw.rectangle((x - w // 2, y, x + w // 2, y + (base - top) // 6), fill=band)
    scene.draw.polygon([(x - w, top), (x, top - w), (x + w, top)], fill=(40, 40, 40))
    if scene.sky in ("night", "dusk", "storm"):
        beam = (255, 245, 180)
        scene.draw.polygon([(x, top - w // 2), (0, top - w * 3), (0, top + w)], fill=beam)


def _trees(scene: Scene) -> None:
    green = mix((30, 100, 40), scene.accent, 0.2)
    for _ in range(scene.rng.randrange(6, 14)):
        x = scene.rng.randrange(scene.width)
        base = scene.y_on_ground(scene.rng.uniform(0.1, 0.9))
        size = scene.height // 12 + (base - scene.horizon) // 3
        scene.draw.rectangle(
            (x - size // 10, base - size // 3, x + size // 10, base), fill=(90, 60, 30)
        )
        scene.draw.polygon(
            [
                (x - size // 2, base - size // 3),
                (x, base - size * 3 // 2),
                (x + size // 2, base - size // 3),
            ],
            fill=green,
        )


def _house(scene: Scene) -> None:
    x, base = round(scene.width * 0.35), scene.y_on_ground(0.35)
    s = scene.width // 8
    scene.draw.rectangle((x - s, base - s, x + s, base), fill=scene.accent)
    scene.draw.polygon(
        [(x - s - 8, base - s), (x, base - 2 * s), (x + s + 8, base - s)], fill=(120, 40, 30)
    )
    scene.draw.rectangle((x - s // 4, base - s // 2, x + s // 4, base), fill=(70, 45, 25))


def _boat(scene: Scene) -> None:
    x, y = round(scene.width * 0.3), scene.y_on_ground(0.3)
    s = scene.width // 10
    scene.draw.polygon(
        [(x - s, y), (x + s, y), (x + s * 3 // 4, y + s // 3), (x - s * 3 // 4, y + s // 3)],
        fill=(110, 60, 30),
    )
    scene.draw.polygon(
        [(x, y - s * 3 // 2), (x, y - 4), (x + s * 3 // 4, y - 4)], fill=(245, 245, 235)
    )


def _birds(scene: Scene) -> None:
    for _ in range(scene.rng.randrange(3, 8)):
        x, y = scene.rng.randrange(scene.width), scene.rng.randrange(scene.horizon // 2)
        s = scene.width // 50
        scene.draw.line(
            [(x - s, y - s // 2), (x, y), (x + s, y - s // 2)], fill=(30, 30, 30), width=2
        )


def _flowers(scene: Scene) -> None:
    for _ in range(scene.width // 6):
        x, y = scene.rng.randrange(scene.width), scene.rng.randrange(scene.horizon, scene.height)
        r = 2 + (y - scene.horizon) * 6 // max(1, scene.height - scene.horizon)
        petal = scene.accent if scene.rng.random() < 0.6 else (250, 250, 250)
        scene.draw.ellipse((x - r, y - r, x + r, y + r), fill=petal)


ELEMENTS: dict[str, Callable[[Scene], None]] = {
    "forest": _trees,
    "tree": _trees,
    "trees": _trees,
    "woods": _trees,
    "park": _trees,
    "house": _house,
    "cabin": _house,
    "cottage": _house,
    "home": _house,
    "boat": _boat,
    "ship": _boat,
    "sailboat": _boat,
    "harbor": _boat,
    "lighthouse": _lighthouse,
    "tower": _lighthouse,
    "bird": _birds,
    "birds": _birds,
    "seagulls": _birds,
    "flower": _flowers,
    "flowers": _flowers,
    "garden": _flowers,
    "meadow": _flowers,
}


def _pixelate(image: Image.Image) -> Image.Image:
    small = image.resize(
        (max(1, image.width // 8), max(1, image.height // 8)), Image.Resampling.BOX
    )
    return small.quantize(24).convert("RGB").resize(image.size, Image.Resampling.NEAREST)


def _pencil(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(image).filter(ImageFilter.CONTOUR).convert("RGB")


def _watercolor(image: Image.Image) -> Image.Image:
    soft = image.filter(ImageFilter.GaussianBlur(3))
    return Image.blend(soft, Image.new("RGB", image.size, (250, 246, 235)), 0.25)


def _cinematic(image: Image.Image) -> Image.Image:
    graded = Image.blend(image, Image.new("RGB", image.size, (20, 90, 110)), 0.15)
    bar = image.height // 9
    ImageDraw.Draw(graded).rectangle((0, 0, image.width, bar), fill=(0, 0, 0))
    ImageDraw.Draw(graded).rectangle((0, image.height - bar, image.width, image.height), fill=0)
    return graded


FINISHES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "pixel_art": _pixelate,
    "pencil_sketch": _pencil,
    "watercolor": _watercolor,
    "oil_painting": lambda im: ImageOps.posterize(im.filter(ImageFilter.SMOOTH_MORE), 4),
    "anime": lambda im: ImageOps.posterize(im, 3).filter(ImageFilter.EDGE_ENHANCE_MORE),
    "noir": lambda im: ImageOps.autocontrast(ImageOps.grayscale(im), cutoff=2).convert("RGB"),
    "cyberpunk": lambda im: Image.blend(im, Image.new("RGB", im.size, (200, 0, 200)), 0.3),
    "cinematic": _cinematic,
    "digital_art": lambda im: im.filter(ImageFilter.DETAIL),
}


def render(prompt: str, style: str | None, width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(f"{prompt}\x00{style}\x00{seed}\x00{width}x{height}")
    image = Scene(prompt, width, height, rng).paint()
    finish = FINISHES.get(style or "")
    return finish(image) if finish else image
