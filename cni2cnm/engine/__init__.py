"""The Docker engine adapter: typed models (models.py), typed refusals (errors.py), the
SDK-backed Engine (client.py), the protocol the plugin depends on (protocol.py), which engine
a request asks (choice.py), what each API version can do (versions.py), warm clients (pool.py)
and counted calls (counted.py).

Knows Docker, knows nothing of CNI. The only place Docker's errors are read.
"""

from cni2cnm.engine.address import check_address as check_address
from cni2cnm.engine.address import redact as redact
from cni2cnm.engine.choice import EngineFactory as EngineFactory
from cni2cnm.engine.choice import EngineSettings as EngineSettings
from cni2cnm.engine.choice import choose_engine as choose_engine
from cni2cnm.engine.choice import engine_host as engine_host
from cni2cnm.engine.client import Engine as Engine
from cni2cnm.engine.client import split_image_ref as split_image_ref
from cni2cnm.engine.counted import Counted as Counted
from cni2cnm.engine.counted import EngineCounter as EngineCounter
from cni2cnm.engine.errors import *  # the facade: every error type
from cni2cnm.engine.models import *  # the facade: every model
from cni2cnm.engine.pool import ClientPool as ClientPool
from cni2cnm.engine.protocol import EngineAPI as EngineAPI
from cni2cnm.engine.versions import *  # the facade: what each API version can do
