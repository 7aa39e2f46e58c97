"""Keyed-hash document paths: stable, unguessable without SECRET_KEY, distinct per document and content."""

from __future__ import annotations

from pathlib import Path

from pytest import MonkeyPatch

from core.settings import settings
from models.deliveries import DocumentKind
from services.storage import document_name, write_file

T, A = DocumentKind.TICKETS, DocumentKind.ATTENDEE_TICKET


def test_paths_are_stable_and_hide_the_identifier() -> None:
    name = document_name("order-abc", T, None, "f1")
    assert name == document_name("order-abc", T, None, "f1")
    assert "order-abc" not in name and name.endswith(".pdf")
    directory, file = name.split("/")
    assert len(file) == 64 + 4 and file.startswith(directory)


def test_every_document_and_content_has_its_own_path() -> None:
    names = {document_name("o", T, None, "f1"), document_name("o", T, None, "f2"), document_name("o", A, 7, "f1"),
             document_name("o", A, 8, "f1"), document_name("p", T, None, "f1"), document_name("o", DocumentKind.INVOICE,
                                                                                        None, "f1")}
    assert len(names) == 6


def test_the_path_depends_on_the_secret(monkeypatch: MonkeyPatch) -> None:
    before = document_name("o", T, None, "f1")
    monkeypatch.setattr(type(settings), "secret", lambda self: b"another key")
    assert document_name("o", T, None, "f1") != before


def test_files_are_written_whole_under_files_dir() -> None:
    path = write_file("ab/abcdef.pdf", b"%PDF")
    assert path == settings.files_dir / "ab/abcdef.pdf" and path.read_bytes() == b"%PDF"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp")] == []


def test_a_file_in_a_new_directory_and_a_second_one_beside_it(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "files_dir", tmp_path / "files")
    first, second = write_file("cd/one.pdf", b"%PDF 1"), write_file("cd/two.pdf", b"%PDF 2")
    write_file("cd/one.pdf", b"%PDF 1 again")  # replaced whole
    assert (first.read_bytes(), second.read_bytes()) == (b"%PDF 1 again", b"%PDF 2")
    assert sorted(p.name for p in (tmp_path / "files" / "cd").iterdir()) == ["one.pdf", "two.pdf"]
