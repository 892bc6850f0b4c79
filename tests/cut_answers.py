"""Helpers for answers cut in the middle of a character (the engines leave that character out)."""

from __future__ import annotations

from asclepius_ui.engines.base import unfinished_character


def decoded(engine, new: list[int]) -> str:
    """``new`` decoded by the tokenizer, less a character the answer stopped in the middle of (byte pieces that
    start a UTF-8 character and do not finish it), which the engine leaves out."""
    tail = b""
    for piece in reversed(engine.tokenizer.convert_ids_to_tokens(new[-4:])):
        if not (len(piece) == 6 and piece.startswith("<0x")):
            break
        tail = bytes([int(piece[3:5], 16)]) + tail
    return engine.tokenizer.decode(new[:len(new) - unfinished_character(tail)], skip_special_tokens=True)


def cut_answers(texts: list[str], pieces: list[bytes]) -> tuple[int, int]:
    """Check answers cut after 1, 2, … tokens (``texts[k - 1]``, with the answer's ``pieces``): cut after the first
    byte of a character, the answer leaves it out; cut after a stray byte, it shows "\ufffd" as the longer answer
    does. Returns how many of each case were met."""
    left_out = shown = 0
    for k in range(2, len(texts) + 1):
        last, before = pieces[k - 1], pieces[k - 2]
        if len(last) != 1 or last[0] < 0x80 or (len(before) == 1 and before[0] >= 0x80):
            continue
        if 0xC2 <= last[0] <= 0xF4:  # starts a character the answer stopped in the middle of
            assert texts[k - 1] == texts[k - 2], k
            left_out += 1
        elif last[0] <= 0xBF:  # a continuation byte with nothing to continue: invalid, shown
            assert texts[k - 1] == texts[k - 2] + "\ufffd", k
            shown += 1
    assert all(texts[-1].startswith(t) for t in texts)
    return left_out, shown
