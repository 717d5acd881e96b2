"""NIST SP 800-63B-4 password rules: normalization, length, blocklists, personal data."""

from __future__ import annotations

import pytest

from tradeguard.identity import passwords
from tradeguard.identity.breached_passwords import NoBreachCheck
from tradeguard.identity.passwords import PasswordPolicy, PasswordRejection, normalize_password

STRONG = "violet tractor juggles quietly"


class RecordingChecker:
    def __init__(self, *, breached: bool) -> None:
        self.breached = breached
        self.seen: list[str] = []

    async def is_breached(self, password: str) -> bool:
        self.seen.append(password)
        return self.breached


@pytest.mark.spec("AUTH-1")
class TestPasswordPolicy:
    def test_a_strong_passphrase_is_accepted(self) -> None:
        verdict = PasswordPolicy().check(STRONG, user_inputs=["alice", "alice@example.com"])

        assert verdict.accepted
        assert verdict.reason is None

    @pytest.mark.parametrize("password", ["password123456", "qwertyuiopasdf", "123456789012345"])
    def test_common_passwords_are_refused_without_echoing_them(self, password: str) -> None:
        verdict = PasswordPolicy().check(password)

        assert verdict.reason is PasswordRejection.TOO_PREDICTABLE
        assert password not in verdict.message
        assert verdict.message

    @pytest.mark.parametrize(
        ("password", "user_inputs"),
        [
            ("alice-trades-2026!", ["alice"]),
            ("ALICE-trades-2026!", ["alice"]),
            ("smith-buys-tesla-27", ["alice.smith@example.com"]),
            ("my alice.smith@example.com pass", ["alice.smith@example.com"]),
        ],
    )
    def test_a_password_containing_the_username_or_email_is_refused(
        self, password: str, user_inputs: list[str]
    ) -> None:
        verdict = PasswordPolicy().check(password, user_inputs=user_inputs)

        assert verdict.reason is PasswordRejection.CONTAINS_PERSONAL_INFO
        assert password not in verdict.message

    def test_very_short_identifiers_do_not_refuse_unrelated_passwords(self) -> None:
        assert PasswordPolicy().check(STRONG, user_inputs=["al", "t@x.io"]).accepted

    def test_a_password_under_the_minimum_length_is_refused(self) -> None:
        verdict = PasswordPolicy().check("k7#Vq9!mZ2x")

        assert verdict.reason is PasswordRejection.TOO_SHORT
        assert "12" in verdict.message

    def test_length_is_counted_after_nfkc_normalization(self) -> None:
        composed_on_normalization = "e\u0301" * 8  # 16 code points, 8 after NFKC

        verdict = PasswordPolicy().check_length(composed_on_normalization)

        assert verdict.reason is PasswordRejection.TOO_SHORT

    def test_fullwidth_and_ascii_forms_are_the_same_password(self) -> None:
        assert normalize_password("ｐａｓｓｗｏｒｄ") == "password"
        assert normalize_password("\ufb01nance") == "finance"

    def test_a_password_over_256_characters_is_refused_before_scoring(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_scoring(*_args: object, **_kwargs: object) -> object:
            raise AssertionError("zxcvbn ran on an over-long password")

        monkeypatch.setattr(passwords, "zxcvbn", no_scoring)

        assert PasswordPolicy().check("x" * 257).reason is PasswordRejection.TOO_LONG
        assert PasswordPolicy().check("x" * 100_000).reason is PasswordRejection.TOO_LONG

    def test_a_password_over_the_byte_cap_is_refused(self) -> None:
        policy = PasswordPolicy(max_utf8_bytes=64)

        assert policy.check_length("🔐" * 17).reason is PasswordRejection.TOO_LONG
        assert policy.check_length("🔐" * 16).accepted

    def test_exactly_256_characters_is_within_the_limit(self) -> None:
        assert PasswordPolicy().check_length("a" * 256).accepted

    def test_a_long_strong_password_is_scored_on_its_first_72_characters(self) -> None:
        long_phrase = (STRONG + " ") * 8

        assert PasswordPolicy().check(long_phrase[:250]).accepted

    @pytest.mark.parametrize(
        "kwargs", [{"min_length": 7}, {"min_length": 300}, {"min_score": 5}, {"min_score": -1}]
    )
    def test_unsafe_policy_parameters_are_refused(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="must be"):
            PasswordPolicy(**kwargs)

    async def test_a_breached_password_is_refused_after_the_local_checks(self) -> None:
        checker = RecordingChecker(breached=True)

        verdict = await PasswordPolicy().assess(
            "ｖｉｏｌｅｔ tractor juggles quietly", breach_checker=checker
        )

        assert verdict.reason is PasswordRejection.BREACHED
        assert checker.seen == [STRONG]

    async def test_a_locally_refused_password_is_never_sent_to_the_breach_service(self) -> None:
        checker = RecordingChecker(breached=False)

        verdict = await PasswordPolicy().assess("password123456", breach_checker=checker)

        assert verdict.reason is PasswordRejection.TOO_PREDICTABLE
        assert checker.seen == []

    async def test_a_strong_unbreached_password_passes_every_check(self) -> None:
        verdict = await PasswordPolicy().assess(
            STRONG, user_inputs=["alice"], breach_checker=NoBreachCheck()
        )

        assert verdict.accepted
