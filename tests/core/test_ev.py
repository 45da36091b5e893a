import pytest

from expokit.core.ev import MSEC_LADDER, ev_token, parse_ev_list, parse_ev_token


def test_msec_tokens_exact() -> None:
    assert [ev_token(e) for e in MSEC_LADDER] == ["N1.5", "N1", "0", "P1", "P1.5"]


@pytest.mark.parametrize("ev", [-3.0, -0.5, 0.0, 0.33, 1.0, 2.25])
def test_token_roundtrip(ev: float) -> None:
    assert parse_ev_token(ev_token(ev)) == pytest.approx(ev)


def test_negative_zero_is_zero() -> None:
    assert ev_token(-0.0) == "0" and ev_token(-0.001) == "0"


def test_parse_list_mixed_and_sorted() -> None:
    assert parse_ev_list("P1.5, -1.5,0,+1,N1") == (-1.5, -1.0, 0.0, 1.0, 1.5)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("1,abc", "abc"),
        ("0,0.001", "repeats"),
        ("20", "out of range"),
        ("nan", "out of range"),
        ("X1", "X1"),
    ],
)
def test_parse_list_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_ev_list(text)


def test_bad_token() -> None:
    with pytest.raises(ValueError, match="not an EV token"):
        parse_ev_token("p1")
