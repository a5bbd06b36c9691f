"""``shotline monitor PORT``: live view of a board's triggers, levels and health."""
from shotline.cli import CommandError, emit


def add_arguments(p):
    p.add_argument("port", metavar="PORT", help="board port, pyserial URL or id:<serial>")
    p.add_argument("--json", action="store_true",
                   help="no screen: print each new trigger and status as JSON lines")
    p.add_argument("--ack", action="store_true",
                   help="acknowledge triggers (removes them from the board's outbox: "
                        "they will NOT reach the collector)")
    p.add_argument("--status-every-s", type=float, default=1.0,
                   help="how often to ask for the board's status (default %(default)s)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="stop after this many seconds (default: until Ctrl-C)")


def run(args):
    from rich.console import Console
    from rich.live import Live

    from shotline.link import Link, LinkError
    from shotline.monitor import MonitorState, render, watch
    from shotline.ports import PortError, select

    try:
        (board,) = select([args.port])
    except PortError as exc:
        raise CommandError(str(exc)) from None
    state = MonitorState()
    try:
        with Link(board.port) as link:
            if args.json:
                last = {}

                def status_line():
                    if state.status and state.status is not last.get("s"):
                        last["s"] = state.status
                        emit({"status": state.status}, True)

                watch(link, state, on_trigger=lambda r: emit({"trigger": r}, True),
                      status_every_s=args.status_every_s, duration_s=args.duration_s,
                      ack=args.ack, on_update=status_line)
            else:
                console = Console(stderr=False)
                with Live(render(state), console=console, refresh_per_second=4) as live:
                    watch(link, state, status_every_s=args.status_every_s,
                          duration_s=args.duration_s, ack=args.ack,
                          on_update=lambda: live.update(render(state)))
    except LinkError as exc:
        if "lock" in str(exc):
            raise CommandError(f"{board.port} is busy: another program (the collector?) has it open") from None
        raise CommandError(f"monitor stopped: {exc}") from None
    return 0
