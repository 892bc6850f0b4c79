"""Turn command-line options into a running app: load the model(s), open storage, check binding, launch."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import warnings
from pathlib import Path

from .endpoints import API_KEY_REFUSED
from .engines import LoadOptions, add_engine_arguments, load_engine, options_from_args
from .engines import openai as served  # the backend of a model behind an OpenAI-compatible API
from .errors import UserError
from .ui.pages import grantable, rater_pages

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_engine_arguments(p)
    c = p.add_argument_group("compare mode contenders")
    c.add_argument("--compare-model", action="append", default=[], metavar="MODEL",
                   help="another model (folder, hub id or .gguf) for blind side-by-side comparison (repeatable)")
    # A served contender: the engine's own endpoint flags again, with the prefix --remote- (chat by default: a
    # contender is often a chat model).
    served.add_arguments(p, "compare mode contender: a model served over an OpenAI-compatible API", prefix="remote-",
                         defaults={"api_mode": "chat"}, model=True)
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
    s.add_argument("--trusted-proxy", action="append", default=[], metavar="IP",
                   help="address (or network) of a reverse proxy whose X-Forwarded-For/-Proto are believed "
                        "(repeatable; default none: the login throttle sees the connecting address)")
    s.add_argument("--insecure-http", action="store_true",
                   help="allow --auth off loopback over plain HTTP (passwords and notes travel unencrypted)")
    r = p.add_argument_group("ratings")
    r.add_argument("--db", default="sqlite:///ratings.db", help="SQLAlchemy URL of the ratings database")
    r.add_argument("--no-db", action="store_true", help="run without the ratings database")
    r.add_argument("--auth", help="users file (rater/admin roles, hashed passwords); required off loopback")
    r.add_argument("--rater-pages", default="study", metavar="PAGES",
                   help=f"pages a rater (non-admin) sees with --auth, comma-separated from {','.join(grantable())} "
                        "(default: study); admins see every page")
    return p


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_context(args: argparse.Namespace):
    """Load engines, storage and users as the flags say; raises ``ModelLoadError``/``SystemExit`` on bad input."""
    from .ui.context import AppContext

    if args.model:
        model = args.model
    else:
        from train.toy import build_demo_model

        from .demo import demo_model_path

        model = str(demo_model_path(build=build_demo_model))
    engine = load_engine(options_from_args(args, model))
    from .demo import distinct_name

    contenders = {}
    for other in args.compare_model:
        # A contender shares the precision and device flags; its backend follows from its own name.
        opts = options_from_args(args, other).replace(backend="auto", base_url=None, gguf_file=None)
        e = load_engine(opts)
        # Two folders of the same name (run1/model, run2/model) are two contenders, stored under two names.
        contenders[distinct_name(e.model_id, other, {engine.model_id, *contenders})] = e
    if args.remote_model:
        remote = load_engine(LoadOptions(args.remote_model, backend="openai", template=args.template,
                                         **served.options_from_args(args, prefix="remote-")))
        contenders[f"{args.remote_model} (remote)"] = remote
    if not args.model and not contenders:  # compare out of the box: the demo before instruction fine-tuning
        from .demo import base_model_path

        if (base := base_model_path()) is not None:
            base_engine = load_engine(options_from_args(args, str(base)))
            contenders[base_engine.model_id] = base_engine
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
    for proxy in args.trusted_proxy:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SystemExit(f"--trusted-proxy: {proxy!r} is not an IP address or network.") from None
    if exposed:
        warnings.warn(f"Serving beyond this machine ({'share link' if args.share else args.host}): anyone who can "
                      "reach it and log in sees the notes typed into it.", stacklevel=2)


def server_options(args: argparse.Namespace):
    from .ui.server import ServerOptions

    return ServerOptions(host=args.host, port=args.port, extra_hosts=list(args.allowed_host),
                         ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, share=args.share,
                         trusted_proxies=list(args.trusted_proxy))


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # before anything is created: the database, its WAL, exports and uploads are this user's only
    args = add_arguments(argparse.ArgumentParser(description="Asclepius Studio")).parse_args(argv)
    if args.remote_api_key:
        print(f"error: {API_KEY_REFUSED.replace('--api-key', '--remote-api-key')}", file=sys.stderr)
        return 2
    check_binding(args)
    from .auth import UsersFileError

    try:
        ctx = build_context(args)
    except (UserError, UsersFileError) as exc:  # a model, users file, database or endpoint the user can fix
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .ui.app import build_app
    from .ui.server import private_process, serve

    private_process()
    ctx.rater_pages = rater_pages(args.rater_pages)
    demo = build_app(ctx)
    auth = ctx.users.check if ctx.users is not None else None
    # quiet: Gradio's own start lines would suggest `share=True` (a public link) to people handling patient notes
    serve(demo, server_options(args), auth=auth, block=False, quiet=True)
    print(f"* Running on {demo.local_url}  (Ctrl+C to stop)", flush=True)
    demo.block_thread()
    return 0
