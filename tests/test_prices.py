"""The price table: each pricing rule's arithmetic, the bundled table and bad files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from imagegate.usage.prices import (
    MICROS,
    PriceTable,
    Usage,
    from_micros,
    load_prices,
    to_micros,
)


def _table(tmp_path: Path, text: str) -> PriceTable:
    path = tmp_path / "prices.yaml"
    path.write_text(text, encoding="utf-8")
    return load_prices(path)


def _usage(model: str, size: int = 512, n: int = 1, steps: int = 20) -> Usage:
    return Usage(model, size, size, steps, n)


def test_micros_round_trip() -> None:
    assert MICROS == 1_000_000
    assert to_micros("0.001") == 1000
    assert to_micros(0.1) == 100_000
    assert to_micros(Decimal("1.5")) == 1_500_000
    assert to_micros(3) == 3_000_000
    assert to_micros("0.0000005") == 1  # half up
    assert to_micros("0.0000004") == 0
    assert from_micros(to_micros(0.123456)) == 0.123456
    assert from_micros(1) == 0.000001


def test_to_micros_refuses_what_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="expected a number"):
        to_micros("twelve")
    with pytest.raises(ValueError, match="finite"):
        to_micros("nan")


def test_bundled_sketch_scales_with_pixels_and_images() -> None:
    table = load_prices()
    assert table.currency == "USD"
    assert table.estimate(_usage("sketch-v1")) == 1000
    assert table.estimate(_usage("sketch-v1", size=1024)) == 4000
    assert table.estimate(_usage("sketch-v1", size=256)) == 250
    assert table.estimate(_usage("sketch-v1", n=3)) == 3000
    assert table.actual(Usage("sketch-v1", 512, 512, 20, 3, generation_ms=9000)) == 3000


def test_bundled_openai_list_prices_per_size() -> None:
    table = load_prices()
    assert table.estimate(_usage("dall-e-2", size=256)) == 16_000
    assert table.estimate(_usage("dall-e-2", size=512, n=2)) == 36_000
    assert table.estimate(_usage("dall-e-2", size=1024)) == 20_000
    assert table.estimate(Usage("dall-e-3", 1024, 1792, 1, 1)) == 80_000
    assert table.estimate(Usage("dall-e-3", 1024, 1024, 1, 1)) == 40_000


def test_unlisted_size_costs_per_image_or_else_the_dearest_size(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        """
currency: USD
models:
  with-fallback: {sizes: {"256x256": 0.016, "1024x1024": 0.02}, per_image: 0.05}
  without: {sizes: {"256x256": 0.016, "1024x1024": 0.02}}
""",
    )
    assert table.estimate(_usage("with-fallback", size=256)) == 16_000
    assert table.estimate(_usage("with-fallback", size=768, n=2)) == 100_000
    assert table.estimate(_usage("without", size=768)) == 20_000


def test_per_megapixel_step(tmp_path: Path) -> None:
    table = _table(tmp_path, "currency: EUR\nmodels: {sd: {per_megapixel_step: 0.00002}}\n")
    # 1024*1024/1e6 = 1.048576 MP * 30 steps * 2 images * 20 micros = 1258.2912
    assert table.currency == "EUR"
    assert table.estimate(_usage("sd", size=1024, steps=30, n=2)) == 1258
    # 0.262144 MP * 20 steps * 20 micros = 104.8576: rounded once, at the end
    assert table.estimate(_usage("sd")) == 105
    assert table.actual(Usage("sd", 512, 512, 20, 1, generation_ms=60_000)) == 105


def test_bundled_per_gpu_second() -> None:
    table = load_prices()
    turbo = Usage("stabilityai/sd-turbo", 512, 512, 1, 4)
    assert table.estimate(turbo) == 800  # 0.5 s * 4 images * 400 micros
    assert table.actual(turbo) == 800  # not run yet: the estimate
    ran = Usage("stabilityai/sd-turbo", 512, 512, 1, 4, generation_ms=1250)
    assert table.estimate(ran) == 800
    assert table.actual(ran) == 500  # 1.25 s for the whole batch * 400 micros


def test_unknown_model_uses_the_star_rule() -> None:
    table = load_prices()
    assert table.price_of("no-such-model") is table.default
    assert table.estimate(_usage("no-such-model", n=2)) == 2000  # 2 s * 2 * 500 micros
    assert table.actual(Usage("no-such-model", 512, 512, 20, 2, generation_ms=3000)) == 1500


def test_unknown_model_without_star_costs_nothing(tmp_path: Path) -> None:
    table = _table(tmp_path, "currency: USD\nmodels: {sketch-v1: {per_image: 0.002}}\n")
    assert table.default is None
    assert table.price_of("other") is None
    assert table.estimate(_usage("other")) == 0
    assert table.actual(Usage("other", 512, 512, 20, 1, generation_ms=5000)) == 0


def test_operator_file_replaces_the_bundled_table(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        """
currency: GBP
models:
  sketch-v1: {per_image: 0.01, scale_with_pixels: false}
  "*": {per_image: 0.5}
