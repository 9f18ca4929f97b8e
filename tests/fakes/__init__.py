"""Stand-ins for kernel objects, installed at the syscall boundary of the pollers.

kqueue and /dev/poll do not exist on Linux, so their backends are exercised
against fakes that copy the kernels' documented behaviour (including their
error cases) and really wait, with ``select.poll`` underneath.  The fakes are
installed by replacing attributes of the ``select`` module, exactly where
``pollers/_kqueue.py`` and ``pollers/_devpoll.py`` look them up.

``SyscallSpy`` wraps any kernel object (real or fake) to count the calls a
backend makes on it and to make chosen calls fail with a given errno.
"""

from .devpoll import FakeDevpoll, install_devpoll
from .kqueue import FakeKevent, FakeKqueue, install_kqueue
from .spy import SyscallSpy, install_spy

__all__ = [
    "FakeDevpoll", "FakeKevent", "FakeKqueue", "SyscallSpy",
    "install_devpoll", "install_kqueue", "install_spy",
]
