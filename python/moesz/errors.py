"""moesz.MoeszError and one subclass per moesz_status; a failing library call
raises the subclass for its status with the library's "what: why" message."""


class MoeszError(Exception):
    """A libmoesz call failed, or the package refused its input before calling it.

    ``code`` is the library's moesz_status (negative; 0 for checks made in Python),
    ``status`` its name (``"E_FORMAT"``, ...), and ``str(err)`` the message."""

    code = 0
    status = "E_ARG"

    def __init__(self, msg, code=None):
        super().__init__(msg)
        if code is not None:
            self.code = code


class IOFailure(MoeszError, OSError):
    code, status = -1, "E_IO"


class FormatError(MoeszError, ValueError):
    code, status = -2, "E_FORMAT"


class NoMemory(MoeszError, MemoryError):
    code, status = -3, "E_NOMEM"


class ArgumentError(MoeszError, ValueError):
    code, status = -4, "E_ARG"


class UnsupportedError(MoeszError, ValueError):
    code, status = -5, "E_UNSUPPORTED"


class ChecksumError(MoeszError, ValueError):
    code, status = -6, "E_CHECKSUM"


class RangeError(MoeszError, IndexError):
    code, status = -7, "E_RANGE"


class NotFound(MoeszError, LookupError):
    code, status = -8, "E_NOTFOUND"


class InternalError(MoeszError):
    code, status = -9, "E_INTERNAL"


class DTypeError(MoeszError, TypeError):
    """An array of a dtype the call does not take (checked before the library is called)."""

    code, status = -4, "E_ARG"


_BY_CODE = {c.code: c for c in (IOFailure, FormatError, NoMemory, ArgumentError, UnsupportedError,
                                ChecksumError, RangeError, NotFound, InternalError)}


def raise_for(rc, err, what=None):
    """Raises the MoeszError subclass for status rc with err.msg (a moesz_error)."""
    if rc == 0:
        return
    msg = err.msg.decode("utf-8", "replace") if err is not None else ""
    if not msg:
        msg = "libmoesz status %d" % rc
    if what:
        msg = "%s: %s" % (what, msg)
    raise _BY_CODE.get(rc, MoeszError)(msg, rc)


def int_arg(v, name, lo=-2**31, hi=2**31 - 1):
    """v as an int in [lo, hi] (ctypes would truncate larger values silently), else ArgumentError."""
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise ArgumentError("%s must be an integer, got %r" % (name, v))
    v = v.__index__()
    if not lo <= v <= hi:
        raise ArgumentError("%s = %d outside [%d, %d]" % (name, v, lo, hi))
    return v


def float_arg(v, name):
    """v as a float, else ArgumentError."""
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ArgumentError("%s must be a number, got %r" % (name, v)) from None
