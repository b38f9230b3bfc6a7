"""``login-codes``: read and remove the web-login codes users dropped into the spool (docs/web-login.md).

A user proves who they are to the console by running ``gpuledger-balance --web CODE`` on a node: it creates
a file in the root-owned sticky spool directory holding the code the console showed. The kernel vouches for
the file's owner uid, which is the identity the controller receives; nothing typed into the file names a user.
The spool is a ``probe.dropbox`` box (every check on the directory and its entries is there); what is this
verb's own is the content: exactly one code, at most 64 bytes, written in the last 10 minutes.
"""

import re

from probe import dropbox
from probe.verbs import ok

# The console's code: 8 characters of the 32-letter alphabet without 0, 1, I and O (40 bits); the hook writes
# it normalized (upper case, no dash). control.weblogin.ALPHABET is the same alphabet (a test compares them).
CODE_SHAPE = re.compile(rb"([2-9A-HJ-NP-Z]{8})\n?\Z")
MAX_BYTES = 64
MAX_AGE_S = 600
# A node with many abandoned entries answers in bounded output; the rest are read at the next call.
MAX_ENTRIES = 200


def parse_code(content):
    match = CODE_SHAPE.match(content)
    if match is None:
        return "bad_code", "", None
    return None, "", match.group(1).decode("ascii")


BOX = dropbox.Box(MAX_BYTES, MAX_AGE_S, MAX_ENTRIES, parse_code)


def _view(entry):
    if isinstance(entry, dropbox.Accepted):
        return {"uid": entry.uid, "user": entry.user, "code": entry.value, "written_at": entry.ctime}
    view = {"refused": entry.reason}
    if entry.uid is not None:
        view["uid"] = entry.uid
    if entry.detail:
        view["detail"] = entry.detail
    return view


def collect(directory, uid_min, now=None):
    """Every entry of the spool at ``directory`` as the verb reports it, then removed: ``(entries, more_left)``;
    ``(None, False)`` for a missing spool (``probe.dropbox.collect`` says what raises)."""
    entries, more = dropbox.collect(BOX, directory, uid_min, now)
    return (None if entries is None else [_view(entry) for entry in entries]), more


def login_codes(context, command):
    entries, more = collect(context.config.web_login_dir, context.policy.uid_min)
    return ok(command, spool=context.config.web_login_dir, present=entries is not None, entries=entries or [],
              more=more)
