"""`sandbox memories`: the registered kernels, their domain and the claims each gives up."""

from sandbox.registry import get_kernel, list_kernels


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    for name in list_kernels():
        cls = get_kernel(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        domain = "unit sphere" if cls.unit_sphere else "whole space"
        print(f"{name:<18} {cls.__module__}.{cls.__qualname__:<28} [{domain}] {doc}")
        for claim, reason in sorted(cls.gives_up.items()):
            print(f"{'':<18}   gives up claim {claim}: {reason}")
    return 0