""",
    )
    assert table.currency == "GBP"
    assert set(table.models) == {"sketch-v1"}
    assert table.estimate(_usage("sketch-v1", size=1024)) == 10_000  # no scaling asked for
    assert table.estimate(_usage("dall-e-2")) == 500_000  # the operator's "*", not the list


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- just\n- a list\n", "a price table is a mapping"),
        ("", "a price table is a mapping"),
        ("currency: [unclosed\n", "cannot read"),
        ("models: {m: {per_image: 0.01}}\n", "currency: Field required"),
        ("currency: usd\nmodels: {}\n", "ISO 4217"),
        ("currency: USD\nprices: {}\n", "prices: Extra inputs"),
        ("currency: USD\nmodels: {m: {per_imag: 0.01}}\n", "model 'm': per_imag: Extra inputs"),
        (
            "currency: USD\nmodels: {m: {per_image: -0.01}}\n",
            "model 'm': per_image: .*greater than or equal to 0",
        ),
        ("currency: USD\nmodels: {m: {per_image: cheap}}\n", "model 'm': per_image: expected a"),
        ("currency: USD\nmodels: {m: {per_image: true}}\n", "model 'm': per_image: expected a"),
        ("currency: USD\nmodels: {m: {reference_size: 512x512}}\n", "model 'm': .*has none"),
        ("currency: USD\nmodels: {m: {sizes: {}}}\n", "model 'm': .*has none"),
        (
            "currency: USD\nmodels: {m: {per_image: 0.01, per_megapixel_step: 0.1}}\n",
            "model 'm': needs exactly one price",
        ),
        ("currency: USD\nmodels: {m: {sizes: {512: 0.01}}}\n", "model 'm': sizes.*512x512"),
        ("currency: USD\nmodels: {m: {sizes: {'0x512': 0.01}}}\n", "model 'm': sizes.*WIDTHx"),
        (
            "currency: USD\nmodels: {m: {per_image: 0.01, reference_size: big}}\n",
            "model 'm': reference_size: a size is",
        ),
        ("currency: USD\nmodels: {m: {per_gpu_second: 0.01}}\n", "model 'm': .*go together"),
        (
            "currency: USD\nmodels: {m: {per_image: 0.01, estimate_gpu_s: 1}}\n",
            "model 'm': .*go together",
        ),
        (
            "currency: USD\nmodels: {m: {per_image: 0.01, reference_size: 256x256}}\n",
            "model 'm': reference_size is only for",
        ),
        (
            "currency: USD\nmodels: {m: {sizes: {'512x512': 0.01}, scale_with_pixels: true}}\n",
            "model 'm': scale_with_pixels needs per_image",
        ),
    ],
)
def test_invalid_file_names_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        _table(tmp_path, text)
    assert str(raised.value).startswith(str(tmp_path / "prices.yaml"))


def test_missing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the price table"):
        load_prices(tmp_path / "absent.yaml")
