"""The embedded default corpus: which files, in what order, how much."""

from __future__ import annotations

from cockpit.text import corpus


def test_files_are_sorted_stdlib_sources_without_tests() -> None:
    root = corpus.stdlib_dir()
    files = corpus.default_corpus_files()
    assert len(files) > 100
    rel = [p.relative_to(root).as_posix() for p in files]
    assert rel == sorted(rel)
    assert all(r.endswith(".py") for r in rel)
    assert "os.py" in rel and "json/decoder.py" in rel
    for r in rel:
        folders = set(r.split("/")[:-1])
        assert not folders & {
            "test",
            "tests",
            "site-packages",
            "idlelib",
            "lib2to3",
            "__pycache__",
        }, r


def test_read_is_capped_ascii_and_deterministic() -> None:
    text = corpus.read_default_corpus(max_bytes=300_000)
    assert len(text) == 300_000
    assert text.isascii()
    assert text == corpus.read_default_corpus(max_bytes=300_000)
    assert corpus.read_default_corpus(max_bytes=1000) == text[:1000]  # a smaller cap is a prefix


def test_default_cap_and_small_char_vocabulary() -> None:
    assert corpus.DEFAULT_MAX_BYTES == 8 << 20
    text = corpus.read_default_corpus()
    assert 1_000_000 < len(text) <= corpus.DEFAULT_MAX_BYTES
    assert len(set(text)) < 128  # fits a char preset's 256-row embedding


def test_fingerprint_names_every_file() -> None:
    fp = corpus.corpus_fingerprint()
    assert [f[0] for f in fp] == [str(p) for p in corpus.default_corpus_files()]
    assert all(size >= 0 and mtime > 0 for _, size, mtime in fp)
