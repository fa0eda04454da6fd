"""Builds the optional C++/CUDA RoI kernels as ``mrcnn_lite._C``; project metadata lives in pyproject.toml.

Install (the Makefile's command; torch must already be installed):

    pip install --no-build-isolation --no-deps -e .

* the CPU kernels (C++, OpenMP through ``at::parallel_for``) are always built;
* the CUDA kernels are added when a CUDA toolkit (``CUDA_HOME``) and a CUDA build of torch are both present,
  even without a GPU, so CI proves they compile; ``TORCH_CUDA_ARCH_LIST`` defaults to "8.0;9.0";
* ``MRCNN_LITE_NO_EXT=1`` skips the extension (pure-Python install: the reference operators are used);
* ``MRCNN_LITE_NO_CUDA=1`` builds the CPU kernels only.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

CSRC = Path("mrcnn_lite") / "csrc"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _extensions() -> tuple[list, dict]:
    if _flag("MRCNN_LITE_NO_EXT"):
        return [], {}
    import torch
    from torch.utils import cpp_extension

    sources = [str(CSRC / "ops.cpp"), str(CSRC / "roi_align_cpu.cpp")]
    cxx = ["-O3", "-fopenmp"]  # -fopenmp: at::parallel_for is OpenMP inlined from the headers
    macros: list[tuple[str, str | None]] = []
    with_cuda = (
        not _flag("MRCNN_LITE_NO_CUDA")
        and torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
    )
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        sources.append(str(CSRC / "roi_align_cuda.cu"))
        macros.append(("MRCNN_LITE_WITH_CUDA", None))
        ext_cls = cpp_extension.CUDAExtension
        compile_args = {"cxx": cxx, "nvcc": ["-O3"]}
    else:
        ext_cls = cpp_extension.CppExtension
        compile_args = {"cxx": cxx}
    ext = ext_cls(
        name="mrcnn_lite._C",
        sources=sources,
        include_dirs=[str(CSRC.resolve())],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],
    )
    return [ext], {
        "build_ext": cpp_extension.BuildExtension.with_options(use_ninja=cpp_extension.is_ninja_available())
    }


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
