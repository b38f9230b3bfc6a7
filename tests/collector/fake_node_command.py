"""A stand-in node command for the transport contract tests: it answers a few verbs.

Like the real one (docs/node-command.md), it takes its words from SSH_ORIGINAL_COMMAND when reached over SSH
and from its arguments when run locally.

Each run appends its words to ``runs.log`` beside this script, so a test
can prove that no command ran at all (for example when the host key did not match).
"""

import json
import os
import shlex
import sys
import time
from pathlib import Path

here = Path(__file__).resolve().parent
over_ssh = "SSH_ORIGINAL_COMMAND" in os.environ
words = shlex.split(os.environ["SSH_ORIGINAL_COMMAND"]) if over_ssh else sys.argv[1:]
with open(here / "runs.log", "a") as log:
    log.write(json.dumps(words) + "\n")
verb, args = (words[0], words[1:]) if words else ("", [])
if verb == "args":
    sys.stdout.write(json.dumps({"over_ssh": over_ssh, "words": args}))
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
