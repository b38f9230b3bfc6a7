"""Root-owned files replaced whole: a temporary name, ``fchmod 0644``, ``fsync``, ``rename``, directory ``fsync``.

Readers (the login hook, ``gpu-request``, the GPU-mask backends) see the old bytes or the new ones, never a
partial file, and nothing here follows a symlink: every name is opened relative to the directory's descriptor
with ``O_NOFOLLOW``, and a directory that is a symlink, not root's (when running as root) or writable by group
or others is refused.
"""

import os
import stat

from probe.errors import Failed

MAX_PREVIOUS_BYTES = 64 * 1024


def open_safe_dir(path):
    """A descriptor of ``path`` (created 0755 when missing) after the checks above; ``Failed`` otherwise."""
    try:
        os.makedirs(path, 0o755, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise Failed("unsafe_status_dir", "%s: %s" % (path, error)) from None
    info = os.fstat(fd)
    problem = None
    if os.geteuid() == 0 and info.st_uid != 0:
        problem = "not owned by root"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = "writable by group or others"
    if problem:
        os.close(fd)
        raise Failed("unsafe_status_dir", "%s: %s" % (path, problem))
    return fd


def read(directory, name, limit=MAX_PREVIOUS_BYTES):
    """The bytes of ``directory/name`` (at most ``limit``), or None when it is missing or not a plain file."""
    try:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, limit) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def _previous(dir_fd, name):
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.read(fd, MAX_PREVIOUS_BYTES)
    finally:
        os.close(fd)


def write_all(fd, data):
    """Write every byte of ``data`` to ``fd`` (a write may take fewer) and flush it to the disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def replace(directory, name, data):
    """Atomically make ``directory/name`` hold ``data``; returns whether the bytes changed."""
    dir_fd = open_safe_dir(directory)
    temporary = ".%s.%d.tmp" % (name, os.getpid())
    try:
        changed = _previous(dir_fd, name) != data
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o644)
            write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as error:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except OSError:
            pass
        raise Failed("os_error", "%s/%s: %s" % (directory, name, error)) from None
    finally:
        os.close(dir_fd)
    return changed


def remove(directory, name):
    """Remove ``directory/name`` if it is there (a missing directory is nothing to remove)."""
    try:
        os.unlink(os.path.join(directory, name))
    except FileNotFoundError:
        pass
