"""The wire protocol: client messages, state messages and UTF-8 decoding at chunk edges."""

from __future__ import annotations

import json
import random

import pytest

from sandbox_engine.protocol import (
    Eof,
    Input,
    Kill,
    ProtocolError,
    Resize,
    Signal,
    StreamDecoder,
    check_size,
    encode,
    parse_client_message,
    parse_json,
    shown,
    state_message,
    utf8_prefix,
)
from sandbox_engine.states import Reason, State

# --- parse_client_message -------------------------------------------------------------------


def test_input_carries_its_data_as_utf8_bytes():
    assert parse_client_message('{"type": "input", "data": "héllo €\\n"}') == Input("héllo €\n".encode())


def test_input_may_be_empty():
    assert parse_client_message('{"type": "input", "data": ""}') == Input(b"")


def test_eof_and_kill():
    assert parse_client_message('{"type": "eof"}') == Eof()
    assert parse_client_message('{"type": "kill"}') == Kill()


def test_extra_fields_are_ignored():
    assert parse_client_message('{"type": "kill", "why": "bored"}') == Kill()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"type": "eof"}', "binary"),
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ('["input", "x"]', "JSON object"),
        ('"eof"', "JSON object"),
        ("42", "JSON object"),
        ("null", "JSON object"),
        ('{"type": "launch"}', "unknown message type 'launch'"),
        ('{"type": "resize"}', "'cols' must be a whole number"),
        ('{"type": "resize", "cols": 0, "rows": 24}', "'cols' must be a whole number from 1 to 1000"),
        ('{"type": "resize", "cols": 80, "rows": 100000}', "'rows' must be a whole number from 1 to 500"),
        ('{"type": "resize", "cols": 80.5, "rows": 24}', "'cols'"),
        ('{"type": "resize", "cols": true, "rows": 24}', "'cols'"),
        ('{"type": "signal"}', "unknown signal null"),
        ('{"type": "signal", "signal": "SIGSEGV"}', "unknown signal 'SIGSEGV'"),
        ('{"type": "signal", "signal": "INT"}', "unknown signal 'INT'"),
        ("{}", "unknown message type null"),
        ('{"type": "input"}', "string 'data'"),
        ('{"type": "input", "data": 5}', "string 'data'"),
        ('{"type": "input", "data": null}', "string 'data'"),
        ('{"type": "input", "data": ["a"]}', "string 'data'"),
    ],
)
def test_unusable_messages_are_protocol_errors(raw, says):
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    assert says in str(caught.value)


# Hostile shapes (issue 9.5): each is a ProtocolError, never another exception, and the error
# quotes at most a short prefix of what the client sent.
HOSTILE = [
    ("[" * 200_000, "nested too deeply"),
    ('{"type": "input", "data": ' + "[" * 200_000 + "}", "nested too deeply"),
    ("{" + '"a":{' * 100_000, "nested too deeply"),
    ('{"type": "resize", "cols": ' + "9" * 5000 + ', "rows": 24}', "a number of 5000 digits"),
    ('{"type": "eof", "x": ' + "9" * 101 + "}", "a number of 101 digits"),
    ('{"type": "resize", "cols": -' + "9" * 200 + ', "rows": 24}', "digits"),
    ('{"type": "resize", "cols": 1e999, "rows": 24}', "'cols' must be a whole number"),
    ('{"type": "resize", "cols": 80, "rows": -1e999}', "'rows' must be a whole number"),
    ('{"type": "resize", "cols": 1' + "0" * 400 + '.0, "rows": 24}', "'cols' must be a whole number"),
    ('{"type": "resize", "cols": NaN, "rows": 24}', "NaN is not a JSON number"),
    ('{"type": "resize", "cols": 80, "rows": Infinity}', "Infinity is not a JSON number"),
    ('{"type": "resize", "cols": -Infinity, "rows": 24}', "-Infinity is not a JSON number"),
    ('{"type": "resize", "cols": false, "rows": 24}', "'cols'"),
    ('{"type": "resize", "cols": "80", "rows": 24}', "'cols'"),
    ('{"type": "resize", "cols": [80], "rows": 24}', "'cols'"),
    ('{"type": "resize", "cols": 80, "rows": 24.000001}', "'rows'"),
    ('{"type": "signal", "signal": ["SIGINT"]}', "unknown signal an array"),
    ('{"type": "signal", "signal": {"name": "SIGINT"}}', "unknown signal an object"),
    ('{"type": "signal", "signal": 2}', "unknown signal 2;"),
    ('{"type": "signal", "signal": true}', "unknown signal true;"),
    ('{"type": "signal", "signal": "' + "A" * 100_000 + '"}', "unknown signal 'AAAA"),
    ('{"type": "signal", "signal": "\\ud800"}', "unknown signal '\\ud800'"),
    ('{"type": "' + "x" * 100_000 + '"}', "unknown message type 'xxxx"),
    ('{"type": ["input"], "data": "x"}', "unknown message type an array"),
    ('{"type": "input", "data": "ok \\ud83d"}', "lone surrogate at 3"),
    ('{"type": "input", "data": "\\udc00 x"}', "lone surrogate at 0"),
]


