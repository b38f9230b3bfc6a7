"""A stand-in node command for the transport contract tests: it answers a few verbs from SSH_ORIGINAL_COMMAND.

Each run appends its verb to the file named by the ``GLC_RUN_LOG`` line beside this script, so a test
can prove that no command ran at all (for example when the host key did not match).
"""

import json
import os
import shlex
import sys
import time
from pathlib import Path

here = Path(__file__).resolve().parent
words = shlex.split(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
with open(here / "runs.log", "a") as log:
    log.write(json.dumps(words) + "\n")
verb, args = (words[0], words[1:]) if words else ("", [])
if verb == "args":
    sys.stdout.write(json.dumps({"argv": sys.argv[1:], "words": args}))
elif verb == "stdin":
    sys.stdout.buffer.write(sys.stdin.buffer.read())
elif verb == "exit":
    sys.stderr.write("failing on purpose\n")
    sys.exit(int(args[0]))
elif verb == "sleep":
    time.sleep(float(args[0]))
else:
    sys.stderr.write(f"unknown verb {verb!r}\n")
    sys.exit(2)
