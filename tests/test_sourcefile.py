"""Editing config/sources.toml keeps every comment and every untouched byte."""

from __future__ import annotations

import re
import shutil
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.cli.main import main
from aggregator.config import sourcefile
from aggregator.config.loader import load_config, parse_config
from aggregator.config.sourcefile import SourceFileError
from aggregator.errors import ConfigError
from tests.conftest import run_aggregator as aggregator

FIXTURE = Path(__file__).parent / "fixtures" / "commented.toml"
SAMPLE = Path(__file__).parents[1] / "config" / "sources.toml"
TEXT = FIXTURE.read_text(encoding="utf-8")

NEW = {
    "id": "hsb",
    "name": "华商报",
    "url": "http://hsb.example.cn/feed.xml",
    "category": "华商报",
    "tags": ["陕西"],
    "share_code": {"regex": r"/content/(\d+)\.html"},
}
NEW_TABLE = (
    "[[sources]]\n"
    'id = "hsb"\n'
    'name = "华商报"\n'
    'url = "http://hsb.example.cn/feed.xml"\n'
    'category = "华商报"\n'
    'tags = ["陕西"]\n'
    "share_code = { regex = '/content/(\\d+)\\.html' }\n"
)


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if "#" in line]


def test_fixture_is_a_valid_config() -> None:
    config = parse_config(TEXT, FIXTURE, env={})
    assert [s.id for s in config.sources] == ["yaowen", "jiaotong", "xawb"]


def test_add_splices_after_the_last_source_and_leaves_the_rest_alone() -> None:
    edited = sourcefile.add_source(TEXT, NEW)
    at = TEXT.index("# Real sources look like this")
    assert edited == TEXT[:at] + NEW_TABLE + "\n" + TEXT[at:]
    assert tomllib.loads(edited)["sources"][-1] == NEW


def test_add_to_a_file_without_sources() -> None:
    text = "# only settings\n[settings]\nport = 8081  # dev\n"
    assert sourcefile.add_source(text, NEW) == text + "\n" + NEW_TABLE


def test_remove_cuts_the_table_and_keeps_comments_around_it() -> None:
    edited = sourcefile.remove_source(TEXT, "jiaotong")
    start = TEXT.index('[[sources]]\nid = "jiaotong"')
    end = TEXT.index("[[rules]]")
    assert edited == TEXT[:start] + TEXT[end:]


def test_remove_the_last_source_keeps_the_commented_example_after_it() -> None:
    edited = sourcefile.remove_source(TEXT, "xawb")
    start = TEXT.index('[[sources]]\nid = "xawb"')
    end = TEXT.index("# Real sources look like this")
    assert edited == TEXT[:start] + TEXT[end:]
    assert "# until they fix their feed" not in edited  # it was inside the removed table


def test_remove_the_last_thing_in_a_file_leaves_no_trailing_blank_lines() -> None:
    text = '[settings]\nport = 1\n\n[[sources]]\nid = "a"\nname = "A"\nurl = "http://a/x"\n'
    text += 'category = "c"\n'
    assert sourcefile.remove_source(text, "a") == "[settings]\nport = 1\n"


def test_add_then_remove_gives_back_the_same_bytes() -> None:
    assert sourcefile.remove_source(sourcefile.add_source(TEXT, NEW), "hsb") == TEXT


def test_disable_inserts_one_line_before_the_sub_table() -> None:
    edited = sourcefile.set_enabled(TEXT, "jiaotong", False)
    line = 'share_code = { param = "infoCode" }  # same scheme as the front page\n'
    assert edited == TEXT.replace(line, line + "enabled = false\n")
    assert tomllib.loads(edited)["sources"][1]["headers"] == {
        "Referer": "http://finews.example.cn/"
    }


def test_enable_rewrites_the_value_and_keeps_its_comment() -> None:
    edited = sourcefile.set_enabled(TEXT, "xawb", True)
    assert edited == TEXT.replace(
        "enabled = false           # until", "enabled = true           # until"
    )
    assert sourcefile.set_enabled(TEXT, "yaowen", True) == TEXT  # already enabled


def test_edit_in_place_and_back_is_byte_identical() -> None:
    edited = sourcefile.update_source(TEXT, "yaowen", {"interval": "10m", "name": "要闻"})
    assert edited == TEXT.replace('interval = "5m"', 'interval = "10m"').replace(
        'name = "三秦都市报 · 要闻"', 'name = "要闻"'
    )
    back = sourcefile.update_source(
        edited, "yaowen", {"interval": "5m", "name": "三秦都市报 · 要闻"}
    )
    assert back == TEXT


def test_edit_new_key_then_unset_is_byte_identical() -> None:
    edited = sourcefile.update_source(TEXT, "yaowen", {"exclude_title": ["广告", r"^\[推广\]"]})
    assert edited == TEXT.replace(
        'share_code = { param = "infoCode" }\n\n[[sources]]\nid = "jiaotong"',
        'share_code = { param = "infoCode" }\nexclude_title = ["广告", \'^\\[推广\\]\']\n'
        '\n[[sources]]\nid = "jiaotong"',
    )
    assert sourcefile.update_source(edited, "yaowen", {"exclude_title": None}) == TEXT


