"""Turn command-line options into a running app: load the model(s), open storage, check binding, launch."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import warnings
from pathlib import Path

from .engine import DEVICES, LoadOptions, ModelLoadError, load_engine
from .prompts import TEMPLATES

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    m = p.add_argument_group("model")
    m.add_argument("--model", help="Hugging Face id or local folder (default: the built-in demo model)")
    m.add_argument("--template", choices=list(TEMPLATES), help="prompt template (default: from the registry)")
    m.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    q = m.add_mutually_exclusive_group()
    q.add_argument("--load-in-8bit", action="store_true", help="8-bit weights through bitsandbytes")
    q.add_argument("--load-in-4bit", action="store_true", help="4-bit nf4 weights through bitsandbytes")
    m.add_argument("--device", choices=list(DEVICES), default="auto")
    m.add_argument("--revision", help="hub revision (branch, tag or commit)")
    c = p.add_argument_group("compare mode contenders")
    c.add_argument("--compare-model", action="append", default=[], metavar="MODEL",
                   help="another local model for blind side-by-side comparison (repeatable)")
    c.add_argument("--remote-model", help="a model served over an OpenAI-compatible API, as a contender")
    c.add_argument("--remote-base-url", help="its base URL (default: $OPENAI_BASE_URL)")
    c.add_argument("--remote-api-key", help="its API key (default: $OPENAI_API_KEY)")
    c.add_argument("--remote-mode", choices=["chat", "completion"], default="chat")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--share", action="store_true", help="open a public Gradio share link (sends traffic out)")
    s.add_argument("--max-concurrent", type=int, default=1, help="generations running at once")
    s.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another name this server answers to in the Host header (repeatable; loopback names and "
                        "--host always are)")
    s.add_argument("--ssl-certfile", help="TLS certificate (PEM) to serve HTTPS; needed with --auth off loopback")
    s.add_argument("--ssl-keyfile", help="TLS private key (PEM) for --ssl-certfile")
    s.add_argument("--insecure-http", action="store_true",
                   help="allow --auth off loopback over plain HTTP (passwords and notes travel unencrypted)")
    r = p.add_argument_group("ratings")
    r.add_argument("--db", default="sqlite:///ratings.db", help="SQLAlchemy URL of the ratings database")
    r.add_argument("--no-db", action="store_true", help="run without the ratings database")
    r.add_argument("--auth", help="users file (rater/admin roles, hashed passwords); required off loopback")
    r.add_argument("--rater-pages", default="study", metavar="PAGES",
                   help="pages a rater (non-admin) sees with --auth, comma-separated from chat,compare,study "
                        "(default: study); admins see every page")
    return p


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_options(args: argparse.Namespace, model: str) -> LoadOptions:
    precision = "8bit" if args.load_in_8bit else "4bit" if args.load_in_4bit else args.precision
    return LoadOptions(model=model, precision=precision, device=args.device, template=args.template,
                       revision=args.revision)


def build_context(args: argparse.Namespace):
    """Load engines, storage and users as the flags say; raises ``ModelLoadError``/``SystemExit`` on bad input."""
    from .ui.context import AppContext

    if args.model:
        model = args.model
    else:
        from .demo import demo_model_path

        model = str(demo_model_path())
    engine = load_engine(load_options(args, model))
    contenders = {}
    for other in args.compare_model:
        e = load_engine(load_options(args, other))
        contenders[e.model_id] = e
    if args.remote_model:
        from .remote import RemoteEngine, RemoteOptions

        remote = RemoteEngine(RemoteOptions(model=args.remote_model, base_url=args.remote_base_url,
                                            api_key=args.remote_api_key, mode=args.remote_mode,
                                            template=args.template or "asclepius"))
        contenders[f"{args.remote_model} (remote)"] = remote
    storage = users = None
    if not args.no_db:
        from .storage import open_storage

        storage = open_storage(args.db)
    if args.auth:
        from .auth import load_users

        users = load_users(args.auth)
    return AppContext(engine=engine, contenders=contenders, storage=storage, users=users,
                      db_url=None if args.no_db else args.db, max_concurrent=args.max_concurrent)


def check_binding(args: argparse.Namespace) -> None:
    """Loopback unless asked; off loopback or shared only with --auth, over TLS unless --insecure-http."""
    exposed = args.share or not is_loopback(args.host)
    if exposed and not args.auth:
        raise SystemExit(f"Refusing to serve on {args.host if not args.share else 'a public share link'} without "
                         "--auth: notes are patient data. Add --auth USERS_FILE, or keep the default 127.0.0.1.")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise SystemExit("Give both --ssl-certfile and --ssl-keyfile (or neither).")
    for flag in ("ssl_certfile", "ssl_keyfile"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            raise SystemExit(f"--{flag.replace('_', '-')}: no file at {path}.")
    if not is_loopback(args.host) and not args.share and not args.ssl_certfile and not args.insecure_http:
        raise SystemExit(f"Refusing to serve logins on {args.host} over plain HTTP: passwords and notes would cross "
                         "the network unencrypted. Add --ssl-certfile/--ssl-keyfile (see docs/deploy.md), or "
                         "--insecure-http if the network is encrypted otherwise.")
    try:
        rater_pages(args.rater_pages)
    except ValueError as exc:
        raise SystemExit(f"--rater-pages: {exc}") from None
    if exposed:
        warnings.warn(f"Serving beyond this machine ({'share link' if args.share else args.host}): anyone who can "
                      "reach it and log in sees the notes typed into it.", stacklevel=2)


RATER_PAGES = ("chat", "compare", "study")


def rater_pages(text: str) -> frozenset[str]:
    """The pages named by ``--rater-pages`` (admin and analysis pages are for admins only, always)."""
    names = {p.strip().lower() for p in (text or "").split(",") if p.strip()}
    unknown = sorted(names - set(RATER_PAGES))
    if unknown:
        raise ValueError(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(RATER_PAGES)}")
    return frozenset(names)


def server_options(args: argparse.Namespace):
    from .ui.server import ServerOptions

    return ServerOptions(host=args.host, port=args.port, extra_hosts=list(args.allowed_host),
                         ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, share=args.share)


def main(argv: list[str] | None = None) -> int:
    args = add_arguments(argparse.ArgumentParser(description="Asclepius Studio")).parse_args(argv)
    check_binding(args)
    from .auth import UsersFileError
    from .rating_logic import StorageError

    try:
        ctx = build_context(args)
    except (ModelLoadError, UsersFileError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .ui.app import build_app
    from .ui.server import private_process, serve

    private_process()
    ctx.rater_pages = rater_pages(args.rater_pages)
    demo = build_app(ctx)
    auth = ctx.users.check if ctx.users is not None else None
    serve(demo, server_options(args), auth=auth)
    return 0
