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
    encode,
    parse_client_message,
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
        ('{"type": "signal"}', "unknown signal None"),
        ('{"type": "signal", "signal": "SIGSEGV"}', "unknown signal 'SIGSEGV'"),
        ('{"type": "signal", "signal": "INT"}', "unknown signal 'INT'"),
        ("{}", "unknown message type None"),
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
    }
    assert state_message(state) == {
        "type": "state",
        "state": state,
        "exitCode": None,
        "reason": None,
        "signal": None,
    }
    assert state_message(state, 139, Reason.EXITED)["signal"] == "SIGSEGV"


def test_states_and_reasons_are_their_own_json():
    assert encode(state_message(State.TERMINATED, None, Reason.IDLE_TIMEOUT)) == (
        '{"type":"state","state":"TERMINATED","exitCode":null,"reason":"idle_timeout","signal":null}'
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
