from __future__ import annotations

from bot.engine import last_error_line
from bot.excerpt import select


def test_python_traceback_is_kept_with_the_last_lines() -> None:
    lines = [f"processing file {i}" for i in range(200)]
    lines[50:53] = ["Traceback (most recent call last):", '  File "x.py", line 3', "ValueError: bad gate"]
    lines += ["ERROR: bad gate"]
    excerpt = select("\n".join(lines), tail=5)
    text = excerpt.text
    assert "Traceback (most recent call last):" in text and "ValueError: bad gate" in text
    assert text.splitlines()[-1] == "ERROR: bad gate"
    assert excerpt.first_error_line == 51
    assert "… (47 lines)" in text and excerpt.truncated


def test_r_errors_and_kills_are_found() -> None:
    r_log = "loading\nError in read.csv(x) : no such file\nCalls: main\nExecution halted\n"
    assert select(r_log).first_error_line == 2
    assert select("step 1\nstep 2\nKilled\n").first_error_line == 3
    assert select("all good\n").first_error_line is None


def test_excerpt_fits_a_chat_message() -> None:
    lines = ["Traceback (most recent call last):"] + [f"  frame {i} " + "x" * 200 for i in range(40)]
    lines += [f"tail {i} " + "y" * 300 for i in range(30)]
    excerpt = select("\n".join(lines), max_chars=2500)
    assert len(excerpt.text) <= 2500
    assert excerpt.text.startswith("Traceback") and excerpt.text.rstrip().endswith("y" * 50)
    assert "… (trimmed)" in excerpt.text


def test_short_log_is_whole() -> None:
    excerpt = select("a\nb\nc")
    assert excerpt.text == "a\nb\nc" and not excerpt.truncated


def test_last_error_line() -> None:
    assert last_error_line("x\n2026-01-01 ERROR: first\nERROR: the reason\n") == "the reason"
    assert last_error_line("no errors here\n") is None
    assert len(last_error_line("ERROR: " + "z" * 1000) or "") == 300
