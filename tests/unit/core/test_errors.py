"""Errors carry the header fields their status needs (RFC 6585, RFC 6750, RFC 9110)."""

from __future__ import annotations

from tradeguard.core.errors import AccountLocked, TooManyRequests, Unauthorized


class TestTooManyRequests:
    def test_retry_after_is_whole_seconds_rounded_up_in_header_and_body(self) -> None:
        error = TooManyRequests("slow down", retry_after_seconds=2.1)
        assert error.headers() == {"Retry-After": "3"}
        assert error.to_problem()["retry_after_seconds"] == 3

    def test_retry_after_is_at_least_one_second(self) -> None:
        assert TooManyRequests(retry_after_seconds=0).headers() == {"Retry-After": "1"}

    def test_the_lockout_is_its_own_problem_type(self) -> None:
        locked = AccountLocked("locked", retry_after_seconds=900)
        assert locked.status == 429
        assert locked.type.endswith("/account-locked")
        assert locked.headers() == {"Retry-After": "900"}


class TestUnauthorized:
    def test_without_an_error_code_the_challenge_names_only_scheme_and_realm(self) -> None:
        assert Unauthorized("send a token").headers() == {
            "WWW-Authenticate": 'Bearer realm="tradeguard"'
        }

    def test_an_error_code_comes_with_the_detail_as_description(self) -> None:
        error = Unauthorized("the session has ended", bearer_error="invalid_token")
        assert error.headers()["WWW-Authenticate"] == (
            'Bearer realm="tradeguard", error="invalid_token", '
            'error_description="the session has ended"'
        )

    def test_a_detail_that_cannot_be_quoted_is_left_out_of_the_challenge(self) -> None:
        error = Unauthorized('say "hi"\\', bearer_error="invalid_request")
        assert error.headers()["WWW-Authenticate"] == (
            'Bearer realm="tradeguard", error="invalid_request"'
        )