@pytest.mark.parametrize(("raw", "says"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_messages_are_protocol_errors_that_quote_little(raw, says):
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    message = str(caught.value)
    assert says in message
    assert len(message) < 200
    # What the client reads must be sendable: UTF-8 text, no lone surrogates.
    message.encode("utf-8")


def test_a_surrogate_pair_is_one_character():
    assert parse_client_message('{"type": "input", "data": "\\ud83d\\ude00"}') == Input("😀".encode())


@pytest.mark.parametrize(
    ("cols", "rows"),
    [(80.0, 24.0), (8e1, 2.4e1), (1000.0, 500), (1, 1.0)],
    ids=["80.0", "8e1", "most", "least"],
)
def test_a_size_given_as_whole_floats_is_whole_numbers(cols, rows):
    # JSON has one kind of number: 80.0 and 80 are the same size.
    size = check_size(cols, rows)
    assert size == (int(cols), int(rows))
    assert all(type(n) is int for n in size)
    raw = json.dumps({"type": "resize", "cols": cols, "rows": rows})
    assert parse_client_message(raw) == Resize(int(cols), int(rows))


def test_parse_json_refuses_what_is_not_plain_json():
    assert parse_json(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    assert parse_json("9" * 100) == int("9" * 100)
    for raw, says in [
        (b'{"a": "\xff"}', "not UTF-8"),
        ("NaN", "NaN"),
        ("9" * 101, "101 digits"),
        ("", "Expecting"),
    ]:
        with pytest.raises(ProtocolError, match=says):
            parse_json(raw)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("SIGINT", "'SIGINT'"),
        ("x" * 41, "'" + "x" * 40 + "'..."),
        ("\x00\ud800", "'\\x00\\ud800'"),
        (None, "null"),
        (False, "false"),
        (2.5, "2.5"),
        (int("9" * 100), "9" * 40 + "..."),
        ([[["deep"]]], "an array"),
        ({"a": 1}, "an object"),
    ],
)
def test_shown_quotes_a_short_prefix_of_client_input(value, text):
    assert shown(value) == text


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGKILL", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"])
def test_signal_messages(name):
    assert parse_client_message(json.dumps({"type": "signal", "signal": name})) == Signal(name)


def test_resize_message():
    assert parse_client_message('{"type": "resize", "cols": 120, "rows": 40}') == Resize(120, 40)


def test_a_protocol_error_is_a_value_error():
    assert issubclass(ProtocolError, ValueError)


# --- messages to the client -----------------------------------------------------------------


def test_running_state_has_no_exit_fields():
    assert state_message(State.RUNNING) == {"type": "state", "state": "RUNNING"}


@pytest.mark.parametrize("state", [State.FINISHED, State.TERMINATED])
def test_final_states_always_carry_exit_code_and_reason(state):
    assert state_message(state, 3, Reason.EXITED) == {
        "type": "state",
        "state": state,
        "exitCode": 3,
        "reason": "exited",
        "signal": None,
        "usage": None,
    }
    assert state_message(state) == {
        "type": "state",
        "state": state,
        "exitCode": None,
        "reason": None,
        "signal": None,
        "usage": None,
    }
    assert state_message(state, 139, Reason.EXITED)["signal"] == "SIGSEGV"


