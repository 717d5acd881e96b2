"""Device names and user agents are client-supplied: stored and shown as plain text only."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.identity.devices import (
    DEVICE_NAME_MAX,
    device_name,
    fingerprint,
    plain_text,
    user_agent_text,
)


class TestPlainText:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("<svg onload=alert(1)>", ""),
            ("Firefox <b>on</b> Linux", "Firefox on Linux"),
            ("Phone <img src=x onerror=alert(1)", "Phone"),  # an unterminated tag
            ("a &lt;script&gt; b &#60;c&#x3e;", "a script b c"),
            ("\uff1cscript\uff1ealert(1)", "alert(1)"),  # fullwidth brackets fold to < >
            ("Bank\u202egnp.exe", "Bank gnp.exe"),  # a right-to-left override
            ("line\r\nBcc: x@example.com\x00", "line Bcc: x@example.com"),
            ('it\'s "quoted" `here`', "it s quoted here"),
            ("  many    spaces\t", "many spaces"),
            ("Pixel 8 · Android 15 – Chrome", "Pixel 8 · Android 15 – Chrome"),
        ],
    )
    def test_markup_and_control_characters_are_removed(self, raw: str, expected: str) -> None:
        assert plain_text(raw, limit=120) == expected

    def test_long_text_is_cut_to_the_limit(self) -> None:
        assert plain_text("x" * 500, limit=20) == "x" * 19 + "…"

    @given(st.text(max_size=2000), st.integers(min_value=1, max_value=300))
    def test_the_result_is_always_one_bounded_line_without_markup(
        self, raw: str, limit: int
    ) -> None:
        text = plain_text(raw, limit=limit)
        assert len(text) <= limit
        assert not set(text) & set("<>\"'`")
        assert all(unicodedata.category(ch)[0] not in {"C"} for ch in text)
        assert "\n" not in text
        assert text == text.strip()


class TestDeviceName:
    def test_agent_and_platform_make_a_bounded_plain_name(self) -> None:
        name = device_name({"user_agent": "<b>Agent</b>" + "a" * 200, "platform": "<i>iOS</i>"})
        assert name.startswith("Agent")
        assert name.endswith("(iOS)")
        assert len(name) <= DEVICE_NAME_MAX

    def test_a_name_made_only_of_markup_falls_back(self) -> None:
        assert device_name({"user_agent": "<svg onload=alert(1)>"}) == "unknown client"

    def test_an_empty_user_agent_is_stored_as_none(self) -> None:
        assert user_agent_text("<script></script>") is None
        assert user_agent_text("curl/8.5.0") == "curl/8.5.0"


class TestFingerprint:
    def test_the_same_attributes_give_the_same_fingerprint_and_others_another(self) -> None:
        one = fingerprint({"user_agent": "curl/8.5.0", "platform": "Linux"})
        assert one == fingerprint({"platform": "Linux", "user_agent": "curl/8.5.0"})
        assert one != fingerprint({"user_agent": "curl/8.5.0", "platform": "macOS"})
