"""Patch series from an mbox, a folder of `git format-patch` files, or a patchwork digest.

Subjects are parsed with b4's LoreSubject (revision, counter, expected count);
messages are grouped into series by thread (In-Reply-To/References to a cover
letter), else by author, revision and patch count; revisions of one series
(same title and author) are kept together. Hashes follow KCIDB: a patch hash is
the sha256 of its diff, a series hash the sha256 of the patch hashes, each
followed by a newline.
"""
from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

import b4

from harness.errors import UsageError

_DIFF_START = re.compile(r"^(diff --git |--- a/|--- /dev/null)", re.M)


@dataclass
class PatchMail:
    counter: int
    expected: int
    subject: str            # without the [PATCH ...] prefix
    message_id: str | None
    diff: str               # "" when the source carried no patch body

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.diff.encode()).hexdigest() if self.diff else None


@dataclass
class Revision:
    revision: int
    subject: str
    author: str
    date: str
    cover_message_id: str | None
    cover_letter: str
    expected: int
    patches: list[PatchMail] = field(default_factory=list)

    @property
    def sha256(self) -> str | None:
        if not self.patches or any(not p.diff for p in self.patches):
            return None
        return hashlib.sha256("".join(p.sha256 + "\n" for p in self.patches).encode()).hexdigest()

    @property
    def complete(self) -> bool:
        return len(self.patches) == self.expected and all(p.diff for p in self.patches)

    def records(self) -> list[dict]:
        """run.json kernel.series entries (design section 5)."""
        return [{"subject": p.subject, "revision": self.revision, "message_id": p.message_id,
                 "sha256": p.sha256} for p in self.patches]


@dataclass
class Series:
    subject: str
    author: str
    revisions: list[Revision]


def _messages_from_digest(text: str) -> list[str]:
    """Fenced blocks that start with an mbox 'From ' line (patchwork digests)."""
    blocks = re.findall(r"^```[a-z]*\n(From .*?)^```", text, re.M | re.S)
    return blocks


def _read_messages(path: Path) -> tuple[list[EmailMessage], bool]:
    """Messages and whether the input is a digest (cover letters only)."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    policy = email.policy.default
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".patch", ".eml", ".mbox"))
        if not files:
            raise UsageError(f"{path}: no .patch files in the folder")
        return [email.message_from_bytes(p.read_bytes(), policy=policy) for p in files], False
    text = path.read_text(errors="replace")
    digest = _messages_from_digest(text)
    if digest:
        return [email.message_from_string(block, policy=policy) for block in digest], True
    if not text.startswith("From "):
        raise UsageError(f"{path}: not an mbox (first line does not start with 'From ') "
                         f"and not a patchwork digest")
    return list(mailbox.mbox(str(path), factory=lambda f: email.message_from_binary_file(f, policy=policy))), False


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    try:
        return part.get_content() if part is not None else ""
    except (LookupError, KeyError):
        return part.get_payload(decode=True).decode("utf-8", "replace")


def _header(msg: EmailMessage, name: str, where: str) -> str:
    """A header's text ("" when absent). email.policy.default parses a header when it is
    read, and a malformed one ("From: <", "Message-ID: <") raised IndexError or
    HeaderParseError out of email.headerregistry (found by tests/test_parser_properties.py):
    that is the input's error, named with the file."""
    try:
        value = msg.get(name)
        return "" if value is None else str(value)
    except Exception as e:      # the email package raises several kinds for a bad header
        raise UsageError(f"{where}: unparsable {name} header ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:80]})") from None


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<([^>]+)>", value or "")


