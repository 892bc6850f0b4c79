"""The ratings database: every SQLAlchemy model and every query the app makes. No other package knows SQLAlchemy.

``models`` holds the ORM tables, ``engine`` the URL and connection settings, ``migrate`` the Alembic runner, ``lock``
the writers' ``FifoLock``, and ``repository`` the ``Storage`` class with ``open_storage``.
"""

from ..errors import StorageError
from ..rating_logic import new_uid
from .lock import FifoLock
from .migrate import MIGRATIONS, migrate
from .repository import (
    AVAILABLE_CAP,
    IMPORT_BATCH,
    PICK_WINDOW,
    DuplicateStudyError,
    StaleAssignmentError,
    Storage,
    open_storage,
)

__all__ = ["Storage", "StorageError", "open_storage", "migrate", "new_uid", "MIGRATIONS", "FifoLock",
           "DuplicateStudyError", "StaleAssignmentError", "IMPORT_BATCH", "PICK_WINDOW", "AVAILABLE_CAP"]
