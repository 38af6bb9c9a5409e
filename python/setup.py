"""Builds libmoesz from its C sources with the project's Makefile and ships it
inside the package (moesz/libmoesz.so, loaded with ctypes). In the repository
the sources are ../ (Makefile, src/, include/); an sdist carries a copy in
csrc/. The Debian packages it links against: sh scripts/install-deps.sh.
MOESZ_BUILD_JOBS sets make's -j (default 2)."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
C_ITEMS = ["Makefile", "src", "include", "scripts/install-deps.sh"]
DEBS = ("build-essential libutf8proc-dev libzstd-dev libopenblas-dev liblapacke-dev libpcre2-dev libcjson-dev "
        "libxxhash-dev")


def c_root():
    for root in (os.path.join(HERE, "csrc"), os.path.dirname(HERE)):
        if os.path.isfile(os.path.join(root, "Makefile")) and os.path.isdir(os.path.join(root, "src", "codec")):
            return root
    raise SystemExit("moesz: the libmoesz C sources are missing (expected ../Makefile or csrc/Makefile)")


class BuildWithLib(build_py):
    """build_py that also compiles libmoesz.so into the package."""

    def run(self):
        super().run()
        root = c_root()
        obj = os.path.abspath(os.path.join(self.build_lib, "..", "moesz-cbuild"))
        so = os.path.join(obj, "libmoesz.so")
        jobs = os.environ.get("MOESZ_BUILD_JOBS", "2")
        # -Werror is for development; a user's newer compiler must not fail the install on a new warning
        cmd = ["make", "-C", root, "-j" + jobs, "BUILD=" + obj, "WARN=-Wall -Wextra -Wno-unused-parameter", so]
        print("moesz: building libmoesz: " + " ".join(cmd))
        try:
            subprocess.check_call(cmd)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit("moesz: building libmoesz failed (%s). It needs a C compiler, make and the Debian "
                             "packages: %s (sh scripts/install-deps.sh installs them)" % (e, DEBS)) from None
        dst = os.path.join(self.build_lib, "moesz")
        os.makedirs(dst, exist_ok=True)
        shutil.copy2(so, os.path.join(dst, "libmoesz.so"))


class SdistWithSources(sdist):
    """sdist that carries the C sources (csrc/) so the wheel builds from it alone."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        root = c_root()
        for item in C_ITEMS:
            src, dst = os.path.join(root, item), os.path.join(base_dir, "csrc", item)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.o", "*.d", "__pycache__"))
            else:
                shutil.copy2(src, dst)


class BinaryDistribution(Distribution):
    """The wheel holds a compiled library: it is not pure Python."""

    def has_ext_modules(self):
        return True


CMDS = {"build_py": BuildWithLib, "sdist": SdistWithSources}
try:
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel

    class PlatformWheel(bdist_wheel):
        """Tagged py3-none-<platform>: the library is loaded with ctypes, not against the Python ABI."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            return ("py3", "none") + tuple(super().get_tag()[2:])

    CMDS["bdist_wheel"] = PlatformWheel
except ImportError:
    pass

setup(cmdclass=CMDS, distclass=BinaryDistribution)
