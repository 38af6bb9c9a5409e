"""The ctypes mirrors of libmoesz's structs (moesz/_lib.py) agree with the C
headers: the C compiler prints every struct's size and every field's offset,
which must equal ctypes'. A header change that the package does not follow
fails here instead of corrupting memory."""
import os
import shutil
import subprocess

import pytest

from moesz import _lib as L

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def include_dir():
    for root in (REPO, os.path.join(REPO, "python", "csrc")):
        if os.path.isfile(os.path.join(root, "include", "moesz.h")):
            return os.path.join(root, "include")
    return None


def test_struct_layouts_match_headers(tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc"))
    inc = include_dir()
    if not cc or not inc:
        pytest.skip("needs a C compiler and include/moesz.h")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "moesz.h"', "int main(void) {"]
    want = []
    for s in L.STRUCTS:
        lines.append('  printf("%%zu\\n", sizeof(%s));' % s._cname_)
        want.append(("sizeof", s._cname_, C_sizeof(s)))
        for name, _ in s._fields_:
            lines.append('  printf("%%zu\\n", offsetof(%s, %s));' % (s._cname_, name))
            want.append((s._cname_, name, getattr(s, name).offset))
    lines.append("  return 0;\n}")
    src = tmp_path / "abi.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "abi"
    subprocess.run([cc, "-std=c11", "-I" + inc, "-o", str(exe), str(src)], check=True)
    got = [int(x) for x in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    bad = [(w, g) for w, g in zip(want, got) if w[2] != g]
    assert len(got) == len(want)
    assert not bad, bad


def C_sizeof(s):
    import ctypes
    return ctypes.sizeof(s)
