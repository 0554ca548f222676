"""Builds lifeline._lifeline with the project's own CMake (the target `make`
builds as well), so `pip install ./python` needs no second build description.

The checkout's root is this file's parent directory: pip builds a local
directory in place, so the C++ sources are where the checkout has them. The
CMake tree and setuptools' scratch files go under the checkout's build/, not
into python/. LIFELINE_CMAKE_ARGS adds options to the configure step;
CMAKE_BUILD_PARALLEL_LEVEL (default 2) sets the build's jobs.
"""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "build" / "python-pip"
SCRATCH.mkdir(parents=True, exist_ok=True)  # setuptools wants egg_base to exist (a fresh clone has no build/).


def project_version():
    """The version in the top-level CMakeLists.txt's project() call."""
    text = (ROOT / "CMakeLists.txt").read_text()
    found = re.search(r"project\(lifeline VERSION ([0-9.]+)", text)
    if not found:
        raise RuntimeError(f"no project(lifeline VERSION ...) in {ROOT / 'CMakeLists.txt'}")
    return found.group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configures the whole project for this interpreter, builds only the extension."""

    def build_extension(self, ext):
        tree = SCRATCH / f"cmake-{sys.implementation.cache_tag}"
        configure = ["cmake", "-S", str(ROOT), "-B", str(tree), "-DCMAKE_BUILD_TYPE=Release",
                     "-DLIFELINE_BUILD_TESTS=OFF", "-DLIFELINE_WITH_BPF=OFF", "-DLIFELINE_WITH_PYTHON=ON",
                     f"-DPython3_EXECUTABLE={sys.executable}"]
        configure += shlex.split(os.environ.get("LIFELINE_CMAKE_ARGS", ""))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(tree), "--target", "_lifeline", "-j", jobs], check=True)
        built = sorted((tree / "python" / "lifeline").glob("_lifeline*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one _lifeline*.so in {tree / 'python' / 'lifeline'}, found {built}")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], target)


setup(
    version=project_version(),
    packages=["lifeline"],
    package_data={"lifeline": ["*.pyi", "py.typed"]},
    ext_modules=[CMakeExtension("lifeline._lifeline")],
    cmdclass={"build_ext": CMakeBuild},
    options={"build": {"build_base": str(SCRATCH / "setuptools")},
             "egg_info": {"egg_base": str(SCRATCH)}},
    zip_safe=False,
)
