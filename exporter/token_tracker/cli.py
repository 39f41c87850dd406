"""The ``token-tracker`` command: serve, status, report, track, check.

Failures are one line on stderr and a non-zero exit: 1 for errors, 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .errors import TokenTrackerError

log = logging.getLogger("token_tracker")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """Prometheus-style durations: ``0``, ``90s``, ``30m``, ``1h30m``, ``7d``."""
    if text.strip() == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 0, 90s, 24h, 7d)")
    return total


def _non_negative(convert: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, and refuse negative or infinite values."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not 0 <= value < float("inf"):  # NaN fails this too
            raise argparse.ArgumentTypeError(f"expected {what} >= 0, got {text!r}")
        return value

    return parse


_non_negative_int = _non_negative(int, "an integer")
_usd = _non_negative(float, "a finite amount in USD")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="token-tracker", description="Track LLM token usage and cost; export it as metrics."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def ledger_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ledger", metavar="PATH", help="ledger file (default: "
                       "$TOKEN_TRACKER_LEDGER or ~/.multi-term/token_usage.json)")  # fmt: skip
        p.add_argument("--pricing", metavar="FILE", help="pricing file (TOML or JSON)")

    serve = sub.add_parser("serve", help="serve /metrics, a status page and /healthz")
    ledger_arg(serve)
    serve.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default="127.0.0.1:9464",
        help="address to listen on (default 127.0.0.1:9464; ':9464' for all)",
    )
    serve.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="exporter-toolkit web config: TLS and basic auth",
    )
    serve.add_argument(
        "--session-ttl",
        type=parse_duration,
        default=24 * 3600.0,
        metavar="DURATION",
        help="drop idle sessions from per-session metrics "
        "after this long (default 24h; 0 keeps all)",
    )
    serve.add_argument(
        "--max-sessions",
        type=_non_negative_int,
        metavar="N",
        help="at most N sessions (the most recent) in per-session metrics",
    )
    serve.add_argument(
        "--no-session-metrics",
        action="store_true",
        help="leave out the per-session metric families",
    )
    serve.add_argument("--budget-session", type=_usd, default=1.0, metavar="USD")
    serve.add_argument("--budget-day", type=_usd, default=10.0, metavar="USD")
    serve.add_argument("--budget-month", type=_usd, default=200.0, metavar="USD")
    serve.add_argument("--otel-scope-labels", action="store_true",
                       help="add otel_scope_name/otel_scope_version labels")  # fmt: skip

    status = sub.add_parser("status", help="print a session's compact line (for tmux/prompts)")
    status.add_argument("session")
    ledger_arg(status)

    report = sub.add_parser("report", help="print the per-session table and global summary")
    report.add_argument("--json", action="store_true", help="the full report as JSON")
    ledger_arg(report)

    track = sub.add_parser("track", help="record one request")
    track.add_argument("session")
    track.add_argument("model")
    track.add_argument("input_tokens", type=_non_negative_int, metavar="IN")
    track.add_argument("output_tokens", type=_non_negative_int, metavar="OUT")
    track.add_argument("--cached", type=_non_negative_int, default=0, metavar="N")
    track.add_argument("--cache-creation", type=_non_negative_int, default=0, metavar="N")
    ledger_arg(track)

    check = sub.add_parser("check", help="verify a ledger without changing it")
    ledger_arg(check)
    return parser


def _tracker(args: argparse.Namespace) -> Any:
    from .tracker import TokenTracker

    return TokenTracker(args.ledger, pricing=args.pricing)


def _serve(args: argparse.Namespace) -> int:
    from .exporter import Exporter
    from .metrics import MetricsOptions
    from .server import ExporterServer, parse_listen_address
    from .webconfig import load_web_config

    try:
        host, port = parse_listen_address(args.listen_address)
    except ValueError as exc:
        raise SystemExit(_usage_error(str(exc))) from None
    web_config = load_web_config(args.web_config) if args.web_config else None
    options = MetricsOptions(
        session_ttl=args.session_ttl,
        max_sessions=args.max_sessions,
        session_metrics=not args.no_session_metrics,
        budgets={"session": args.budget_session, "day": args.budget_day,
                 "month": args.budget_month},
    )  # fmt: skip
    tracker = _tracker(args)
    exporter = Exporter(tracker, options, scope_labels=args.otel_scope_labels)
    server = ExporterServer(exporter, host=host, port=port, web_config=web_config)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info("token-tracker serving %s (ledger %s)", server.url, tracker.persistence_path)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        exporter.shutdown()
        tracker.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    from .formatting import format_usage_compact

    session = _tracker(args).get_session_usage(args.session)
    if session is None:
        print(f"token-tracker: no usage recorded for session {args.session!r}", file=sys.stderr)
        return 1
    print(format_usage_compact(session.total_usage, session.model_name))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .formatting import format_cost, format_tokens, format_usage_detailed

    tracker = _tracker(args)
    if args.json:
        print(json.dumps(tracker.export_usage_report(), indent=2, ensure_ascii=False))
        return 0
    sessions = sorted(tracker.get_all_sessions().values(), key=lambda s: -s.last_updated)
    width = max([len("SESSION")] + [len(s.session_id.encode("unicode_escape")) for s in sessions])
    width = min(width, 48)
    print(f"{'SESSION':<{width}}  {'MODEL':<20}  {'REQS':>6}  DETAIL")
    for s in sessions:
        sid = s.session_id.encode("unicode_escape").decode("ascii")  # one line per session
        detail = format_usage_detailed(s.total_usage, s.model_name)
        print(f"{sid:<{width}}  {s.model_name:<20}  {s.request_count:>6}  {detail}")
    usage = tracker.get_global_usage()
    unpriced = sum(s.unpriced_tokens for s in sessions)
    print(
        f"TOTAL: {len(sessions)} sessions, In: {format_tokens(usage.input_tokens)} tok, "
        f"Out: {format_tokens(usage.output_tokens)} tok, "
        f"Cached: {format_tokens(usage.cached_tokens)} tok, "
        f"Cost: {format_cost(tracker.get_global_cost())}"
        + (f", unpriced: {format_tokens(unpriced)} tok" if unpriced else "")
    )
    return 0


def _track(args: argparse.Namespace) -> int:
    from .formatting import format_cost

    request = _tracker(args).track_request(
        args.session, args.model, args.input_tokens, args.output_tokens, args.cached,
        cache_creation_tokens=args.cache_creation,
    )  # fmt: skip
    note = " (unpriced model)" if request.unpriced else ""
    print(f"recorded {request.usage.total_tokens} tokens, {format_cost(request.cost_usd)}{note}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check_ledger
    from .pricing import build_price_table
    from .tracker import default_ledger_path

    path = args.ledger or str(default_ledger_path())
    report = check_ledger(path, build_price_table(args.pricing))
    for line in report.notes:
        print(line)
    for line in report.problems:
        print(f"token-tracker: {line}", file=sys.stderr)
    return 1 if report.problems else 0


def _usage_error(message: str) -> int:
    print(f"token-tracker: error: {message}", file=sys.stderr)
    return 2


_COMMANDS = {"serve": _serve, "status": _status, "report": _report, "track": _track,
             "check": _check}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if args.command != "serve":
        # A one-shot command reports a failure as the exception's one line below; the
        # library's error log of the same event would be a second line.
        handler.addFilter(lambda record: record.levelno < logging.ERROR)
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        return _COMMANDS[args.command](args)
    except (TokenTrackerError, ValueError, TypeError, OSError) as exc:
        print(f"token-tracker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
