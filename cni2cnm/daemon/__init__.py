"""`cni2cnm serve`: a warm process that runs plugin requests for the executable.

The executable's side (standard library only):
    wire.py      the wire format, the socket's and the daemon modes' settings, shared by
                 both ends
    client.py    forward a request, or say why not (and count the fallback)
    starter.py   start a daemon on demand, detached, out of the caller's cgroups

The daemon:
    command.py   the click command `serve` (also `python -m cni2cnm.daemon`, __main__.py)
    process.py   the process: warm up, get the socket (bound or systemd's), serve until
                 SIGTERM or idle
    server.py    the socket server: one thread per connection, each running a request
    runner.py    one request: skel.dispatch with the request's environment, stdin and log
    logroute.py  each request's log lines to that request's stderr or logFile
    engines.py   the engines requests get: the plugin's choice, with a pool of warm clients
    keeper.py    the reconcile pass over each stateDir served (pending DELs, ended sandboxes)
    pending.py   the DELs the static shim kept while no daemon answered, run at start
    metrics.py   Prometheus metrics and /healthz (--metrics-address)
    status.py    what runs on a socket, for `version`, `doctor` and `install`; stopping a
                 daemon the plugin started

The executable (cni2cnm.entry) imports wire and client only (starter too, when it starts a
daemon), so that forwarding a request costs an interpreter start and a socket round trip,
not the Docker SDK and pydantic. Nothing in this package's __init__ may import more than the
standard library.
"""
