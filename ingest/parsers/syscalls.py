"""x86_64 Linux syscall numbers -> names (the ones security telemetry cares about)."""

from __future__ import annotations

from typing import Final

__all__ = ["ARCH_X86_64", "X86_64", "syscall_name"]

ARCH_X86_64: Final = "c000003e"

X86_64: Final = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat", 9: "mmap",
    10: "mprotect", 16: "ioctl", 21: "access", 22: "pipe", 32: "dup", 33: "dup2", 39: "getpid",
    41: "socket", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
    47: "recvmsg", 48: "shutdown", 49: "bind", 50: "listen", 54: "setsockopt", 56: "clone", 57: "fork",
    58: "vfork", 59: "execve", 60: "exit", 62: "kill", 76: "truncate", 77: "ftruncate", 82: "rename",
    83: "mkdir", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink", 88: "symlink", 89: "readlink",
    90: "chmod", 91: "fchmod", 92: "chown", 93: "fchown", 94: "lchown", 101: "ptrace", 105: "setuid",
    106: "setgid", 113: "setreuid", 114: "setregid", 117: "setresuid", 119: "setresgid", 126: "capset",
    133: "mknod", 155: "pivot_root", 157: "prctl", 161: "chroot", 165: "mount", 166: "umount2",
    169: "reboot", 175: "init_module", 176: "delete_module", 200: "tkill", 231: "exit_group",
    234: "tgkill", 246: "kexec_load", 257: "openat", 258: "mkdirat", 259: "mknodat", 260: "fchownat",
    263: "unlinkat", 264: "renameat", 265: "linkat", 266: "symlinkat", 268: "fchmodat", 272: "unshare",
    288: "accept4", 298: "perf_event_open", 308: "setns", 310: "process_vm_readv",
    311: "process_vm_writev", 313: "finit_module", 316: "renameat2", 317: "seccomp", 319: "memfd_create",
    320: "kexec_file_load", 321: "bpf", 322: "execveat", 425: "io_uring_setup", 434: "pidfd_open",
    435: "clone3", 437: "openat2",
}  # fmt: skip


def syscall_name(number: int, arch: str = ARCH_X86_64) -> str:
    """The name on x86_64; otherwise (unknown number or other arch) the number as text."""
    if arch.lower() == ARCH_X86_64:
        return X86_64.get(number, str(number))
    return str(number)
