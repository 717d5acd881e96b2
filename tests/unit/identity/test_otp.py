"""SMS and email one-time codes: expiry, single use, attempt limits, restricted channel."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.identity.mfa import otp
from tradeguard.identity.mfa.otp import OtpChannel, OtpOutcome

PEPPER = b"p" * 32


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


@pytest.mark.spec("AUTH-4", "AUTH-5")
class TestOneTimeCodes:
    def test_a_code_is_accepted_once(self, clock: FrozenClock) -> None:
        code, challenge = otp.issue(channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER)

        first = otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=PEPPER)
        second = otp.verify(first.challenge, code, now_ns=clock.now_ns(), pepper=PEPPER)

        assert first.accepted
        assert first.challenge.used
        assert second.outcome is OtpOutcome.ALREADY_USED

    def test_a_code_expires_after_five_minutes(self, clock: FrozenClock) -> None:
        code, challenge = otp.issue(channel=OtpChannel.EMAIL, now_ns=clock.now_ns(), pepper=PEPPER)
        clock.advance(seconds=5 * 60)

        result = otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=PEPPER)

        assert result.outcome is OtpOutcome.EXPIRED

    def test_a_code_is_accepted_just_before_expiry(self, clock: FrozenClock) -> None:
        code, challenge = otp.issue(channel=OtpChannel.EMAIL, now_ns=clock.now_ns(), pepper=PEPPER)
        clock.advance(seconds=5 * 60, ns=-1)

        assert otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=PEPPER).accepted

    def test_five_wrong_codes_kill_the_challenge_even_for_the_right_code(
        self, clock: FrozenClock
    ) -> None:
        code, challenge = otp.issue(channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER)
        for expected_left in (4, 3, 2, 1, 0):
            result = otp.verify(challenge, _wrong(code), now_ns=clock.now_ns(), pepper=PEPPER)
            assert result.outcome is OtpOutcome.WRONG_CODE
            assert result.challenge.attempts_left == expected_left
            challenge = result.challenge

        final = otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=PEPPER)

        assert challenge.is_dead
        assert final.outcome is OtpOutcome.ATTEMPTS_EXHAUSTED

    def test_the_right_code_on_the_last_attempt_is_accepted(self, clock: FrozenClock) -> None:
        code, challenge = otp.issue(
            channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER, max_attempts=2
        )
        challenge = otp.verify(
            challenge, _wrong(code), now_ns=clock.now_ns(), pepper=PEPPER
        ).challenge

        assert otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=PEPPER).accepted

    @pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "１２３４５６"])
    def test_malformed_input_does_not_spend_an_attempt(
        self, clock: FrozenClock, typed: str
    ) -> None:
        _, challenge = otp.issue(channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER)

        result = otp.verify(challenge, typed, now_ns=clock.now_ns(), pepper=PEPPER)

        assert result.outcome is OtpOutcome.MALFORMED
        assert result.challenge == challenge

    def test_verification_never_mutates_the_challenge_it_was_given(
        self, clock: FrozenClock
    ) -> None:
        code, challenge = otp.issue(channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER)

        otp.verify(challenge, _wrong(code), now_ns=clock.now_ns(), pepper=PEPPER)
        otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=PEPPER)

        assert challenge.attempts_left == otp.DEFAULT_MAX_ATTEMPTS
        assert not challenge.used

    def test_a_different_pepper_never_accepts_the_code(self, clock: FrozenClock) -> None:
        code, challenge = otp.issue(channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER)

        result = otp.verify(challenge, code, now_ns=clock.now_ns(), pepper=b"q" * 32)

        assert result.outcome is OtpOutcome.WRONG_CODE

    def test_the_stored_challenge_holds_no_plain_code(self, clock: FrozenClock) -> None:
        code, challenge = otp.issue(channel=OtpChannel.SMS, now_ns=clock.now_ns(), pepper=PEPPER)

        assert code.encode() not in challenge.code_hash
        assert code not in repr(challenge)
        assert challenge.expires_at_ns == clock.now_ns() + 300 * NS_PER_SECOND

    def test_sms_is_a_restricted_authenticator_and_email_is_not(self) -> None:
        assert OtpChannel.SMS.is_restricted
        assert not OtpChannel.EMAIL.is_restricted

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"digits": 5}, "6 to 8"),
            ({"digits": 9}, "6 to 8"),
            ({"pepper": b"short"}, "pepper"),
            ({"ttl_seconds": 0}, "positive"),
            ({"max_attempts": 0}, "positive"),
        ],
    )
    def test_unsafe_parameters_are_refused(self, kwargs: dict[str, object], message: str) -> None:
        arguments: dict[str, object] = {"channel": OtpChannel.SMS, "now_ns": 0, "pepper": PEPPER}
        arguments.update(kwargs)

        with pytest.raises(ValueError, match=message):
            otp.issue(**arguments)  # type: ignore[arg-type]

    @settings(max_examples=30, deadline=None)
    @given(digits=st.integers(min_value=6, max_value=8))
    def test_codes_have_the_requested_number_of_ascii_digits(self, digits: int) -> None:
        code, challenge = otp.issue(
            channel=OtpChannel.EMAIL, now_ns=0, pepper=PEPPER, digits=digits
        )

        assert len(code) == digits
        assert code.isascii()
        assert code.isdigit()
        assert otp.verify(challenge, code, now_ns=0, pepper=PEPPER).accepted
