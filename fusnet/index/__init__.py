"""Persistent Hamming indexes over your own images (a *gallery*).

Three operations, the same as ``fusnet index build|add|search``::

    >>> import fusnet.index
    >>> fusnet.index.build("model.fusnet", "photos/", "gallery/")     # encode, store, index
    >>> fusnet.index.add("gallery/", "more_photos/")                   # append
    >>> hits = fusnet.index.search("gallery/", "new.jpg", k=10)[0]    # Hit(rank, id, distance, path, label)

``fusnet.index.gallery`` holds the operations and :class:`Gallery`,
``fusnet.index.layout`` the files (codes, ids, paths, labels) and the snapshots that
searches read while a writer works, ``fusnet.index.lock`` the one-writer lock,
``fusnet.index.jobs`` the resumable builds and adds, ``fusnet.index.backends`` the
search backends (faiss flat / ivf; Milvus in ``fusnet.index.milvus_backend``).
"""

from fusnet.index.backends import KINDS
from fusnet.index.gallery import Gallery, Hit, add, build, convert, search
from fusnet.index.sources import collect_images

__all__ = ["KINDS", "Gallery", "Hit", "add", "build", "collect_images", "convert", "search"]
