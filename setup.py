"""Builds the optional C++/CUDA RoI kernels as ``mrcnn_lite._C``; project metadata lives in pyproject.toml.

Install (the Makefile's command; torch must already be installed):

    pip install --no-build-isolation --no-deps -e .

* the CPU kernels (C++, OpenMP through ``at::parallel_for``) are always built;
* the CUDA kernels are added when a CUDA toolkit (``CUDA_HOME``) and a CUDA build of torch are both present,
  even without a GPU, so CI proves they compile, unless the toolkit's major version differs from torch's
  CUDA: then only the CPU kernels are built, with a printed warning (torch would refuse the whole build);
* GPU architectures (``cuda_build_plan``): a ``TORCH_CUDA_ARCH_LIST`` you set is used as is; with a GPU
  visible, torch compiles for it; with none visible (CI), ``DEFAULT_ARCH_LIST``, ending in ``+PTX`` so that
  newer GPUs JIT-compile the kernels;
* ``MRCNN_LITE_NO_EXT=1`` skips the extension (pure-Python install: the reference operators are used);
* ``MRCNN_LITE_NO_CUDA=1`` builds the CPU kernels only.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

CSRC = Path("mrcnn_lite") / "csrc"
# No GPU visible: Turing (T4), Ampere (A100) and Hopper (H100) machine code, plus Hopper PTX that the driver
# JIT-compiles for newer GPUs (Blackwell). CUDA 13 dropped Volta (7.0); older toolkits get it too.
DEFAULT_ARCH_LIST = "7.5;8.0;9.0+PTX"
DEFAULT_ARCH_LIST_PRE_CUDA13 = "7.0;7.5;8.0;9.0+PTX"


@dataclass(frozen=True)
class CudaPlan:
    """Whether to compile the CUDA kernels, the ``TORCH_CUDA_ARCH_LIST`` to set (None: leave it), and a
    warning to print (None: nothing to say)."""

    with_cuda: bool
    arch_list: str | None = None
    warning: str | None = None


def _major(version: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", version or "")
    return int(m.group(1)) if m else None


def cuda_build_plan(
    *,
    no_cuda: bool,
    torch_cuda: str | None,
    cuda_home: str | None,
    nvcc_version: str | None,
    gpu_visible: bool,
    user_arch_list: str | None,
) -> CudaPlan:
    """The CUDA build decision, a pure function of the environment (so it is unit-tested with fake versions).

    ``torch_cuda``: ``torch.version.cuda`` (None for a CPU build of torch); ``nvcc_version``: the toolkit's
    ``major.minor`` from ``nvcc --version`` (None when it could not be run).
    """
    if no_cuda or torch_cuda is None or cuda_home is None:
        return CudaPlan(False)
    toolkit, torch_major = _major(nvcc_version), _major(torch_cuda)
    if toolkit is None:
        return CudaPlan(
            False, warning=f"could not run nvcc in CUDA_HOME={cuda_home}; building the CPU kernels only"
        )
    if toolkit != torch_major:
        return CudaPlan(
            False,
            warning=(
                f"the CUDA toolkit in CUDA_HOME={cuda_home} is {nvcc_version}, but torch was built with CUDA "
                f"{torch_cuda}: the major versions differ, so building the CPU kernels only (point CUDA_HOME "
                f"at a CUDA {torch_major}.x toolkit to build the CUDA kernels)"
            ),
        )
    if user_arch_list and user_arch_list.strip():
        return CudaPlan(True)  # the user's choice stands
    if gpu_visible:
        return CudaPlan(True)  # torch compiles for the visible GPU(s)
    return CudaPlan(True, DEFAULT_ARCH_LIST if toolkit >= 13 else DEFAULT_ARCH_LIST_PRE_CUDA13)


def _nvcc_version(cuda_home: str | None) -> str | None:
    if cuda_home is None:
        return None
    try:
        out = subprocess.run(
            [str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


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
    no_cuda = _flag("MRCNN_LITE_NO_CUDA")
    probe = not no_cuda and torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    plan = cuda_build_plan(
        no_cuda=no_cuda,
        torch_cuda=torch.version.cuda,
        cuda_home=cpp_extension.CUDA_HOME,
        nvcc_version=_nvcc_version(cpp_extension.CUDA_HOME) if probe else None,
        gpu_visible=probe and torch.cuda.is_available(),
        user_arch_list=os.environ.get("TORCH_CUDA_ARCH_LIST"),
    )
    if plan.warning:
        print(f"\nWARNING (mrcnn_lite setup.py): {plan.warning}\n", flush=True)
    if plan.with_cuda:
        if plan.arch_list:
            os.environ["TORCH_CUDA_ARCH_LIST"] = plan.arch_list
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


if __name__ == "__main__":  # pip's build backend runs this file as __main__; tests import cuda_build_plan
    from setuptools import setup

    ext_modules, cmdclass = _extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
