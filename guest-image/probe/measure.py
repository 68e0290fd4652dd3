#!/usr/bin/env python3
"""Boot the probe guest under QEMU and time it (guest-image/README.md).

Times QEMU exec -> HELLO line on the runvirt.agent virtio-serial port, and
QEMU exec -> QEMU exit (the guest powers off). Prints the exact command
lines it ran. A measurement tool, not a test.

  measure.py --guest /tmp/guest --machine q35|microvm --share 9p|virtio-fs [--runs 5]
"""
import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def tsc_khz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise SystemExit("no cpu MHz in /proc/cpuinfo")


def build(a, tmp, agent_fd):
    share = os.path.join(tmp, "share")
    os.makedirs(share, exist_ok=True)
    mmio = a.machine == "microvm"
    dev = (lambda n: n + "-device") if mmio else (lambda n: n + "-pci")
    kcmd = a.cmdline_base.split()
    if mmio:
        kcmd += ["tsc_early_khz=%d" % tsc_khz()]
    kcmd += ["runvirt.transport=serial"]
    if a.share != "none":
        kcmd += ["runvirt.share=" + a.share]
    if a.debug:
        kcmd += ["runvirt.debug=1"]
    kcmd += a.extra_cmdline.split()
    machine = a.machine_opts or ("microvm" if mmio else "q35")
    q = [a.qemu, "-M", machine]
    q += a.cpu.split()
    q += ["-m", "256M", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]
    if mmio:
        q += ["-global", "virtio-mmio.force-legacy=false"]
    q += ["-kernel", a.kernel or os.path.join(a.guest, "vmlinuz"),
          "-initrd", os.path.join(a.guest, "initrd.img"),
          "-append", " ".join(kcmd)]
    q += ["-chardev", "file,id=con,path=" + os.path.join(tmp, "console.log"), "-serial", "chardev:con"]
    q += ["-chardev", "socket,id=agent,fd=%d,server=on,wait=off" % agent_fd,
          "-device", dev("virtio-serial") + ",id=vser0",
          "-device", "virtserialport,bus=vser0.0,chardev=agent,name=runvirt.agent"]
    q += ["-device", dev("virtio-rng")]
    vfsd = None
    if a.share == "9p":
        q += ["-fsdev", "local,id=fs0,path=%s,security_model=none" % share,
              "-device", dev("virtio-9p") + ",fsdev=fs0,mount_tag=runvirt"]
    elif a.share == "virtio-fs":
        sock = os.path.join(tmp, "vfs.sock")
        vfsd = ["/usr/lib/qemu/virtiofsd", "--socket-path=" + sock, "-o", "source=" + share,
                "-o", "cache=auto"]
        q += ["-chardev", "socket,id=vfs,path=" + sock,
              "-device", dev("vhost-user-fs") + ",chardev=vfs,tag=runvirt",
              "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
              "-machine", "memory-backend=mem"]
    q += a.extra_qemu.split()
    return q, vfsd, share


def run_once(a, verbose):
    tmp = tempfile.mkdtemp(prefix="runvirt-measure.")
    path = os.path.join(tmp, "agent.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    q, vfsd, share = build(a, tmp, lsock.fileno())
    if verbose:
        if vfsd:
            print("virtiofsd:", shlex.join(vfsd))
        print("qemu:", shlex.join(q))
    vp = None
    if vfsd:
        vp = subprocess.Popen(vfsd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "virtiofsd.log"), "w"))
        for _ in range(1000):
            if os.path.exists(vfsd[1].split("=", 1)[1]):
                break
            time.sleep(0.001)
    t0 = time.monotonic()
    qp = subprocess.Popen(q, pass_fds=[lsock.fileno()], stdin=subprocess.DEVNULL,
                          stdout=open(os.path.join(tmp, "qemu.out"), "w"), stderr=subprocess.STDOUT)
    lsock.close()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.settimeout(a.timeout)
    f = c.makefile("r")
    hello = None
    lines = []
    try:
        for line in f:
            if hello is None and line.startswith("HELLO"):
                hello = time.monotonic() - t0
            lines.append(line.rstrip())
            if line.startswith("BYE"):
                break
    except socket.timeout:
        lines.append("TIMEOUT")
    try:
        qp.wait(timeout=a.timeout)
        exited = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        qp.kill()
        qp.wait()
        exited = None
    if vp:
        vp.terminate()
        vp.wait()
    c.close()
    if verbose:
        print("\n".join(lines))
        print("qemu rc", qp.returncode, "share:", os.listdir(share))
        print("---- console.log (%s)" % tmp)
        print(open(os.path.join(tmp, "console.log"), errors="replace").read()[-4000:])
        print("---- qemu.out")
        print(open(os.path.join(tmp, "qemu.out"), errors="replace").read()[-2000:])
    ok = hello is not None and any(l.startswith("BYE") for l in lines)
    # Guest-side: kernel start -> agent start, from the agent's first log line.
    agent_start = None
    for l in open(os.path.join(tmp, "console.log"), errors="replace"):
        if "agent starting" in l and "since_kernel_start=" in l:
            v = l.split("since_kernel_start=")[1].split()[0]
            agent_start = float(v[:-2]) / 1000 if v.endswith("ms") else float(v.rstrip("s"))
            break
    if not ok and not verbose:
        print("run failed, left", tmp, file=sys.stderr)
    elif not a.keep:
        subprocess.run(["rm", "-rf", tmp])
    return hello, exited, ok, agent_start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--guest", required=True)
    p.add_argument("--kernel", default="")
    p.add_argument("--machine", choices=["q35", "microvm"], default="q35")
    p.add_argument("--machine-opts", default="")
    p.add_argument("--share", choices=["9p", "virtio-fs", "none"], default="9p")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--cpu", default="")
    p.add_argument("--cmdline-base", default="console=ttyS0 quiet panic=-1")
    p.add_argument("--extra-cmdline", default="")
    p.add_argument("--extra-qemu", default="")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--keep", action="store_true")
    p.add_argument("-v", action="store_true")
    a = p.parse_args()
    hellos, exits, starts, fails = [], [], [], 0
    for i in range(a.runs):
        h, e, ok, st = run_once(a, a.v and i == 0)
        if not ok:
            fails += 1
            continue
        hellos.append(h)
        if st is not None:
            starts.append(st)
        if e is not None:
            exits.append(e)
    fmt = lambda xs: " ".join("%.2f" % x for x in xs)
    med = lambda xs: "%.2f" % statistics.median(xs) if xs else "-"
    print("%s %s runs=%d fails=%d hello median=%s [%s] exit median=%s guest kernel->agent median=%s [%s]" % (
        a.machine, a.share, a.runs, fails, med(hellos), fmt(hellos), med(exits), med(starts), fmt(starts)))


if __name__ == "__main__":
    main()
