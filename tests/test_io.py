"""jaxvae.io: atomic writes, JSON lines with a torn last line, flat keys, user Python files."""

import json
import os
import re

import pytest

from jaxvae import io


def test_write_json_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "a.json")
    io.write_json(path, {"b": [1, 2.5], "a": {"c": None}})
    assert io.read_json(path) == {"b": [1, 2.5], "a": {"c": None}}
    io.write_json(path, {"x": 1})  # replaces
    assert io.read_json(path) == {"x": 1}
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_replace_keeps_the_old_content_and_no_temporary_file(tmp_path, monkeypatch):
    path = str(tmp_path / "a.json")
    io.write_json(path, {"old": True})

    def fail(src, dst):
        assert os.path.exists(src)  # the new content was fully written beside the target
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        io.write_json(path, {"new": True})
    assert io.read_json(path) == {"old": True}
    assert os.listdir(tmp_path) == ["a.json"]


def test_exclusive_write_creates_once(tmp_path):
    path = str(tmp_path / "s.json")
    assert io.write_atomic(path, "first\n", exclusive=True) is True
    assert io.write_atomic(path, "second\n", exclusive=True) is False
    assert open(path).read() == "first\n"
    assert os.listdir(tmp_path) == ["s.json"]


def test_read_json_names_a_damaged_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"a": ')
    with pytest.raises(ValueError, match="bad.json cannot be read"):
        io.read_json(str(path))
    with pytest.raises(FileNotFoundError):
        io.read_json(str(tmp_path / "missing.json"))


def test_flatten_nested_mappings_with_lists_as_tuples():
    nested = {"a": {"b": 1, "c": {"d": [16, 32]}}, "e": "x", "f": (1,), "g": {}}
    assert io.flatten(nested) == {"a.b": 1, "a.c.d": (16, 32), "e": "x", "f": (1,)}
    assert io.flatten({"k": 1}, "p.") == {"p.k": 1}
    # a config (tuples) and its JSON (lists) flatten alike
    assert io.flatten(json.loads(json.dumps(nested))) == io.flatten(nested)


RECORDS = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "test_nelbo": 9.0}]


def _jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def test_read_jsonl_leaves_out_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_jsonl(RECORDS))
    assert io.read_jsonl(str(path)) == RECORDS
    path.write_text(_jsonl(RECORDS) + '{"step": 3, "lo')  # killed while appending
    assert io.read_jsonl(str(path)) == RECORDS
    path.write_text(_jsonl(RECORDS) + '{"step": 3}')  # complete but for its newline: kept
    assert io.read_jsonl(str(path)) == [*RECORDS, {"step": 3}]


@pytest.mark.parametrize(
    "text, match",
    [
        (
            _jsonl(RECORDS[:1]) + '{"step": 2, "lo\n' + _jsonl(RECORDS[2:]),
            r"metrics.jsonl:2 is not",
        ),
        (_jsonl(RECORDS[:2]) + '{"step": 3, "lo\n', r"metrics.jsonl:3 is not a JSON line"),
        (_jsonl(RECORDS[:1]) + "[1, 2]\n", r"metrics.jsonl:2 is not a JSON object"),
    ],
)
def test_read_jsonl_refuses_a_damaged_complete_line_naming_it(tmp_path, text, match):
    path = tmp_path / "metrics.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        io.read_jsonl(str(path))


def test_write_jsonl_round_trips(tmp_path):
    path = str(tmp_path / "m.jsonl")
    io.write_jsonl(path, RECORDS)
    assert io.read_jsonl(path) == RECORDS
    assert open(path).read().endswith("\n")


@pytest.mark.parametrize(
    "body, match",
    [
        ("def get_thing():\n    return 1 / 0\n", "ZeroDivisionError: division by zero (line 2)"),
        ("x = (\n", "SyntaxError"),
        ("x = 1\n", "has no get_thing()"),
        ("def get_thing():\n    raise ValueError('k=3: bad')\n", ".py': k=3: bad (line 2)"),
    ],
)
def test_call_python_file_errors_are_one_line(tmp_path, body, match):
    path = tmp_path / "f.py"
    path.write_text(body)
    with pytest.raises(ValueError, match=re.escape(match)) as e:
        io.call_python_file(str(path), "get_thing", module_name="_t", what="thing file")
    assert str(e.value).startswith(f"thing file {str(path)!r}") and "\n" not in str(e.value)


def test_call_python_file_returns_what_the_function_returns(tmp_path):
    path = tmp_path / "f.py"
    path.write_text("def get_thing():\n    return {'a': 1}\n")
    assert io.call_python_file(str(path), "get_thing", module_name="_t", what="x") == {"a": 1}
    with pytest.raises(ValueError, match="x 'nope.py' does not exist"):
        io.call_python_file("nope.py", "get_thing", module_name="_t", what="x")