def test_states_and_reasons_are_their_own_json():
    assert encode(state_message(State.TERMINATED, None, Reason.IDLE_TIMEOUT)) == (
        '{"type":"state","state":"TERMINATED","exitCode":null,"reason":"idle_timeout","signal":null,"usage":null}'
    )
    assert {reason.state for reason in Reason} == {State.FINISHED, State.TERMINATED}


def test_encode_is_compact_json_that_keeps_non_ascii_readable():
    text = encode({"type": "stdout", "data": "€ 😀"})
    assert text == '{"type":"stdout","data":"€ 😀"}'
    assert json.loads(text) == {"type": "stdout", "data": "€ 😀"}


# --- StreamDecoder --------------------------------------------------------------------------


def test_a_character_split_across_chunks_arrives_whole():
    decoder = StreamDecoder()
    assert decoder.decode(b"price: \xe2\x82") == "price: "
    assert decoder.decode(b"\xac!") == "€!"
    assert decoder.flush() == ""


def test_a_four_byte_emoji_split_one_and_three():
    emoji = "😀".encode()
    assert len(emoji) == 4
    decoder = StreamDecoder()
    assert decoder.decode(emoji[:1]) == ""
    assert decoder.decode(emoji[1:]) == "😀"


def test_a_character_fed_byte_by_byte():
    decoder = StreamDecoder()
    out = [decoder.decode(bytes([b])) for b in "a😀€é".encode()]
    assert "".join(out) == "a😀€é"
    # Nothing but whole characters ever comes out of one call.
    assert all(len(piece) <= 1 for piece in out)


def test_invalid_bytes_become_replacement_characters():
    decoder = StreamDecoder()
    assert decoder.decode(b"a\xffb\xc3(") == "a\ufffdb\ufffd("


def test_an_unfinished_character_at_the_end_becomes_a_replacement_character():
    decoder = StreamDecoder()
    assert decoder.decode(b"ok\xe2\x82") == "ok"
    assert decoder.flush() == "\ufffd"


def test_random_splits_always_decode_to_the_original_text():
    rng = random.Random(1)
    alphabet = "aZ\né€😀中"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        data = text.encode()
        decoder = StreamDecoder()
        pieces, i = [], 0
        while i < len(data):
            step = rng.randint(1, 5)
            pieces.append(decoder.decode(data[i : i + step]))
            i += step
        pieces.append(decoder.flush())
        assert "".join(pieces) == text
        assert "\ufffd" not in "".join(pieces)


# --- utf8_prefix ----------------------------------------------------------------------------


def test_utf8_prefix_keeps_data_within_the_limit():
    assert utf8_prefix(b"hello", 10) == b"hello"
    assert utf8_prefix(b"hello", 5) == b"hello"
    assert utf8_prefix(b"hello", 3) == b"hel"
    assert utf8_prefix(b"hello", 0) == b""


def test_utf8_prefix_steps_back_to_a_character_start():
    euro = "€".encode()  # 3 bytes
    assert utf8_prefix(b"ab" + euro, 4) == b"ab"
    assert utf8_prefix(b"ab" + euro, 3) == b"ab"
    assert utf8_prefix(b"ab" + euro + b"c", 5) == b"ab" + euro
    assert utf8_prefix("😀".encode(), 3) == b""


def test_utf8_prefix_never_cuts_a_character_nor_exceeds_the_limit():
    rng = random.Random(2)
    alphabet = "a\né€😀中ß"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        data = text.encode()
        for limit in range(len(data) + 2):
            prefix = utf8_prefix(data, limit)
            assert len(prefix) <= limit
            assert data.startswith(prefix)
            # Decodes strictly: it ends on a character boundary.
            kept = prefix.decode("utf-8")
            # And it is the longest such prefix: the next character would not fit.
            if len(prefix) < len(data):
                assert len((kept + text[len(kept)]).encode()) > limit
