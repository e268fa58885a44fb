"""`cni2cnm serve`: a warm process that runs plugin requests for the executable.

    wire.py     the wire format and the socket-path rules, shared by both ends (stdlib only)
    client.py   the executable's side: forward a request, or say why not (stdlib only)
    server.py   the daemon: one thread per connection, each running skel.dispatch
    command.py  the click command `serve`

The executable (cni2cnm.entry) imports wire and client only, so that forwarding a request
costs an interpreter start and a socket round trip, not the Docker SDK and pydantic. Nothing
in this package's __init__ may import more than the standard library.
"""
