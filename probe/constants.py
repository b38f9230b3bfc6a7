"""Names the controller may rely on: versions, verbs and exit statuses of the node command."""

PROBE_VERSION = "0.1.0"
SCHEMA_VERSION = 1

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_REFUSED = 2
EXIT_FAILED = 3
EXIT_UNSUPPORTED = 4
EXIT_CONFIG = 5

DEFAULT_CONFIG_PATH = "/etc/gpuledger/node.json"

# The environment variables whose presence means "reached over SSH": in that mode only
# SSH_ORIGINAL_COMMAND is read and no option can redirect the config.
SSH_MARKERS = ("SSH_ORIGINAL_COMMAND", "SUDO_USER", "SSH_CONNECTION", "SSH_CLIENT")

NOBODY_UID = 65534
NVIDIA_MAJOR = 195
