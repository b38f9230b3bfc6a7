"""One log line per refusal, on stderr and in syslog (auth facility), input escaped with ascii()."""

import sys


def refusal(error, stream=None):
    line = "gpuledger-node: refused %s: %s" % (error.reason, ascii(error.detail)[1:-1])
    print(line, file=stream or sys.stderr)
    try:
        import syslog
    except ImportError:
        return line
    # syslog(3) drops the message silently when /dev/log is absent, which is what we want on such hosts.
    syslog.openlog("gpuledger-node", 0, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_WARNING, line)
    syslog.closelog()
    return line
