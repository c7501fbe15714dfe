"""Loaded by every Python process started with this folder on PYTHONPATH: any connection, name
lookup or datagram to a non-local address fails loudly and is logged to $NETGUARD_LOG, so a
test can prove nothing tried to go out. With $NETGUARD_ENV_LOG set, the process also writes, at
exit, the offline/telemetry variables as the program left them (proof that the program, not
the test, switched the Hugging Face libraries offline)."""
import atexit
import os
import socket

_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")
_REPORTED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_sendto = socket.socket.sendto
_original_getaddrinfo = socket.getaddrinfo


def _is_local_host(host) -> bool:
    if host is None or host == "" or host == b"":
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return str(host).startswith(_LOCAL)


def _is_local(sock, address) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    return _is_local_host(host)


def _log(what) -> None:
    log = os.environ.get("NETGUARD_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {what!r}\n")


def _refuse(address):
    _log(address)
    raise OSError(f"netguard: connection to {address!r} blocked (tests run offline)")


def _guarded_connect(self, address):
    if not _is_local(self, address):
        _refuse(address)
    return _original_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(self, address):
        _refuse(address)
    return _original_connect_ex(self, address)


def _guarded_sendto(self, data, *args):
    address = args[-1]
    if not _is_local(self, address):
        _refuse(address)
    return _original_sendto(self, data, *args)


def _guarded_getaddrinfo(host, *args, **kwargs):
    # A DNS query alone already tells the network which service the program wanted.
    if not _is_local_host(host):
        _log(("getaddrinfo", host))
        raise socket.gaierror(socket.EAI_NONAME, f"netguard: name lookup of {host!r} blocked")
    return _original_getaddrinfo(host, *args, **kwargs)


def _report_environment() -> None:
    target = os.environ.get("NETGUARD_ENV_LOG")
    if target:
        values = " ".join(f"{name}={os.environ.get(name, '')}" for name in _REPORTED)
        with open(target, "a") as handle:
            handle.write(f"{os.getpid()} {values}\n")


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.socket.sendto = _guarded_sendto
socket.getaddrinfo = _guarded_getaddrinfo
atexit.register(_report_environment)
