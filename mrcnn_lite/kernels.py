"""The Jupyter kernels that papermill starts for the library (the Table 2 runner) and the workbook runner.

``kernel_manager_config`` is the one traitlets config both pass to ``papermill.execute_notebook``.
"""

from __future__ import annotations

from traitlets.config import Config


def kernel_manager_config() -> Config:
    """The traitlets config of the kernels papermill starts: CurveZMQ-encrypted channels.

    ipykernel 7 logs "Kernel is running over TCP without encryption" at every start unless the kernel
    manager provisions CurveZMQ keys, which jupyter_client's ``transport_encryption="auto"`` does for a
    kernelspec that declares ``"supported_encryption": ["curve"]`` (ipykernel's own does). So the kernels
    really are encrypted, and a kernelspec without that declaration still gets the (then true) warning."""
    import zmq

    policy = "auto" if zmq.has("curve") else "disabled"  # "auto" is refused where libzmq lacks Curve
    return Config({"KernelManager": {"transport_encryption": policy}})