def test_add_edit_disable_remove_keeps_every_other_comment() -> None:
    text = sourcefile.add_source(TEXT, NEW)
    text = sourcefile.update_source(text, "hsb", {"interval": "2h"})
    text = sourcefile.set_enabled(text, "yaowen", False)
    text = sourcefile.update_source(text, "jiaotong", {"tags": ["交通"]})
    text = sourcefile.remove_source(text, "xawb")
    removed_with_xawb = ["enabled = false           # until they fix their feed"]
    expected = [c for c in comments(TEXT) if c not in removed_with_xawb]
    assert comments(text) == expected
    parse_config(text, FIXTURE, env={})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**NEW, "id": "jiaotong"}, "a source with id 'jiaotong' already exists"),
        (
            {**NEW, "url": "HTTP://FINEWS.example.cn/yaowen.xml/"},
            "is already configured, as source 'yaowen'",
        ),
    ],
)
def test_duplicates_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(SourceFileError, match=re.escape(message)):
        sourcefile.add_source(TEXT, values)


def test_editing_a_url_into_another_sources_url_is_refused() -> None:
    with pytest.raises(SourceFileError, match="already configured, as source 'yaowen'"):
        sourcefile.update_source(TEXT, "xawb", {"url": "http://finews.example.cn/yaowen.xml"})


def test_unknown_source_is_refused() -> None:
    with pytest.raises(SourceFileError, match="no source with id 'nope'"):
        sourcefile.remove_source(TEXT, "nope")


def test_save_validates_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    shutil.copy(FIXTURE, path)
    bad = sourcefile.update_source(TEXT, "yaowen", {"interval": "soon"})
    with pytest.raises(ConfigError) as caught:
        sourcefile.save(path, bad)
    assert "interval" in str(caught.value)
    assert path.read_text(encoding="utf-8") == TEXT  # untouched
    sourcefile.save(path, sourcefile.add_source(TEXT, NEW))
    assert "hsb" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["sources.toml"]  # no temp files left


def test_a_sources_header_inside_a_string_is_not_mistaken_for_a_table() -> None:
    text = (
        '[settings]\ntitle = """\n[[sources]]\n"""\n\n'
        '[[sources]]\nid = "a"\nname = "A"\nurl = "http://a/x"\ncategory = "c"\n'
    )
    edited = sourcefile.update_source(text, "a", {"name": "B"})
    assert edited == text.replace('name = "A"', 'name = "B"')


def test_the_bundled_sample_survives_remove_and_re_add() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    values = sourcefile.source_values(text, "sanqin-jiaotong")
    removed = sourcefile.remove_source(text, "sanqin-jiaotong")
    assert "# Real sources look like this (uncomment and adapt):" in removed
    assert sourcefile.add_source(removed, values) == text


# --- the file itself: line ends, byte-order mark, mode, symbolic links ---------------------


def test_edits_keep_crlf_line_ends_a_bom_and_the_mode(tmp_path: Path) -> None:
    """A Windows-edited file (CRLF, BOM) of mode 600 (its headers may hold tokens), edited
    by the commands: each edit changes only its own lines, in the file's own spelling."""
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    original = ("\ufeff" + TEXT).replace("\n", "\r\n").encode("utf-8")
    path.write_bytes(original)
    path.chmod(0o600)
    assert aggregator("sources", "disable", "jiaotong", "--config", str(path)).returncode == 0
    expected = "\ufeff" + sourcefile.set_enabled(TEXT, "jiaotong", False)
    assert path.read_bytes() == expected.replace("\n", "\r\n").encode("utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    opml = tmp_path / "one.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline text="华商报" xmlUrl="http://hsb.example.cn/f.xml"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    for command in (  # the other edits, in-process (the same code, faster)
        ["import-opml", str(opml)],
        ["sources", "remove", "xawb"],
        ["sources", "edit", "yaowen", "interval=10m"],
    ):
        done = CliRunner().invoke(main, [*command, "--config", str(path)])
        assert done.exit_code == 0, done.output
    final = path.read_bytes()
    assert b"\n" not in final.replace(b"\r\n", b"") and final.startswith(b"\xef\xbb\xbf")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [s.id for s in load_config(path).sources] == ["yaowen", "jiaotong", "huashangbao"]


def test_an_edit_writes_through_a_symbolic_link(tmp_path: Path) -> None:
    """Config kept elsewhere (say, in a git checkout of /etc) and linked into config/: the
    link stays a link and the file it points to is edited."""
    real = tmp_path / "etc" / "sources.toml"
    real.parent.mkdir()
    real.write_text(TEXT, encoding="utf-8")
    link = tmp_path / "config" / "sources.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    done = aggregator("sources", "disable", "yaowen", "--config", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and link.resolve() == real
    assert "enabled = false" in real.read_text(encoding="utf-8")
    assert not list(link.parent.glob(".*.tmp")) and not list(real.parent.glob(".*.tmp"))


def test_a_file_that_is_not_toml_is_refused_with_its_line(tmp_path: Path) -> None:
    """No edit command answers a broken file with a traceback: the file, the line, exit 2,
    and the file untouched."""
    path = tmp_path / "config" / "sources.toml"
    path.parent.mkdir()
    broken = TEXT.replace('name = "三秦都市报 · 交通"', 'name = "三秦都市报 · 交通', 1)
    path.write_text(broken, encoding="utf-8")
    line = broken.splitlines().index('name = "三秦都市报 · 交通') + 1
    for command in (  # the rest of the commands: tests/test_cli_messages.py
        ["sources", "disable", "xawb"],
        ["sources", "enable", "xawb"],
        ["sources", "remove", "xawb"],
        ["sources", "edit", "xawb", "interval=1h"],
    ):
        done = aggregator(*command, "--config", str(path))
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr, command
        assert f"{path}:{line}: (syntax):" in done.stderr, (command, done.stderr)
    assert path.read_text(encoding="utf-8") == broken
