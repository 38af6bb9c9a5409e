"""moesz: error-bounded compression and memory-budgeted serving of
Mixture-of-Experts models, over the libmoesz C library (docs/PYTHON.md).

    import moesz
    buf = moesz.compress(w, eb=1e-3)          # numpy / torch, float32, float16, bfloat16
    w2 = moesz.decompress(buf).reshape(w.shape)
    moesz.compress_model("models/moesz-mix-tiny", "mix.msz", eb=1e-3)
    with moesz.Container("mix.msz") as c: sd = c.to_state_dict()
    with moesz.Model("mix.msz", mem="4MiB") as m: m.generate("Once upon a time")
"""
from ._lib import LIB_PATH
from .codec import compress, decompress, stream_info
from .container import Container, compress_model
from .errors import (ArgumentError, ChecksumError, DTypeError, FormatError, InternalError, IOFailure, MoeszError,
                     NoMemory, NotFound, RangeError, UnsupportedError)
from .model import Model

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "stream_info", "Container", "compress_model", "Model", "MoeszError",
           "ArgumentError", "ChecksumError", "DTypeError", "FormatError", "InternalError", "IOFailure", "NoMemory",
           "NotFound", "RangeError", "UnsupportedError", "LIB_PATH"]
