"""Files rewire writes and reads: one file written atomically (:func:`atomic_path`,
:func:`write_text`, :func:`write_csv`: a temporary file beside the target, then a rename), a
set of files published into a folder as one commit (:mod:`rewire.io.publish`:
:class:`Staging`, :func:`verify_set`, :func:`recover`; see docs/publishing.md), and the bounds
a reader checks before loading an HDF5 file (:func:`check_hdf5`).

An export interrupted midway (an exception, Ctrl-C, a full disk) leaves the previous file
intact and no half-written one behind.
"""

from __future__ import annotations

from rewire.io.files import (MAX_HDF5_BYTES, MAX_HDF5_OBJECTS, atomic_path, check_hdf5,
                             write_csv, write_text)
from rewire.io.publish import Staging, recover
from rewire.io.record import (MANIFEST, RECORDS, SetError, read_record, read_set, sha256,
                              verify_set)
