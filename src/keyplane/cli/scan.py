"""``keyplane scan``: find Keyplane API keys in files, folders or standard input, and
optionally report them to a Keyplane server's leak endpoint.

Runs on the machine it is given files on (a pre-commit hook, CI, a laptop): no server,
no login. What counts as a key, and why random text and near-misses are never reported, is
in ``keyplane.kit.scanner``. Output shows ``kp_…`` and a key's last 4 characters; the whole
value leaves the process only in the body of a ``--report`` request.

Exit codes (as ``grep``'s, plus one): 0 no key found; 1 keys found; 2 wrong usage or a path
that could not be read (the scan is incomplete, whatever it found); 3 keys found and the
report to ``--report`` failed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from keyplane.cli import output
from keyplane.cli.connection import OutputOption, server_url
from keyplane.cli.output import OutputFormat
from keyplane.kit import scanner

FOUND = 1
UNREADABLE = 2
REPORT_FAILED = 3

STDIN = "-"
STDIN_NAME = "<stdin>"
# What the leak endpoint records as the reporter.
REPORT_SOURCE = "keyplane-scan"
# Leaks per request: the endpoint bounds a request's size, so many findings go in batches.
REPORT_BATCH = 100
REPORT_TIMEOUT_SECONDS = 10.0


@dataclass
class _Scan:
    findings: list[scanner.Finding] = field(default_factory=list)
    errors: int = 0

    def failed(self, path: str, problem: str) -> None:
        self.errors += 1
        output.error(f"Error: {_shown(path)}: {problem}")


def _shown(path: str) -> str:
    """A path as it can be printed, whatever bytes its name holds."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _problem(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _scan_stdin(scan: _Scan) -> None:
    if sys.stdin.isatty():
        output.note("Reading standard input (end it with Ctrl-D).")
    scan.findings += scanner.scan_stream(sys.stdin.buffer, STDIN_NAME)


def _scan_file(scan: _Scan, path: str) -> None:
    try:
        scan.findings += scanner.scan_file(path)
    except OSError as exc:
        scan.failed(path, _problem(exc))


def _scan_path(scan: _Scan, path: str) -> None:
    if path == STDIN:
        _scan_stdin(scan)
        return
    # A path given by name is followed if it is a link, and read whatever it is (a FIFO
    # from `<(command)` too); only folders are walked, and within them links are skipped.
    if not os.path.isdir(path):
        _scan_file(scan, path)
        return

    def unlisted(where: Path, exc: OSError) -> None:
        scan.failed(str(where), _problem(exc))

    for file in scanner.walk(Path(path), on_error=unlisted):
        _scan_file(scan, str(file))


def _finding_json(finding: scanner.Finding) -> dict[str, Any]:
    return {
        "path": _shown(finding.path),
        "line": finding.line,
        "column": finding.column,
        "keyHint": finding.key_hint,
    }


def _report(base_url: str, findings: list[scanner.Finding], source_url: str | None) -> bool:
    """Sends the findings to ``POST {base_url}/v1/apiKeys/leaks``; says on stderr how it went."""
    import httpx

    leaks: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for finding in findings:
        where = source_url or _shown(finding.path)
        if (finding.value, where) not in seen:
            seen.add((finding.value, where))
            leaks.append({"value": finding.value, "url": where, "source": REPORT_SOURCE})
    endpoint = f"{base_url}/v1/apiKeys/leaks"
    received = 0
    try:
        with httpx.Client(timeout=REPORT_TIMEOUT_SECONDS) as client:
            for first in range(0, len(leaks), REPORT_BATCH):
                response = client.post(
                    endpoint, json={"leaks": leaks[first : first + REPORT_BATCH]}
                )
                if not response.is_success:
                    output.error(
                        f"Error: could not report to {endpoint}: {_refusal(response)}"
                        + (f" ({first} of {len(leaks)} reported before)" if first else "")
                    )
                    return False
                received += _received(response, len(leaks[first : first + REPORT_BATCH]))
    except httpx.HTTPError as exc:
        # httpx's messages name the URL, never the request body.
        output.error(f"Error: could not report to {endpoint}: {exc or type(exc).__name__}")
        return False
    output.note(f"Reported {len(leaks)} leaked key(s) to {endpoint} ({received} received).")
    return True


def _received(response: Any, sent: int) -> int:
    try:
        body = response.json()
    except ValueError:
        return sent
    count = body.get("received") if isinstance(body, dict) else None
    return count if isinstance(count, int) else sent


def _refusal(response: Any) -> str:
    """The server's answer, in one line; any key value in it is shown as its hint only."""
    status = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return status
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        detail = f"[{code}] " if isinstance(code, str) else ""
        return scanner.redact(f"{status} {detail}{body['message']}")
    return status


def scan(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATH",
            show_default=False,
            help="Files and folders (walked, skipping .git and symbolic links); - or none "
            "for standard input.",
        ),
    ] = None,
    report: Annotated[
        str | None,
        typer.Option(
            "--report",
            metavar="URL",
            help="A Keyplane server to report found keys to (POST URL/v1/apiKeys/leaks); "
            "it revokes or flags them by the tenant's policy.",
        ),
    ] = None,
    source_url: Annotated[
        str | None,
        typer.Option(
            "--source-url",
            metavar="URL",
            help="Where the keys were seen, for the report (e.g. the repository's URL); "
            "the file's path when omitted.",
        ),
    ] = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Find Keyplane API keys by prefix, length and checksum; print where they are.

    Prints FILE:LINE:COLUMN: kp_…abcd for each key found (never the whole key).

    Exit codes: 0 none found, 1 found, 2 wrong usage or unreadable path, 3 found, --report failed.
    """
    base_url = server_url(report) if report is not None else None
    scan = _Scan()
    for path in paths or [STDIN]:
        _scan_path(scan, path)
    findings = scan.findings
    if output_format is OutputFormat.JSON:
        output.emit_json([_finding_json(finding) for finding in findings])
    else:
        for finding in findings:
            output.say(f"{_shown(finding.path)}:{finding.line}:{finding.column}: {finding.hint}")
    if findings:
        files = len({finding.path for finding in findings})
        output.note(
            f"Found {len(findings)} Keyplane API key(s) in {files} file(s): revoke them "
            "(keyplane keys revoke UID) and remove them from the files and their history."
        )
    reported = True
    if findings and base_url is not None:
        reported = _report(base_url, findings, source_url)
    if scan.errors:
        raise typer.Exit(UNREADABLE)
    if not reported:
        raise typer.Exit(REPORT_FAILED)
    if findings:
        raise typer.Exit(FOUND)
