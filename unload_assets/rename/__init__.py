"""The rename: what one UNLOAD staged becomes the object(s) at the target's final key.

The entry is `rename_unload` (`step.py`). Its parts, in the order it uses them:
- `lock.py`: one rename per final key at a time, a lease lock kept in S3 (with the lease document it holds);
  `fence.py`: every write and delete only while that lock is still ours, and only on the object seen;
- `manifest.py`: the UNLOAD manifest, the only list of staged files trusted;
- `write.py`: the final object(s): one object, one combined object (`combine.py` plans its multipart
  copy, `header.py` puts a single header line on top), or parts plus a COPY manifest; an empty day
  gets a valid empty object of its format (`empty.py`);
- `stamp.py`: every object written is stamped and verified; what earlier runs left is tidied;
- `s3ops.py`: the S3 calls: heads, ranged reads, listings, batched deletes; `multipart.py`: multipart
  uploads and copies of any size.
"""

from unload_assets.rename.header import HeaderStyle
from unload_assets.rename.lock import RenameBusy, final_key_lock, lock_key_for
from unload_assets.rename.manifest import ManifestNotFound, read_manifest
from unload_assets.rename.s3ops import NOT_FOUND, delete_keys, list_keys
from unload_assets.rename.stamp import TAG as STAGING_TAG
from unload_assets.rename.step import FinalObject, RenameRequest, RenameResult, SplitRefused, rename_unload

__all__ = [
    "NOT_FOUND",
    "STAGING_TAG",
    "FinalObject",
    "HeaderStyle",
    "ManifestNotFound",
    "RenameBusy",
    "RenameRequest",
    "RenameResult",
    "SplitRefused",
    "delete_keys",
    "final_key_lock",
    "list_keys",
    "lock_key_for",
    "read_manifest",
    "rename_unload",
]