def load(path: Path) -> tuple[list[Series], bool]:
    """The series in `path`, and whether it is a digest without patch bodies."""
    path = Path(path)
    messages, is_digest = _read_messages(path)
    covers: dict[str, Revision] = {}
    loose: list[tuple[EmailMessage, b4.LoreSubject, str]] = []
    revisions: list[Revision] = []
    for index, msg in enumerate(messages, 1):
        where = f"{path}: message {index}"
        raw_subject = _header(msg, "Subject", where)
        if not raw_subject:
            raise UsageError(f"{path}: message {index} has no Subject")
        subject = b4.LoreSubject(" ".join(str(raw_subject).split()))
        if subject.reply or not subject.patch:
            continue
        if subject.counter == 0:
            name, addr = parseaddr(_header(msg, "From", where))
            rev = Revision(subject.revision, subject.subject, f"{name} <{addr}>".strip(),
                           _header(msg, "Date", where), (_ids(_header(msg, "Message-ID", where)) or [None])[0],
                           _body(msg), subject.expected)
            revisions.append(rev)
            if rev.cover_message_id:
                covers[rev.cover_message_id] = rev
        else:
            loose.append((msg, subject, where))
    for msg, subject, where in loose:
        parents = _ids(_header(msg, "In-Reply-To", where)) + _ids(_header(msg, "References", where))
        target = next((covers[p] for p in parents if p in covers), None)
        name, addr = parseaddr(_header(msg, "From", where))
        author = f"{name} <{addr}>".strip()
        if target is None:
            target = next((r for r in revisions if r.author == author and r.revision == subject.revision
                           and r.expected == subject.expected), None)
        if target is None:  # no cover letter: the first patch names the series
            target = Revision(subject.revision, subject.subject, author, _header(msg, "Date", where), None,
                              "", subject.expected)
            revisions.append(target)
        body = _body(msg)
        match = _DIFF_START.search(body)
        if match is None and not is_digest:
            raise UsageError(f"{path}: message '{subject.full_subject}' has no diff")
        target.patches.append(PatchMail(subject.counter, subject.expected, subject.subject,
                                        (_ids(_header(msg, "Message-ID", where)) or [None])[0],
                                        body[match.start():] if match else ""))
    for rev in revisions:
        rev.patches.sort(key=lambda p: p.counter)
        counters = [p.counter for p in rev.patches]
        if len(set(counters)) != len(counters):
            raise UsageError(f"{path}: series '{rev.subject}' v{rev.revision} has patch numbers twice: {counters}")
    grouped: dict[tuple[str, str], Series] = {}
    for rev in revisions:
        key = (rev.subject, rev.author)
        grouped.setdefault(key, Series(rev.subject, rev.author, [])).revisions.append(rev)
    for series in grouped.values():
        series.revisions.sort(key=lambda r: r.revision)
    if not grouped:
        raise UsageError(f"{path}: no patch series (no [PATCH] subjects)")
    return list(grouped.values()), is_digest


def pick(path: Path, revision: int | None = None) -> Revision:
    """The one series revision a build applies: the newest unless `revision` is given."""
    all_series, is_digest = load(path)
    if len(all_series) != 1:
        raise UsageError(f"--series {path}: holds {len(all_series)} series; give a file with one")
    revs = all_series[0].revisions
    chosen = revs[-1] if revision is None else next((r for r in revs if r.revision == revision), None)
    if chosen is None:
        raise UsageError(f"--series {path}: no revision v{revision} (has "
                         f"{', '.join('v%d' % r.revision for r in revs)})")
    if not chosen.complete:
        have = [p.counter for p in chosen.patches if p.diff]
        raise UsageError(f"--series {path}: v{chosen.revision} '{chosen.subject}' is incomplete: "
                         f"patches {have} of {chosen.expected}" +
                         (f"; fetch them with `b4 am {chosen.cover_message_id}`" if chosen.cover_message_id else ""))
    return chosen


def write_patches(revision: Revision, folder: Path) -> list[Path]:
    """One -p1 patch file per patch, in order, for the kernel build."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for patch in revision.patches:
        path = folder / f"{patch.counter:04d}.patch"
        path.write_text(f"Subject: [PATCH v{revision.revision} {patch.counter}/{patch.expected}] "
                        f"{patch.subject}\n\n{patch.diff}")
        paths.append(path)
    return paths
