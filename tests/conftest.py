"""For every test: a plugin process a test starts never starts the warm daemon on demand unless
the test asks for it (CNI2CNM_DAEMON=auto in that process's environment), so no daemon on the
node's default socket outlives a test run. Tests of the daemon set the mode explicitly."""

import os

os.environ.setdefault("CNI2CNM_DAEMON", "off")
