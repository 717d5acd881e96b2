"""RFC 6238 TOTP: published vectors, an independent implementation, replay, skew, input."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from datetime import UTC, datetime

import pyotp
import pytest

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.identity.mfa import totp
from tradeguard.identity.mfa.totp import TotpFactor

# RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]
NOW_NS = 1_767_225_615 * NS_PER_SECOND  # 2026-01-01T00:00:15Z, mid-step


def _oathtool() -> str:
    path = shutil.which("oathtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("oathtool is required in CI: apt-get install -y oathtool")
        pytest.skip("oathtool not installed (apt-get install -y oathtool)")
    return path


@pytest.mark.spec("AUTH-6")
class TestTotp:
    @pytest.mark.parametrize(("unix_time", "code"), RFC_VECTORS)
    def test_rfc_6238_appendix_b_sha1_vectors_are_accepted(self, unix_time: int, code: str) -> None:
        step = totp.verify(
            RFC_SECRET, code, now_ns=unix_time * NS_PER_SECOND, last_used_step=None, digits=8
        )

        assert step == unix_time // 30
        assert totp.code_at_step(RFC_SECRET, unix_time // 30, digits=8) == code

    @pytest.mark.parametrize(
        "moment",
        [
            "2026-01-01 00:00:00",
            "2026-03-14 15:09:26",
            "2031-07-04 23:59:59",
            "2038-01-19 03:14:08",
        ],
    )
    def test_codes_from_oathtool_an_independent_implementation_are_accepted(
        self, moment: str
    ) -> None:
        oathtool = _oathtool()
        secret = totp.new_secret()
        when = datetime.strptime(moment, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        code = subprocess.run(
            [oathtool, "--totp", "-b", secret, "--now", f"{moment} UTC"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

        step = totp.verify(
            secret, code, now_ns=int(when.timestamp()) * NS_PER_SECOND, last_used_step=None
        )

        assert step == int(when.timestamp()) // 30

    def test_a_code_is_never_accepted_twice(self) -> None:
        secret = totp.new_secret()
        code = totp.code_at_step(secret, totp.time_step(NOW_NS))
        first = totp.verify(secret, code, now_ns=NOW_NS, last_used_step=None)

        again = totp.verify(secret, code, now_ns=NOW_NS + 5 * NS_PER_SECOND, last_used_step=first)

        assert first == totp.time_step(NOW_NS)
        assert again is None

    def test_the_enrolment_code_cannot_be_replayed_to_log_in(self) -> None:
        factor = TotpFactor.generate()
        enrolment_code = totp.code_at_step(factor.secret, totp.time_step(NOW_NS))
        enrolled_step = factor.verify(enrolment_code, now_ns=NOW_NS, last_used_step=None)

        login = factor.verify(
            enrolment_code, now_ns=NOW_NS + 20 * NS_PER_SECOND, last_used_step=enrolled_step
        )

        assert enrolled_step is not None
        assert login is None

    def test_an_older_code_is_refused_once_a_newer_step_was_used(self) -> None:
        secret = totp.new_secret()
        current = totp.time_step(NOW_NS)
        previous_code = totp.code_at_step(secret, current - 1)

        assert totp.verify(secret, previous_code, now_ns=NOW_NS, last_used_step=current) is None

    def test_the_next_code_is_accepted_after_one_was_used(self) -> None:
        secret = totp.new_secret()
        current = totp.time_step(NOW_NS)
        later = NOW_NS + 30 * NS_PER_SECOND

        step = totp.verify(
            secret, totp.code_at_step(secret, current + 1), now_ns=later, last_used_step=current
        )

        assert step == current + 1

    @pytest.mark.parametrize("offset", [-1, 0, 1])
    def test_one_step_of_clock_skew_either_way_is_honoured(self, offset: int) -> None:
        secret = totp.new_secret()
        current = totp.time_step(NOW_NS)
        code = totp.code_at_step(secret, current + offset)

        assert totp.verify(secret, code, now_ns=NOW_NS, last_used_step=None) == current + offset

    @pytest.mark.parametrize("offset", [-2, 2])
    def test_two_steps_of_clock_skew_are_refused(self, offset: int) -> None:
        secret = totp.new_secret()
        current = totp.time_step(NOW_NS)
        code = totp.code_at_step(secret, current + offset)
        window = {totp.code_at_step(secret, current + d) for d in (-1, 0, 1)}
        if code in window:  # a 1-in-10^5 collision would make the test meaningless
            pytest.skip("code collides with one inside the window")

        assert totp.verify(secret, code, now_ns=NOW_NS, last_used_step=None) is None

    @pytest.mark.parametrize(
        "code",
        ["", "12345", "1234567", "abcdef", "12345a", "１２３４５６", "١٢٣٤٥٦", "12345\n", "-12345"],
    )
    def test_malformed_codes_are_refused_before_any_hmac(
        self, code: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_crypto(*_args: object, **_kwargs: object) -> str:
            raise AssertionError("an HMAC was computed for malformed input")

        monkeypatch.setattr(totp, "code_at_step", no_crypto)

        assert totp.verify(totp.new_secret(), code, now_ns=NOW_NS, last_used_step=None) is None

    def test_spaces_typed_inside_a_code_are_ignored(self) -> None:
        secret = totp.new_secret()
        code = totp.code_at_step(secret, totp.time_step(NOW_NS))

        spaced = f"{code[:3]} {code[3:]}"

        assert totp.verify(secret, spaced, now_ns=NOW_NS, last_used_step=None) is not None

    def test_every_step_in_the_window_is_computed_even_after_a_match(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        secret = totp.new_secret()
        current = totp.time_step(NOW_NS)
        code = totp.code_at_step(secret, current - 1)
        computed: list[int] = []
        real = totp.code_at_step

        def counting(secret: str, step: int, *, digits: int = 6) -> str:
            computed.append(step)
            return real(secret, step, digits=digits)

        monkeypatch.setattr(totp, "code_at_step", counting)

        assert totp.verify(secret, code, now_ns=NOW_NS, last_used_step=None) == current - 1
        assert computed == [current - 1, current, current + 1]

    def test_a_wrong_code_is_refused(self) -> None:
        secret = totp.new_secret()
        window = {totp.code_at_step(secret, totp.time_step(NOW_NS) + d) for d in (-1, 0, 1)}
        wrong = next(f"{n:06d}" for n in range(10**6) if f"{n:06d}" not in window)

        assert totp.verify(secret, wrong, now_ns=NOW_NS, last_used_step=None) is None

    def test_new_secrets_have_160_bits_and_differ(self) -> None:
        secrets_made = {totp.new_secret() for _ in range(20)}

        assert len(secrets_made) == 20
        assert all(len(base64.b32decode(s)) == 20 for s in secrets_made)

    def test_the_provisioning_uri_round_trips_through_an_authenticator_parser(self) -> None:
        factor = TotpFactor.generate()

        uri = factor.provisioning_uri("alice@example.com", "Tradeguard")
        parsed = pyotp.parse_uri(uri)

        assert uri.startswith("otpauth://totp/Tradeguard:alice%40example.com?")
        assert isinstance(parsed, pyotp.TOTP)
        assert parsed.secret == factor.secret
        assert parsed.issuer == "Tradeguard"
        assert parsed.digits == 6
        assert parsed.interval == 30

    def test_the_qr_code_is_a_png_image(self) -> None:
        png = totp.qr_png(TotpFactor.generate().provisioning_uri("alice", "Tradeguard"))

        assert png.startswith(b"\x89PNG\r\n\x1a\n")

    def test_the_secret_is_not_in_the_factor_repr(self) -> None:
        factor = TotpFactor.generate()

        assert factor.secret not in repr(factor)
