"""`python -m cni2cnm.daemon [--socket PATH]`: the same as `cni2cnm serve`."""

from cni2cnm.daemon.command import serve

if __name__ == "__main__":
    serve(prog_name="python -m cni2cnm.daemon")
