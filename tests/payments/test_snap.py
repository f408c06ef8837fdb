"""SNAP signature: test vectors computed independently with openssl, and the verification rules."""

from __future__ import annotations

from datetime import UTC, datetime

from bejo_payments import snap

SECRET = "sandbox-client-secret"
PATH = "/api/v1/payments/callbacks/snap"
TIMESTAMP = "2026-11-27T10:00:00+07:00"
MINIFIED = b'{"virtualAccountNo":"8808000000000001","paidAmount":{"value":"1110000.00","currency":"IDR"}}'
PRETTY = b'{ "virtualAccountNo" : "8808000000000001",\n  "paidAmount": {"value": "1110000.00", "currency": "IDR"} }'
# printf '%s' "$MINIFIED" | sha256sum
BODY_SHA256 = "5b6ef0a155e036dbaca95a04e33058a93753e3e57be876f57f796870db09407e"
# printf '%s' "POST:$PATH::$BODY_SHA256:$TIMESTAMP" | openssl dgst -sha512 -hmac "$SECRET" -binary | base64 -w0
SIGNATURE_EMPTY_TOKEN = "mMjMgn4NCSnDOyIyt/V8Fe2EUAlAfJ9tveJuHo1HefuqsIO9vHnEIO3T241bfqpUb3xTOhL+lSdzAaKPX//n0w=="
# the same with the token "static-token"
SIGNATURE_STATIC_TOKEN = "tory3C2WNDdSCWxhApKgt0sD9Xef8j/IIGh8Y4cb8FYcBbrux+JRXDcuIoAKUofqqxdx2UN3HssH7j63N5qWcg=="


def test_minify_removes_whitespace_and_keeps_key_order() -> None:
    assert snap.minify(PRETTY) == MINIFIED
    assert snap.minify('{"name": "Toko Séjahtera"}'.encode()) == '{"name":"Toko Séjahtera"}'.encode()


def test_body_digest_vector() -> None:
    assert snap.body_digest(MINIFIED) == BODY_SHA256
    assert snap.body_digest(PRETTY) == BODY_SHA256


def test_string_to_sign() -> None:
    assert snap.string_to_sign("post", PATH, "", MINIFIED, TIMESTAMP) == f"POST:{PATH}::{BODY_SHA256}:{TIMESTAMP}"


def test_signature_vectors() -> None:
    assert snap.sign(SECRET, "POST", PATH, "", MINIFIED, TIMESTAMP) == SIGNATURE_EMPTY_TOKEN
    assert snap.sign(SECRET, "POST", PATH, "static-token", PRETTY, TIMESTAMP) == SIGNATURE_STATIC_TOKEN


def test_verify_accepts_the_vector_whatever_the_whitespace() -> None:
    assert snap.verify(SECRET, SIGNATURE_EMPTY_TOKEN, "POST", PATH, "", MINIFIED, TIMESTAMP)
    assert snap.verify(SECRET, SIGNATURE_EMPTY_TOKEN, "POST", PATH, "", PRETTY, TIMESTAMP)


def test_verify_refuses_any_change() -> None:
    args = ("POST", PATH, "", MINIFIED, TIMESTAMP)
    assert not snap.verify("another-secret", SIGNATURE_EMPTY_TOKEN, *args)
    assert not snap.verify(SECRET, SIGNATURE_STATIC_TOKEN, *args)  # signed with another token
    tampered = MINIFIED.replace(b"1110000.00", b"1110001.00")
    assert not snap.verify(SECRET, SIGNATURE_EMPTY_TOKEN, "POST", PATH, "", tampered, TIMESTAMP)
    assert not snap.verify(SECRET, SIGNATURE_EMPTY_TOKEN, "POST", PATH, "", MINIFIED, "2026-11-27T10:00:01+07:00")
    assert not snap.verify(SECRET, SIGNATURE_EMPTY_TOKEN, "POST", "/api/v1/other", "", MINIFIED, TIMESTAMP)
    assert not snap.verify(SECRET, SIGNATURE_EMPTY_TOKEN, "POST", PATH, "", b"not json", TIMESTAMP)
    assert not snap.verify(SECRET, "", *args)


def test_timestamps() -> None:
    moment = snap.parse_timestamp(TIMESTAMP)
    assert moment == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert snap.format_timestamp(datetime(2026, 11, 27, 3, 0, 0, 123456, tzinfo=UTC)) == TIMESTAMP
    assert snap.within_window(moment, datetime(2026, 11, 27, 3, 5, tzinfo=UTC), 300)
    assert snap.within_window(moment, datetime(2026, 11, 27, 2, 55, tzinfo=UTC), 300)
    assert not snap.within_window(moment, datetime(2026, 11, 27, 3, 5, 1, tzinfo=UTC), 300)
    assert not snap.within_window(moment, datetime(2026, 11, 27, 2, 54, 59, tzinfo=UTC), 300)


def test_a_timestamp_without_offset_is_refused() -> None:
    for value in ("2026-11-27T10:00:00", "yesterday"):
        try:
            snap.parse_timestamp(value)
        except ValueError:
            continue
        raise AssertionError(f"{value!r} was accepted")


def test_idempotency_key_uses_the_wib_day() -> None:
    # 23:30 UTC on the 26th is 06:30 WIB on the 27th.
    late = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    assert snap.idempotency_key("BANK", late, "123") == "BANK:2026-11-27:123"


def test_response_codes_are_distinct_seven_digit_codes() -> None:
    codes = [
        snap.SUCCESS,
        snap.BAD_REQUEST,
        snap.INVALID_FIELD_FORMAT,
        snap.MISSING_MANDATORY_FIELD,
        snap.UNAUTHORIZED_SIGNATURE,
        snap.STALE_TIMESTAMP,
        snap.TRANSACTION_CANCELLED,
        snap.UNKNOWN_BILL,
        snap.INVALID_AMOUNT,
        snap.PAID_BILL,
        snap.EXPIRED_BILL,
        snap.DUPLICATE_EXTERNAL_ID,
    ]
    rendered = [c.code for c in codes]
    assert len(set(rendered)) == len(rendered)
    assert all(
        len(code) == 7 and code[3:5] == "25" and code[:3] == str(c.http_status)
        for code, c in zip(rendered, codes, strict=True)
    )
    assert (snap.SUCCESS.code, snap.UNAUTHORIZED_SIGNATURE.code, snap.UNKNOWN_BILL.code) == (
        "2002500",
        "4012500",
        "4042512",
    )
    assert (snap.INVALID_AMOUNT.code, snap.PAID_BILL.code, snap.EXPIRED_BILL.code) == ("4042513", "4042514", "4042519")
