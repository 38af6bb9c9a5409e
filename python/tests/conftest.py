"""Shared fixtures: the repository root, the moesz binary, the bundled model
and a container compressed from it once per session."""
import os
import shutil

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(REPO, "models", "moesz-mix-tiny")


@pytest.fixture(scope="session")
def moesz_bin():
    b = os.environ.get("MOESZ_BIN", os.path.join(REPO, "build", "moesz"))
    if not os.access(b, os.X_OK):
        pytest.skip("moesz binary not built (%s); run make first" % b)
    return b


@pytest.fixture(scope="session")
def tiny():
    if not os.path.isfile(os.path.join(TINY, "model.safetensors")):
        pytest.skip("bundled model absent")
    return TINY


@pytest.fixture(scope="session")
def tiny_msz(tiny, tmp_path_factory):
    import moesz
    out = str(tmp_path_factory.mktemp("msz") / "mix.msz")
    moesz.compress_model(tiny, out, eb=1e-3)
    yield out
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)


def read_safetensors(path):
    """A safetensors file as {name: numpy array}, parsed here (an oracle
    independent of libmoesz)."""
    import json
    import struct

    import ml_dtypes
    import numpy as np
    dt = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
          "F64": np.float64, "U8": np.uint8, "I8": np.int8}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out
